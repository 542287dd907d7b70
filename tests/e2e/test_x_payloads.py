"""What X really sends, through the real `seva run` process: long posts, media, edits,
quotes, X's own hashtags and the renamed field parameters (SPEC section 5).

One stand-in and one bot serve the whole module; each test finds its tickets by tweet id.
"""

from __future__ import annotations

import copy
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import CONFIG, HANDLE, Bot, Stand, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def x_stand() -> Iterator[Stand]:
    s = Stand().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def x_bot(x_stand: Stand, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    config = copy.deepcopy(CONFIG)
    config["departments"][1]["hashtags"] = ["भारतीयरेल"]
    config["departments"][1]["reply_mode"] = "direct"
    bot = Bot(x_stand, tmp_path_factory.mktemp("x-payloads"), config).start()
    Bot.live.discard(bot)  # shared by the module: not killed after each test
    yield bot
    bot.kill()


def root_of(stand: Stand, channel: str, tweet_id: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in stand.roots(channel)
                if m["metadata"]["event_payload"]["tweet_id"] == tweet_id
            ),
            None,
        )

    return wait_for(f"the thread root of tweet {tweet_id}", probe)


def in_thread(stand: Stand, channel: str, root: dict[str, Any], text: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        return next((m for m in stand.thread(channel, root["ts"]) if text in m["text"]), None)

    return wait_for(f"{text!r} in the thread", probe)


def replies_to(stand: Stand, tweet_id: str) -> list[dict[str, Any]]:
    return [t for t in stand.bot_tweets() if t["in_reply_to_tweet_id"] == tweet_id]


def stored(bot: Bot, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    path = bot.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return db.execute(sql, args).fetchall()


def test_a_long_post_is_shown_routed_and_stored_whole(x_stand: Stand, x_bot: Bot) -> None:
    filler = "I booked a ticket for my mother and the payment went through twice. " * 5
    text = f"@{HANDLE} {filler}Please help with the train refund, PNR 4512."
    asked = x_stand.tweet("citizen_long", text)
    # "train" lies beyond the 280 characters X puts in `text`: only note_tweet has it.
    root = root_of(x_stand, "C0TRANSPORT", asked["id"])
    assert "Please help with the train refund, PNR 4512." in root["text"]
    (row,) = stored(x_bot, "SELECT text, department FROM tickets WHERE tweet_id = ?", asked["id"])
    assert row == (text, "transport")


def test_photos_and_videos_show_as_links_to_x_media_only(x_stand: Stand, x_bot: Bot) -> None:
    asked = x_stand.tweet(
        "citizen_pix",
        f"@{HANDLE} hospital bill attached, see https://evil.example/upload",
        media=[
            {"type": "photo", "alt_text": "bill <!channel> <https://evil.example|click>"},
            {"type": "photo"},
        ],
    )
    root = root_of(x_stand, "C0HEALTH", asked["id"])
    text = root["text"]
    x_media = x_stand.sandbox.x_base_url + "/media/"  # type: ignore[union-attr]
    assert f"<{x_media}" in text and "|photo 1>" in text and "|photo 2>" in text
    # The citizen's own words stay inert: no live link, no broadcast.
    assert "<https://evil.example" not in text and "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
    assert "https://t.co/" not in text  # X's link to the media itself is not the question

    video = x_stand.tweet("citizen_vid", f"@{HANDLE} oxygen queue now", media=[{"type": "video"}])
    vroot = root_of(x_stand, "C0HEALTH", video["id"])
    assert "-832.mp4|video 1 (0:32)>" in vroot["text"]  # the best mp4, with its length


def test_an_edit_is_shown_in_the_thread_and_the_reply_goes_to_it(
    x_stand: Stand, x_bot: Bot
) -> None:
    asked = x_stand.tweet("citizen_edit", f"@{HANDLE} is the hospitl open on sunday?")
    root = root_of(x_stand, "C0HEALTH", asked["id"])
    edited = x_stand.edit_tweet(asked["id"], f"@{HANDLE} is the hospital open on Sunday?")
    assert edited["edit_history_tweet_ids"] == [asked["id"], edited["id"]]
    note = in_thread(x_stand, "C0HEALTH", root, "edited the question on X")
    assert "is the hospital open on Sunday?" in note["text"]
    time.sleep(0.5)  # several polls: still one root, and never a root for the edit
    tickets = [r for r in x_stand.roots("C0HEALTH") if r["ts"] == root["ts"]]
    assert len(tickets) == 1
    assert all(
        r["metadata"]["event_payload"]["tweet_id"] != edited["id"]
        for r in x_stand.roots("C0HEALTH")
    )

    x_stand.say("U0AGENT1", "C0HEALTH", "Yes, 9 to 5 on Sundays.", root["ts"])
    (reply,) = wait_for(
        "the reply to the newest version", lambda: replies_to(x_stand, edited["id"])
    )
    assert replies_to(x_stand, asked["id"]) == []
    # The citizen answers the reply: the follow-up finds the ticket through the edit.
    x_stand.tweet("citizen_edit", f"@{HANDLE} thanks!", in_reply_to=reply["id"])
    in_thread(x_stand, "C0HEALTH", root, "thanks!")


def test_a_quote_is_shown_as_such(x_stand: Stand, x_bot: Bot) -> None:
    rumour = x_stand.tweet("someone_else", "Free oxygen cylinders at the stadium today!")
    asked = x_stand.tweet("citizen_quote", f"@{HANDLE} is this true?", quote=rumour["id"])
    root = root_of(x_stand, "C0HEALTH", asked["id"])
    assert "Quoting <https://x.com/someone_else/status/" in root["text"]
    assert ":\n>Free oxygen cylinders at the stadium today!" in root["text"]


def test_hashtags_route_as_x_reads_them(x_stand: Stand, x_bot: Bot) -> None:
    asked = x_stand.tweet("citizen_tag", f"@{HANDLE} #भारतीयरेल refund pending")
    root_of(x_stand, "C0TRANSPORT", asked["id"])


def test_renamed_field_parameters_are_taken_up_and_remembered(x_stand: Stand, x_bot: Bot) -> None:
    x_stand.x_field_names("new")  # X now refuses tweet.fields with its 400
    asked = x_stand.tweet("citizen_new", f"@{HANDLE} oxygen refill at the district hospital?")
    root = root_of(x_stand, "C0HEALTH", asked["id"])
    mentions = [r for r in x_stand.x_state_requests() if "/mentions" in r["path"]]
    assert any(r["status"] == 400 for r in mentions)
    assert mentions[-1]["status"] == 200
    assert stored(x_bot, "SELECT value FROM kv WHERE key = 'x.field_dialect'") == [("post.fields",)]
    # Follow-ups are still recognised with referenced_posts.
    x_stand.say("U0AGENT2", "C0HEALTH", "Yes, until 8 pm.", root["ts"])
    (reply,) = wait_for("the reply", lambda: replies_to(x_stand, asked["id"]))
    x_stand.tweet("citizen_new", f"@{HANDLE} and tomorrow?", in_reply_to=reply["id"])
    in_thread(x_stand, "C0HEALTH", root, "and tomorrow?")
    assert len([r for r in x_stand.roots("C0HEALTH") if r["ts"] == root["ts"]]) == 1

    x_stand.x_field_names("old")  # and back: the bot follows
    again = x_stand.tweet("citizen_old", f"@{HANDLE} hospital visiting hours?")
    root_of(x_stand, "C0HEALTH", again["id"])
    assert stored(x_bot, "SELECT value FROM kv WHERE key = 'x.field_dialect'") == [
        ("tweet.fields",)
    ]
