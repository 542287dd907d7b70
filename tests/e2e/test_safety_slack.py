"""Public-post safety through the real `seva run` process on Slack (SPEC section 5):
internal notes fail closed, risky replies are held, personal data is flagged, only the
department's people change its tickets, and `retract` takes a reply back.

One stand-in and one bot process serve the whole module; each test opens its own
ticket with its own citizen, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from bot.tweettext import split_reply
from tests.e2e.harness import CONFIG, Bot, Stand, wait_for
from tests.e2e.safety_cases import (
    NOTES,
    RISKY,
    SAFE,
    SAFE_ON_SLACK,
    SAFETY,
    Risky,
    chain_of,
    replies_to,
)

pytestmark = pytest.mark.e2e

HEALTH, TRANSPORT = "C0HEALTH", "C0TRANSPORT"


def safety_config() -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    config["safety"] = copy.deepcopy(SAFETY)
    config["supervisors"] = ["U0LEAD"]
    config["departments"][1]["agents"] = []  # transport: any member of #transport
    return config


@pytest.fixture(scope="module")
def stand() -> Iterator[Stand]:
    s = Stand().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def bot(stand: Stand, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    stand.add_slack_user("U0INTERN", "intern")  # in #random, not in #transport
    stand.add_slack_user("U0GUEST", "partner", team_id="T0PARTNER")  # Slack Connect
    stand.set_members(TRANSPORT, ["U0TRANSPORT"])
    stand.set_members(HEALTH, None, shared=True)  # shared with the partner's workspace
    b = Bot(stand, tmp_path_factory.mktemp("safety-slack"), safety_config()).start()
    yield b
    b.kill()


@pytest.fixture(autouse=True)
def no_bot_outlives_its_test() -> Iterator[None]:
    """The module's bot lives for the whole module (the shared fixture kills it)."""
    yield


def open_ticket(stand: Stand, citizen: str, text: str, channel: str = HEALTH) -> dict[str, Any]:
    """Tweets as `citizen` and waits for the thread root; the root's message."""
    asked = stand.tweet(citizen, text)

    def probe() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in stand.roots(channel)
                if m["metadata"]["event_payload"]["tweet_id"] == asked["id"]
            ),
            None,
        )

    root = wait_for(f"the root of {citizen}'s tweet", probe)
    root["asked"] = asked
    return root


def test_notes_in_any_form_stay_internal(stand: Stand, bot: Bot):
    root = open_ticket(stand, "citizen_notes", "@SevaHelp oxygen cylinders at the hospital?")
    tricky = [*NOTES, "_internal_ – draft, do not send"]
    before = bot.log().count("reply.internal_note")
    for text in tricky:
        stand.say("U0AGENT1", HEALTH, text, root["ts"])
    wait_for(
        "every note to be read as one",
        lambda: bot.log().count("reply.internal_note") >= before + len(tricky),
    )
    stand.say("U0AGENT1", HEALTH, "Cylinders are at counter 2.", root["ts"])
    (reply,) = wait_for("the one real reply", lambda: replies_to(stand, root["asked"]["id"]))
    assert reply["text"] == "Cylinders are at counter 2."


@pytest.mark.parametrize("risky", RISKY)
def test_a_risky_reply_waits_for_send_and_shows_why(
    stand: Stand, bot: Bot, risky: Risky, request: pytest.FixtureRequest
):
    citizen = f"held_{request.node.callspec.id}"
    root = open_ticket(stand, citizen, "@SevaHelp did the hospital call me back?")
    ticket = root["metadata"]["event_payload"]["ticket"]
    reason = risky.reason.format(citizen=citizen)
    stand.say("U0AGENT2", HEALTH, risky.on_slack(), root["ts"])

    def preview() -> list[dict[str, Any]]:
        return [m for m in stand.thread(HEALTH, root["ts"]) if m.get("bot_id") and m.get("blocks")]

    (held,) = wait_for("the held preview with its Send button", preview)
    assert "Held for confirmation" in held["text"] and f"this reply {reason}." in held["text"]
    assert replies_to(stand, root["asked"]["id"]) == []
    buttons = [e for b in held["blocks"] if b["type"] == "actions" for e in b["elements"]]
    send = next(b for b in buttons if b["action_id"] == "seva_send")
    stand.click("U0AGENT1", HEALTH, held["ts"], send["action_id"], send["value"])
    parts = split_reply(risky.said)
    chain = wait_for(
        "the reply after Send", lambda: len(c := chain_of(stand, root)) == len(parts) and c
    )
    assert [t["text"] for t in chain] == parts
    assert len(replies_to(stand, root["asked"]["id"])) == 1
    entries = bot.audit(ticket)
    assert ("U0AGENT2", "reply", f"held: {reason}") in entries
    assert ("U0AGENT1", "reply", "confirmed") in entries


