"""One parser for commands and notes, whatever the platform."""

from __future__ import annotations

import pytest

from bot.addressing import command_text, is_internal, slash_command_text


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("!close", "close"),
        ("  !ticket status 4", "status 4"),
        ("!TICKET close 4 duplicate", "close 4 duplicate"),
        ("!ticket", ""),
        ("!tickets", "tickets"),
        ("! claim", "claim"),
        ("!ticket\tstatus 4", "status 4"),
        ("thanks!", None),
        ("note: !close", None),
        ("status 42", None),
    ],
)
def test_bang_commands(typed: str, command: str | None) -> None:
    assert command_text(typed) == command


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("@U0BOT close resolved", "close resolved"),  # Slack, after <@U0BOT> became @U0BOT
        ("@U0BOT ticket status 4", "status 4"),
        ("@U0BOT: close", "close"),
        ("@seva:hs: status 42", "status 42"),  # Matrix, the user id in plain text
        ("@seva:hs, close", "close"),
        ("@seva:hs", ""),
        ("@U0BOTX close", None),  # another user whose id starts like the bot's
        ("@seva:hs.example close", None),
        ("@asha:hs: thanks", None),
        ("thanks @U0BOT", None),
    ],
)
def test_a_message_addressed_to_the_bot_is_a_command(typed: str, command: str | None) -> None:
    assert command_text(typed, ["@U0BOT", "@seva:hs"]) == command


def test_the_slash_command_takes_its_text_whole() -> None:
    assert slash_command_text("  status 4 ") == "status 4"
    assert slash_command_text("") == ""


@pytest.mark.parametrize(
    ("text", "internal"),
    [
        ("note: call back later", True),
        ("  PRIVATE: their number is 98…", True),
        ("Note:x", True),
        ("notes: from the call", True),  # fails closed: a reader sees a note
        ("NOTE : checking", True),
        ("*note:* their number", True),
        ("Note： full-width colon", True),
        ("note - waiting for the desk", True),
        ("नोट: कल फोन करें", True),
        ("&gt; internal – draft", True),  # a Slack quote, as Slack sends it
        ("Please note: the line is open", False),
        ("noted, thanks", False),
    ],
)
def test_notes_stay_internal(text: str, internal: bool) -> None:
    assert is_internal(text) is internal
