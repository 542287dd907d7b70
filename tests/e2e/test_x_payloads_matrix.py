"""What X really sends, landing in a room on a real Synapse through the real `seva run`
process (SPEC section 5; test_x_payloads.py is the Slack side): a long post shown whole,
media as links to X's own files only, a quote shown as such, and an edit shown in the
thread with the room's reply going to the newest version; each under both spellings of
X's field parameters (`tweet.fields`, `note_tweet`, `referenced_tweets`, and their
renamed `post.fields`, `note_post`, `referenced_posts`).

One bot process and one room serve the whole module; each test finds its tickets by
tweet id.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import HANDLE, Bot, Stand, wait_for
from tests.e2e.test_matrix_loop import Room, matrix_env, mixed_config
from tests.e2e.test_safety_matrix import TWEET_FIELD, open_ticket, replies_to
from tests.synapse import Homeserver

pytestmark = [pytest.mark.e2e, pytest.mark.synapse]

# "old": the stand-in takes only X's documented names; "new": only the renamed
# ones, so the bot meets X's 400 and switches (a mention read at all proves which).
FIELD_NAMES = pytest.mark.parametrize("names", ["old", "new"])


@pytest.fixture(scope="module")
def stand() -> Iterator[Stand]:
    s = Stand().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def room(synapse: Homeserver) -> Room:
    return Room(synapse)


@pytest.fixture(scope="module")
def bot(
    stand: Stand, synapse: Homeserver, room: Room, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Bot]:
    config = mixed_config(room)
    # Unmatched posts go to Slack: a root in the room proves the question's own words
    # (a long post's beyond the first 280 characters) routed it there.
    config["default_department"] = "transport"
    workdir = tmp_path_factory.mktemp("x-payloads-matrix")
    b = Bot(stand, workdir, config, matrix_env(synapse, room)).start()
    yield b
    b.kill()


@pytest.fixture(autouse=True)
def no_bot_outlives_its_test() -> Iterator[None]:
    """The module's bot lives for the whole module (the shared fixture kills it)."""
    yield


def hrefs(content: dict[str, Any]) -> list[str]:
    return [html.unescape(h) for h in re.findall(r"href=[\"']([^\"']*)", content["formatted_body"])]


def roots_of(room: Room, *tweet_ids: str) -> list[dict[str, Any]]:
    return [
        e
        for e in room.by_bot()
        if e["content"].get(TWEET_FIELD) in tweet_ids
        and str(e["content"].get("org.sevabridge.key", "")).startswith("root:")
    ]


def in_thread(room: Room, root: dict[str, Any], text: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        return next(
            (e for e in room.in_thread(root["event_id"]) if text in e["content"]["body"]), None
        )

    return wait_for(f"{text!r} in the room's thread", probe, timeout=30)


@FIELD_NAMES
def test_a_root_in_the_room_shows_the_whole_post_its_media_and_its_quote(
    names: str, stand: Stand, room: Room, bot: Bot
) -> None:
    stand.x_field_names(names)
    x_media = stand.sandbox.x_base_url + "/media/"  # type: ignore[union-attr]

    # A long post: X cuts `text` at 280 characters; "hospital" lies beyond them.
    filler = "I booked a bed for my father and the payment went through twice. " * 5
    tail = "Please help with the hospital refund, bill 4512."
    long = open_ticket(stand, room, f"long_{names}", f"@{HANDLE} {filler}{tail}")
    body = long["content"]["body"]
    assert f"{filler}{tail}" in body and body.count(filler) == 1  # whole, and only once
    assert tail in long["content"]["formatted_body"]

    # Photos whose text and alt text try to link, ping the room and inject markup.
    pix = open_ticket(
        stand,
        room,
        f"pix_{names}",
        f"@{HANDLE} hospital bill attached, see https://evil.example/upload @room",
        media=[
            {"type": "photo", "alt_text": "bill <a href='https://evil.example'>click</a> @room"},
            {"type": "photo"},
        ],
    )
    content = pix["content"]
    photos = [h for h in hrefs(content) if h.startswith(x_media)]
    assert len(photos) == 2 and all(h.endswith(".png") for h in photos)
    assert re.search(r'\.png">photo 1</a>.*\.png">photo 2</a>', content["formatted_body"])
    # The only live links are X's: its media, the post itself, and the on-call pill.
    own = f"https://x.com/pix_{names}/status/{pix['asked']['id']}"
    pill = f"https://matrix.to/#/{room.agent.user_id}"
    assert {h for h in hrefs(content) if h not in photos} == {own, pill}
    assert "&lt;a href=" in content["formatted_body"]  # the alt text, inert
    assert content["m.mentions"] == {"user_ids": [room.agent.user_id]}
    assert "@room" not in content["body"] and "@room" not in content["formatted_body"]
    assert "https://t.co/" not in content["body"]  # X's link to the media is not the question

    video = open_ticket(
        stand, room, f"vid_{names}", f"@{HANDLE} oxygen queue now", media=[{"type": "video"}]
    )
    assert '-832.mp4">video 1 (0:32)</a>' in video["content"]["formatted_body"]

    rumour = stand.tweet(f"rumour_{names}", "Free oxygen cylinders at the stadium today!")
    quote = open_ticket(
        stand, room, f"quote_{names}", f"@{HANDLE} is this oxygen true?", quote=rumour["id"]
    )
    # The renamed expansions have no `referenced_posts.id.author_id`: X names nobody, so
    # the quoted post is linked by its id alone.
    who, path = (f"@rumour_{names}", f"rumour_{names}") if names == "old" else ("a post", "i")
    where = f"https://x.com/{path}/status/{rumour['id']}"
    assert (
        f'Quoting <a href="{where}">{who}</a>:<br>'
        "<blockquote>Free oxygen cylinders at the stadium today!</blockquote>"
    ) in quote["content"]["formatted_body"]
    assert "> Free oxygen cylinders at the stadium today!" in quote["content"]["body"]


@FIELD_NAMES
def test_an_edit_is_shown_in_the_thread_and_the_rooms_reply_goes_to_it(
    names: str, stand: Stand, room: Room, bot: Bot
) -> None:
    stand.x_field_names(names)
    citizen = f"edit_{names}"
    root = open_ticket(stand, room, citizen, f"@{HANDLE} is the oxygen desk opn on sunday?")
    asked = root["asked"]
    edited = stand.edit_tweet(asked["id"], f"@{HANDLE} is the oxygen desk open on Sunday?")
    assert edited["edit_history_tweet_ids"] == [asked["id"], edited["id"]]
    note = in_thread(room, root, "edited the question on X")
    assert "is the oxygen desk open on Sunday?" in note["content"]["body"]

    answer = f"Yes, 9 to 5 on Sundays ({names} names)."  # X refuses a duplicate text
    room.say(room.agent, answer, root["event_id"])
    (reply,) = wait_for(
        "the reply to the newest version", lambda: replies_to(stand, edited["id"]), timeout=30
    )
    assert reply["text"] == answer
    assert replies_to(stand, asked["id"]) == []
    # The citizen answers the reply: the follow-up finds the ticket through the edit.
    stand.tweet(citizen, f"@{HANDLE} thanks!", in_reply_to=reply["id"])
    in_thread(room, root, "thanks!")
    # Many polls since the edit was read: still the one root, none for the new version.
    assert [e["event_id"] for e in roots_of(room, asked["id"], edited["id"])] == [root["event_id"]]
