"""A citizen's post that shows personal data: the thread says what it shows and offers
the safety reply (SPEC section 5), one press away for an agent.

The reply names no value (`bot.safety.personal_data_reply`), so answering does not
repeat the data; it goes out through the one reply path when an agent presses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.domain import Action, Quote, Rich, Text, TweetId
from bot.outbox import ActionId
from bot.safety import KINDS, personal_data_kinds, personal_data_reply

SAFETY_REPLY_LABEL = "Send the safety reply"


@dataclass(frozen=True, slots=True)
class SafetyReply:
    """What a pressed safety-reply action asks for: answer this post of this ticket,
    naming these kinds of personal data."""

    ticket: int
    tweet_id: TweetId
    kinds: tuple[str, ...]

    @property
    def text(self) -> str:
        return personal_data_reply(self.kinds)


def privacy_value(ticket: int, tweet_id: TweetId, kinds: Sequence[str]) -> str:
    """The action's value (`12:1860…:0,2`): the ticket, the post the reply answers, and
    the kinds it shows (indices into `bot.safety.KINDS`), so the reply needs no lookup of
    a follow-up's text, which is not stored."""
    return f"{ticket}:{tweet_id}:" + ",".join(str(KINDS.index(k)) for k in kinds)


def parse_privacy_value(value: str) -> SafetyReply | None:
    ticket, tweet, kinds = [*value.split(":"), "", ""][:3]
    indices = [k for k in kinds.split(",") if k]
    if not ticket.isdigit() or not tweet.isdigit():
        return None
    if not all(k.isdigit() and int(k) < len(KINDS) for k in indices):
        return None
    return SafetyReply(int(ticket), TweetId(tweet), tuple(KINDS[int(k)] for k in indices))


def personal_data_notice(
    text: str, ticket: int, tweet_id: TweetId
) -> tuple[Rich, tuple[Action, ...]]:
    """The lines a post's thread message gets when `text` shows personal data ("contains:
    phone number"), with the suggested public reply, and the action that sends it; nothing
    when it shows none."""
    kinds = personal_data_kinds(text)
    if not kinds:
        return Rich(), ()
    body = Rich.of(
        Text("\n"),
        Text("contains: " + ", ".join(kinds), bold=True),
        Text(" — shared in public. Suggested reply, asking them to delete it:\n"),
        Quote(personal_data_reply(kinds)),
    )
    value = privacy_value(ticket, tweet_id, kinds)
    action = Action(ActionId.PRIVACY_REPLY, SAFETY_REPLY_LABEL, value)
    return body, (action,)