def test_official_numbers_and_allowed_links_go_out_at_once(stand: Stand, bot: Bot):
    root = open_ticket(stand, "citizen_helpln", "@SevaHelp where do I get oxygen refills?")
    stand.say("U0AGENT1", HEALTH, SAFE_ON_SLACK, root["ts"])
    (tweet,) = wait_for("the reply", lambda: replies_to(stand, root["asked"]["id"]))
    assert tweet["text"] == SAFE
    assert not [m for m in stand.thread(HEALTH, root["ts"]) if "Held" in m["text"]]
    ticket = root["metadata"]["event_payload"]["ticket"]
    assert ("U0AGENT1", "reply", "queued") in bot.audit(ticket)


def test_a_tweet_with_each_kind_of_personal_data_says_which(stand: Stand, bot: Bot):
    from bot.safety import personal_data_reply

    root = open_ticket(
        stand,
        "citizen_kinds",
        "@SevaHelp oxygen for me: PAN ABCPE1234F, Aadhaar 2341 2341 2346, asha.k@gmail.com",
    )
    kinds = ["e-mail address", "Aadhaar number", "PAN"]
    assert "contains: " + ", ".join(kinds) in root["text"]
    buttons = [e for b in root["blocks"] if b["type"] == "actions" for e in b["elements"]]
    (safety,) = [b for b in buttons if b["text"]["text"] == "Send the safety reply"]
    stand.click("U0AGENT1", HEALTH, root["ts"], safety["action_id"], safety["value"])
    (tweet,) = wait_for("the safety reply", lambda: replies_to(stand, root["asked"]["id"]))
    assert tweet["text"] == personal_data_reply(kinds)


def test_a_tweet_with_a_phone_number_gets_the_safety_reply_with_one_press(stand: Stand, bot: Bot):
    from bot.safety import personal_data_reply

    root = open_ticket(stand, "citizen_pd", "@SevaHelp oxygen please, call me on 98765 43210")
    assert "contains: phone number" in root["text"]
    buttons = [e for b in root["blocks"] if b["type"] == "actions" for e in b["elements"]]
    (safety,) = [b for b in buttons if b["text"]["text"] == "Send the safety reply"]
    stand.click("U0VISITOR", HEALTH, root["ts"], safety["action_id"], safety["value"])
    stand.click("U0AGENT1", HEALTH, root["ts"], safety["action_id"], safety["value"])
    stand.click("U0AGENT2", HEALTH, root["ts"], safety["action_id"], safety["value"])
    (tweet,) = wait_for("the safety reply", lambda: replies_to(stand, root["asked"]["id"]))
    assert tweet["text"] == personal_data_reply(["phone number"])
    told = wait_for(
        "the visitor told privately",
        lambda: [e for e in stand.slack_state()["ephemeral"] if e["user"] == "U0VISITOR"],
    )
    assert "Only Health and hospitals's agents can answer in public." in told[-1]["text"]
    wait_for(
        "the second press answered privately",
        lambda: [
            e
            for e in stand.slack_state()["ephemeral"]
            if e["user"] == "U0AGENT2" and "sent already" in e["text"]
        ],
    )
    assert len(replies_to(stand, root["asked"]["id"])) == 1


def said(answer: dict[str, Any]) -> str:
    """The text of a slash command's answer, as the asker sees it."""
    response = answer["response"]
    return response if isinstance(response, str) else str((response or {}).get("text"))


