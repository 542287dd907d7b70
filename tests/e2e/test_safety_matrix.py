"""Public-post safety through the real `seva run` process in a room on a real Synapse
(SPEC section 5): notes fail closed, risky replies wait for a ✅, personal data is
flagged, only the department's people change its tickets, and `retract` works.

One bot process and one room serve the whole module; each test opens its own ticket.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.tweettext import split_reply
from tests.e2e.harness import Bot, Stand, wait_for
from tests.e2e.safety_cases import NOTES, RISKY, SAFE, SAFETY, Risky, chain_of, replies_to
from tests.e2e.test_matrix_loop import Room, matrix_env, mixed_config
from tests.synapse import Homeserver, MatrixUser

pytestmark = [pytest.mark.e2e, pytest.mark.synapse]

TWEET_FIELD = "org.sevabridge.tweet_id"


@pytest.fixture(scope="module")
def stand() -> Iterator[Stand]:
    s = Stand().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def room(synapse: Homeserver) -> Room:
    return Room(synapse)


@dataclass
class OtherRoom:
    """A second department's room, where `moderator` has every power but who is in no
    other room: the "intern in an unrelated channel" of Matrix."""

    id: str
    moderator: MatrixUser


@pytest.fixture(scope="module")
def other(synapse: Homeserver, room: Room) -> OtherRoom:
    moderator = synapse.register(f"moderator{uuid.uuid4().hex[:8]}")
    room_id = synapse.create_room(
        moderator, invite=(room.bot,), power_levels={room.bot.user_id: 50}
    )
    return OtherRoom(room_id, moderator)


def safety_config(room: Room, other: OtherRoom) -> dict[str, Any]:
    config = copy.deepcopy(mixed_config(room))
    config["safety"] = copy.deepcopy(SAFETY)
    config["supervisors"] = ["U0LEAD", room.admin.user_id]
    config["departments"].append(
        {"id": "water", "name": "Water supply", "matrix_room": other.id, "keywords": ["water"]}
    )
    return config


@pytest.fixture(scope="module")
def bot(
    stand: Stand,
    synapse: Homeserver,
    room: Room,
    other: OtherRoom,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Bot]:
    workdir = tmp_path_factory.mktemp("safety-matrix")
    b = Bot(stand, workdir, safety_config(room, other), matrix_env(synapse, room)).start()
    yield b
    b.kill()


@pytest.fixture(autouse=True)
def no_bot_outlives_its_test() -> Iterator[None]:
    """The module's bot lives for the whole module (the shared fixture kills it)."""
    yield


def open_ticket(
    stand: Stand, room: Room, citizen: str, text: str, **attached: Any
) -> dict[str, Any]:
    """Tweets as `citizen` (with `media` or a `quote`, as `Stand.tweet` takes them); the
    thread root the bot posts in the room, with the tweet."""
    asked = stand.tweet(citizen, text, **attached)

    def probe() -> dict[str, Any] | None:
        return next(
            (e for e in room.by_bot() if e["content"].get(TWEET_FIELD) == asked["id"]), None
        )

    root = wait_for(f"the root of {citizen}'s tweet", probe, timeout=30)
    root["asked"] = asked
    return root


def test_notes_in_any_form_stay_internal(stand: Stand, room: Room, bot: Bot):
    root = open_ticket(stand, room, "citizen_notes", "@SevaHelp oxygen at the hospital?")
    thread = root["event_id"]
    tricky = [*NOTES, "\u200binternal – draft, do not send"]
    before = bot.log().count("reply.internal_note")
    for text in tricky:
        room.say(room.agent, text, thread)
    wait_for(
        "every note to be read as one",
        lambda: bot.log().count("reply.internal_note") >= before + len(tricky),
        timeout=30,
    )
    room.say(room.agent, "Oxygen is at counter 2.", thread)
    (reply,) = wait_for("the one real reply", lambda: replies_to(stand, root["asked"]["id"]))
    assert reply["text"] == "Oxygen is at counter 2."


@pytest.mark.parametrize("risky", RISKY)
def test_a_risky_reply_waits_for_a_check_mark_and_shows_why(
    stand: Stand, room: Room, bot: Bot, risky: Risky, request: pytest.FixtureRequest
):
    citizen = f"held_{request.node.callspec.id}"
    root = open_ticket(stand, room, citizen, "@SevaHelp is the blood bank open?")
    ticket = int(root["content"]["org.sevabridge.ticket"])
    reason = risky.reason.format(citizen=citizen)
    room.say(room.agent, risky.said, root["event_id"])

    def preview() -> dict[str, Any] | None:
        return next(
            (
                e
                for e in room.in_thread(root["event_id"])
                if "Held for confirmation" in e["content"]["body"]
            ),
            None,
        )

    held = wait_for("the held preview", preview, timeout=30)
    assert f"this reply {reason}." in held["content"]["body"]
    assert "React with ✅ to send" in held["content"]["body"]
    assert replies_to(stand, root["asked"]["id"]) == []
    room.hs.react(room.visitor, room.id, held["event_id"], "✅")  # below the power level
    room.hs.react(room.agent, room.id, held["event_id"], "✅")
    parts = split_reply(risky.said)
    chain = wait_for(
        "the reply after ✅", lambda: len(c := chain_of(stand, root)) == len(parts) and c, 30
    )
    assert [t["text"] for t in chain] == parts
    assert len(replies_to(stand, root["asked"]["id"])) == 1

    def sent_by() -> list[dict[str, Any]]:
        return [
            e
            for e in room.by_bot()
            if (e["content"].get("m.relates_to") or {}).get("event_id") == held["event_id"]
            and e["content"].get("m.new_content", {}).get("body", "").startswith("Sent by")
        ]

    (edit,) = wait_for("the preview to say who sent it", sent_by, timeout=30)
    assert room.agent.user_id in edit["content"]["m.new_content"]["body"]
    entries = bot.audit(ticket)
    assert (room.agent.user_id, "reply", f"held: {reason}") in entries
    assert [e[0] for e in entries if e[1:] == ("reply", "confirmed")] == [room.agent.user_id]


