"""What Slack really sends, through the real `seva run` process (SPEC section 5): markup
tweeted as its reader sees it, `@seva close` typed in plain text, `assign` by name,
/ticket answers wherever it was typed, and edits of replies already tweeted.

One stand-in and one bot serve the whole module; each test opens its own ticket.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import HANDLE, Bot, Stand, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def s_stand() -> Iterator[Stand]:
    s = Stand().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def s_bot(s_stand: Stand, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    bot = Bot(s_stand, tmp_path_factory.mktemp("slack-payloads")).start()
    Bot.live.discard(bot)  # shared by the module: not killed after each test
    yield bot
    bot.kill()


def ticket(stand: Stand, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new question and its thread root in #health."""
    asked = stand.tweet("citizen_s", f"@{HANDLE} {text}")

    def probe() -> dict[str, Any] | None:
        return next(
            (
                m
                for m in stand.roots("C0HEALTH")
                if m["metadata"]["event_payload"]["tweet_id"] == asked["id"]
            ),
            None,
        )

    return asked, wait_for("the thread root", probe)


def replies_to(stand: Stand, tweet_id: str) -> list[dict[str, Any]]:
    return [t for t in stand.bot_tweets() if t["in_reply_to_tweet_id"] == tweet_id]


def shown_to(stand: Stand, user: str, text: str) -> list[dict[str, Any]]:
    return [e for e in stand.ephemerals(user) if text in e["text"]]


def test_what_reaches_x_is_what_a_reader_of_slack_sees(s_stand: Stand, s_bot: Bot) -> None:
    asked, root = ticket(s_stand, "oxygen at the civil hospital?")
    s_stand.say(
        "U0AGENT1",
        "C0HEALTH",
        "*Yes* :white_check_mark: <@U0AGENT2> has the list <!channel>, see "
        "<https://mohfw.gov.in/oxygen|the portal> :pray: `1075`",
        root["ts"],
    )
    (tweet,) = wait_for("the reply tweet", lambda: replies_to(s_stand, asked["id"]))
    assert tweet["text"] == ("Yes ✅ vikram has the list, see https://mohfw.gov.in/oxygen 🙏 1075")


def test_plain_text_at_seva_is_a_command_never_a_tweet(s_stand: Stand, s_bot: Bot) -> None:
    asked, root = ticket(s_stand, "hospital beds in ward 4?")
    s_stand.say("U0AGENT1", "C0HEALTH", "@seva close answered on the phone", root["ts"])

    def closed() -> bool:
        (now,) = [m for m in s_stand.roots("C0HEALTH") if m["ts"] == root["ts"]]
        return any(r["name"] == "white_check_mark" for r in now["reactions"])

    wait_for("the ticket closed", closed)
    wait_for("the private answer", lambda: shown_to(s_stand, "U0AGENT1", "closed"))
    time.sleep(0.5)
    assert replies_to(s_stand, asked["id"]) == []


def test_assign_takes_a_name_and_answers_in_a_dm_through_response_url(
    s_stand: Stand, s_bot: Bot
) -> None:
    _, root = ticket(s_stand, "vaccine slots?")
    number = root["metadata"]["event_payload"]["ticket"]
    s_stand.slack_delays(users_list=3.5)  # longer than Slack's 3 s for the ack
    try:
        answered = s_stand.command("U0AGENT1", "D0ASHA", f"assign {number} @Vikram")
    finally:
        s_stand.slack_delays()
    assert answered["response"]["text"] == "Working on it…"
    # chat.postEphemeral fails in a DM the bot is not in; response_url reaches it.
    (late,) = wait_for(
        "the late answer in the DM", lambda: shown_to(s_stand, "U0AGENT1", "assigned to")
    )
    assert late["channel"] == "D0ASHA"
    assert late["text"] == f"Ticket #{number} assigned to <@U0AGENT2>."

    fast = s_stand.command("U0AGENT1", "C0RANDOM", f"status {number}")
    assert f"Ticket #{number}" in fast["response"]["text"]  # the ack, in a channel without the bot


def test_an_edit_of_a_tweeted_reply_is_answered_not_tweeted(s_stand: Stand, s_bot: Bot) -> None:
    asked, root = ticket(s_stand, "is the blood bank open?")
    sent = s_stand.say("U0AGENT2", "C0HEALTH", "Yes, until 6 pm.", root["ts"])
    wait_for("the reply tweet", lambda: replies_to(s_stand, asked["id"]))
    s_stand.edit("U0AGENT2", "C0HEALTH", sent["ts"], "Yes, until 6 pm.")  # unchanged: nothing
    s_stand.edit("U0AGENT2", "C0HEALTH", sent["ts"], "Yes, until 8 pm.")
    (note,) = wait_for(
        "the private note", lambda: shown_to(s_stand, "U0AGENT2", "cannot be edited")
    )
    assert note["thread_ts"] == root["ts"]
    time.sleep(0.5)
    assert [t["text"] for t in replies_to(s_stand, asked["id"])] == ["Yes, until 6 pm."]


# A 1x1 PNG, what an agent's screenshot stands in for.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
    "0000000a49444154789c636800000082008177cd72b60000000049454e44ae426082"
)


