"""Whom a chat message is for: the bot (a command), the team (an internal note), or,
neither, the public. One parser for every platform; adapters hand in plain text and
the ways the bot is mentioned there, and only translate.

A command is `!close`, `!ticket status 4` (the `ticket` word is optional), a message
that starts by mentioning the bot (`@seva close`, as a Slack mention `<@U…>` or the
Matrix user id in plain text, `@seva:example.org: close`), or the slash command's text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.safety import is_internal_note

COMMAND_PREFIX = "!"

_TICKET_WORD = re.compile(r"^ticket(?:\s+|$)", re.IGNORECASE)
_AFTER_MENTION = re.compile(r"[\s:,]|$")


def is_internal(text: str) -> bool:
    """A note for the team, never tweeted: SPEC section 5's rule, which fails closed
    (`NOTE : checking`, `*note:*`, `> private – …`, `Note：`, `नोट:`); see
    `bot.safety.is_internal_note`. The one place every platform asks."""
    return is_internal_note(text)


def command_text(text: str, bot_mentions: Iterable[str] = ()) -> str | None:
    """The command in a chat message (`!ticket status 4` -> `status 4`), or None.

    `bot_mentions` are the bot as it appears in the platform's plain text (`@U0BOT` on
    Slack, `@seva:example.org` on Matrix); a mention counts only as a whole word.
    """
    stripped = text.lstrip()
    if stripped.startswith(COMMAND_PREFIX):
        return _command(stripped[len(COMMAND_PREFIX) :])
    folded = stripped.casefold()
    for mention in bot_mentions:
        if mention and folded.startswith(mention.casefold()):
            rest = stripped[len(mention) :]
            if _AFTER_MENTION.match(rest):
                return _command(rest.lstrip(":, "))
    return None


def slash_command_text(text: str) -> str:
    """The command given to the slash command (`/ticket status 4` -> `status 4`)."""
    return text.strip()


def _command(rest: str) -> str:
    return _TICKET_WORD.sub("", rest.lstrip(), count=1).strip()