def test_official_numbers_and_allowed_links_go_out_at_once(stand: Stand, room: Room, bot: Bot):
    root = open_ticket(stand, room, "citizen_helpln", "@SevaHelp where are oxygen refills?")
    room.say(room.agent, SAFE, root["event_id"])
    (tweet,) = wait_for("the reply", lambda: replies_to(stand, root["asked"]["id"]), 30)
    assert tweet["text"] == SAFE
    held = [e for e in room.in_thread(root["event_id"]) if "Held" in e["content"]["body"]]
    assert held == []
    ticket = int(root["content"]["org.sevabridge.ticket"])
    assert (room.agent.user_id, "reply", "queued") in bot.audit(ticket)


@pytest.mark.parametrize(
    "citizen,text,kinds",
    [
        ("pd_aadhaar", "my Aadhaar 2341 2341 2346 is blocked", ["Aadhaar number"]),
        (
            "pd_others",
            "hospital? call 98765 43210, asha.k@gmail.com, PAN ABCPE1234F",
            ["phone number", "e-mail address", "PAN"],
        ),
    ],
)
def test_a_tweet_with_personal_data_gets_the_safety_reply_with_a_shield(
    stand: Stand, room: Room, bot: Bot, citizen: str, text: str, kinds: list[str]
):
    from bot.safety import personal_data_reply

    root = open_ticket(stand, room, citizen, f"@SevaHelp {text}")
    body = root["content"]["body"]
    assert f"contains: {', '.join(kinds)}" in body
    assert "React with 🛡️ to send the safety reply" in body
    room.hs.react(room.agent, room.id, root["event_id"], "🛡️")
    (tweet,) = wait_for(
        "the safety reply", lambda: replies_to(stand, root["asked"]["id"]), timeout=30
    )
    assert tweet["text"] == personal_data_reply(kinds)


def notices(room: Room, room_id: str, text: str) -> list[dict[str, Any]]:
    """The bot's answers to commands (m.notice) in a room that contain `text`."""
    events = room.hs.messages(room.bot, room_id, limit=100)
    return [
        e
        for e in events
        if e["sender"] == room.bot.user_id
        and e["content"].get("msgtype") == "m.notice"
        and text in e["content"].get("body", "")
    ]


def test_only_the_rooms_people_change_its_tickets(
    stand: Stand, room: Room, other: OtherRoom, bot: Bot
):
    root = open_ticket(stand, room, "citizen_perm", "@SevaHelp hospital beds free?")
    n = int(root["content"]["org.sevabridge.ticket"])
    refusal = "Only Health and hospitals's agents and the supervisors can do that"
    # All the power in another department's room, none in this one.
    room.hs.send_text(other.moderator, other.id, f"!ticket close {n}")
    wait_for("the refusal in the other room", lambda: notices(room, other.id, refusal), 30)
    # In the room, below matrix.min_power_level.
    room.say(room.visitor, "!close", root["event_id"])
    wait_for("the refusal in the thread", lambda: notices(room, room.id, refusal), 30)
    room.say(room.agent, "!close resolved", root["event_id"])
    wait_for("the close", lambda: notices(room, room.id, f"Ticket #{n} closed"), 30)


def test_retract_in_the_thread_deletes_the_reply(stand: Stand, room: Room, bot: Bot):
    root = open_ticket(stand, room, "citizen_retract", "@SevaHelp is the hospital open?")
    thread = root["event_id"]
    room.say(room.agent, "Yes, it is open all night.", thread)
    (reply,) = wait_for("the reply", lambda: replies_to(stand, root["asked"]["id"]), 30)
    room.say(room.agent, "!retract", thread)

    def retracted() -> list[dict[str, Any]]:
        return [e for e in room.in_thread(thread) if "Retracted" in e["content"]["body"]]

    (told,) = wait_for("the thread told", retracted, timeout=30)
    assert "deleted from X (its tweet)" in told["content"]["body"]
    (gone,) = [t for t in stand.x_state()["tweets"] if t["id"] == reply["id"]]
    assert gone["deleted"] is True