def test_only_the_departments_people_change_its_tickets(stand: Stand, bot: Bot):
    root = open_ticket(stand, "citizen_perm", "@SevaHelp is the 5:40 train late?", TRANSPORT)
    n = root["metadata"]["event_payload"]["ticket"]
    # An intern in an unrelated channel, where the bot is not even present.
    refused = said(stand.command("U0INTERN", "C0RANDOM", f"close {n} spam"))
    assert refused == (
        "Only Trains and buses's agents and the supervisors can do that, so nothing changed."
    )
    assert "open" in said(stand.command("U0INTERN", "C0RANDOM", f"status {n}"))
    # A member of #transport may, from anywhere; so may a supervisor.
    assert said(stand.command("U0TRANSPORT", "C0RANDOM", f"close {n}")) == f"Ticket #{n} closed."
    assert said(stand.command("U0LEAD", "C0RANDOM", f"reopen {n}")) == f"Ticket #{n} reopened."
    assert [e[1] for e in bot.audit(n)] == ["created", "closed", "reopened"]
    assert [e[0] for e in bot.audit(n)][1:] == ["U0TRANSPORT", "U0LEAD"]


def test_a_slack_connect_guest_never_tweets_nor_changes_a_ticket(stand: Stand, bot: Bot):
    root = open_ticket(stand, "citizen_guest", "@SevaHelp oxygen refill? call 98765 43210")
    n = root["metadata"]["event_payload"]["ticket"]

    def told(text: str) -> list[dict[str, Any]]:
        return [
            e
            for e in stand.slack_state()["ephemeral"]
            if e["user"] == "U0GUEST" and text in e["text"]
        ]

    stand.say("U0GUEST", HEALTH, "Refills are free today.", root["ts"])
    wait_for("the guest told privately", lambda: told("stayed internal"))
    stand.say("U0GUEST", HEALTH, "!close", root["ts"])
    wait_for("the command refused", lambda: told("cannot change tickets here"))
    buttons = [e for b in root["blocks"] if b["type"] == "actions" for e in b["elements"]]
    safety = buttons[0]
    stand.click("U0GUEST", HEALTH, root["ts"], safety["action_id"], safety["value"])
    wait_for("the press refused", lambda: told("cannot answer in public here"))
    stand.say("U0AGENT1", HEALTH, "Refills are at counter 4.", root["ts"])
    (tweet,) = wait_for("the agent's reply", lambda: replies_to(stand, root["asked"]["id"]))
    assert tweet["text"] == "Refills are at counter 4."
    assert [e[1] for e in bot.audit(n)][:2] == ["created", "reply"]
    assert "closed" not in [e[1] for e in bot.audit(n)]


def test_retract_deletes_the_whole_chain_once_across_a_kill(stand: Stand, bot: Bot):
    root = open_ticket(stand, "citizen_retract", "@SevaHelp which hospitals have beds?")
    n = root["metadata"]["event_payload"]["ticket"]
    answer = " ".join(f"Ward {i} at the district hospital has free beds today." for i in range(8))
    stand.say("U0AGENT1", HEALTH, answer, root["ts"])
    chain = wait_for("the two-part chain", lambda: len(c := chain_of(stand, root)) == 2 and c)
    ids = {t["id"] for t in chain}
    # X deletes the first one it is asked to, but the answer is lost; then the bot dies.
    stand.fault(method="DELETE", path_prefix="/2/tweets/", status=503, after_commit=True)
    stand.say("U0AGENT1", HEALTH, "!retract", root["ts"])
    wait_for("the delete whose answer was lost", lambda: "reply.retract_failed" in bot.log())
    bot.kill()
    bot.start()

    def retracted() -> list[dict[str, Any]]:
        return [m for m in stand.thread(HEALTH, root["ts"]) if "Retracted" in m["text"]]

    (told,) = wait_for("the thread told", retracted, timeout=30)
    assert "deleted from X (all 2 of its tweets)" in told["text"]
    states = {t["id"]: t["deleted"] for t in stand.x_state()["tweets"] if t["id"] in ids}
    assert states and all(states.values())
    entries = bot.audit(n)
    assert [e[:2] for e in entries if e[1] == "retracted"] == [
        ("U0AGENT1", "retracted"),
        ("x", "retracted"),
    ]