def test_an_image_goes_out_attached_to_the_reply_tweet(s_stand: Stand, s_bot: Bot) -> None:
    asked, root = ticket(s_stand, "where is the vaccination centre?")
    s_stand.say(
        "U0AGENT1",
        "C0HEALTH",
        "Here is the map.",
        root["ts"],
        files=[("map.png", "image/png", PNG)],
    )
    (tweet,) = wait_for("the reply with its image", lambda: replies_to(s_stand, asked["id"]))
    assert tweet["text"] == "Here is the map."
    assert len(tweet["media_keys"]) == 1  # uploaded to X, then attached to the post

    only, only_root = ticket(s_stand, "and the queue today?")
    s_stand.say("U0AGENT1", "C0HEALTH", "", only_root["ts"], files=[("q.png", "image/png", PNG)])
    (pic,) = wait_for("the image-only reply", lambda: replies_to(s_stand, only["id"]))
    assert pic["text"] == "" and len(pic["media_keys"]) == 1


def test_other_files_are_held_and_the_thread_says_why(s_stand: Stand, s_bot: Bot) -> None:
    asked, root = ticket(s_stand, "the vaccine certificate?")
    pdf = ("certificate.pdf", "application/pdf", b"%PDF-1.4 not an image")
    s_stand.say("U0AGENT2", "C0HEALTH", "Download it from the portal.", root["ts"], files=[pdf])

    def preview() -> list[dict[str, Any]]:
        return [
            m
            for m in s_stand.thread("C0HEALTH", root["ts"])
            if m.get("bot_id") and "certificate.pdf is not an image X can attach" in m["text"]
        ]

    (held,) = wait_for("the preview saying why it is held", preview)
    time.sleep(0.3)
    assert replies_to(s_stand, asked["id"]) == []
    buttons = [e for b in held["blocks"] if b["type"] == "actions" for e in b["elements"]]
    send = next(b for b in buttons if b["action_id"] == "seva_send")
    s_stand.click("U0AGENT2", "C0HEALTH", held["ts"], send["action_id"], send["value"])
    (tweet,) = wait_for("the text alone, once sent", lambda: replies_to(s_stand, asked["id"]))
    assert tweet["text"] == "Download it from the portal." and tweet["media_keys"] == []

    s_stand.say("U0AGENT2", "C0HEALTH", "", root["ts"], files=[pdf])
    wait_for(
        "a private word that nothing was tweeted",
        lambda: shown_to(s_stand, "U0AGENT2", "Nothing was tweeted: certificate.pdf"),
    )


def test_without_files_read_the_image_reply_is_refused_in_plain_words(
    s_stand: Stand, s_bot: Bot
) -> None:
    asked, root = ticket(s_stand, "is ward 7 open?")
    granted = [s for s in s_stand.slack_state_scopes() if s != "files:read"]
    s_stand._post("/slack/sandbox/config", {"scopes": granted})
    try:
        s_stand.say("U0AGENT1", "C0HEALTH", "Yes.", root["ts"], files=[("w.png", "image/png", PNG)])

        def refused() -> list[dict[str, Any]]:
            thread = s_stand.thread("C0HEALTH", root["ts"])
            return [m for m in thread if "so it was not tweeted" in m["text"]]

        (note,) = wait_for("the refusal in the thread", refused)
        assert note["text"].startswith("*Its image cannot go out, so it was not tweeted:*")
        assert (
            "w.png could not be fetched (the Slack app lacks the files:read scope" in note["text"]
        )
    finally:
        s_stand._post("/slack/sandbox/config", {"scopes": [*granted, "files:read"]})
    assert replies_to(s_stand, asked["id"]) == []


def test_a_stub_file_is_completed_from_files_info(s_stand: Stand, s_bot: Bot) -> None:
    """Slack Connect (and some DMs) send `file_access: check_file_info` stubs."""
    asked, root = ticket(s_stand, "the form for the ration card?")
    s_stand.say(
        "U0AGENT1",
        "C0HEALTH",
        "This one.",
        root["ts"],
        files=[("form.png", "image/png", PNG)],
        stub_files=True,
    )
    (tweet,) = wait_for("the reply with its image", lambda: replies_to(s_stand, asked["id"]))
    assert tweet["text"] == "This one." and len(tweet["media_keys"]) == 1


def test_a_broadcast_reply_is_a_reply_and_its_edit_is_answered(s_stand: Stand, s_bot: Bot) -> None:
    asked, root = ticket(s_stand, "is the eye camp on Friday?")
    sent = s_stand.say("U0AGENT2", "C0HEALTH", "Yes, from 9 am.", root["ts"], broadcast=True)
    (tweet,) = wait_for("the reply tweet", lambda: replies_to(s_stand, asked["id"]))
    assert tweet["text"] == "Yes, from 9 am."
    s_stand.edit("U0AGENT2", "C0HEALTH", sent["ts"], "Yes, from 10 am.")

    def noted() -> list[dict[str, Any]]:
        notes = shown_to(s_stand, "U0AGENT2", "cannot be edited")
        return [n for n in notes if n["thread_ts"] == root["ts"]]

    wait_for("the private note in this thread", noted)
