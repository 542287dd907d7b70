"""The outbox contract: the keys and states that every layer shares.

Keys and action ids are also stored remotely (Slack message metadata, Matrix event
content and transaction ids), where they are how a post whose outcome a crash hid is
found again: a key format that changed would make that post look new, and it would go
out twice. States are stored in the database. tests/unit/test_outbox.py pins every
value byte for byte; change one only with a migration of what is stored.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime

# --- the keys: one per chat post, for good


def root_key(ticket: int) -> str:
    """A ticket's thread root."""
    return f"root:{ticket}"


def followup_key(tweet_id: str) -> str:
    """A citizen's follow-up tweet, posted into its ticket's thread."""
    return f"followup:{tweet_id}"


def sent_key(reply: int) -> str:
    """The confirmation that a reply went out, with its tweet links."""
    return f"sent:{reply}"


def preview_key(reply: int) -> str:
    """The text a reply will tweet, waiting for Send (reply_mode: confirm)."""
    return f"preview:{reply}"


def escalate_key(ticket: int) -> str:
    """A ticket's one escalation."""
    return f"escalate:{ticket}"


def retracted_key(reply: int) -> str:
    """A reply's tweets were deleted from X (or X refused to): the thread is told once."""
    return f"retracted:{reply}"


def refused_key(reply: int) -> str:
    """X refused a reply: the thread is told why."""
    return f"refused:{reply}"


def unverified_key(part: int) -> str:
    """A reply part X calls a duplicate but that its timeline does not show yet."""
    return f"unverified:{part}"


def waiting_key(reply: int) -> str:
    """X refused the bot's posting credentials: the thread is told its reply waits."""
    return f"waiting:{reply}"


def mark_key(ticket: int, state: str) -> str:
    """A state shown on a ticket's thread root (a reaction). Marks repeat (closed,
    reopened, closed again) and are never looked for remotely, so each gets its own
    key, unique by chance."""
    return f"mark:{ticket}:{state}:{uuid.uuid4().hex[:16]}"


def moved_root_key(ticket: int, move: int) -> str:
    """A ticket's thread root in the department its `move`th move took it to."""
    return f"moved:{ticket}:{move}"


def moved_away_key(ticket: int, move: int) -> str:
    """The message in the thread a ticket left by its `move`th move, saying where it went."""
    return f"moved-away:{ticket}:{move}"


def thread_root_key(ticket: int, moves: int) -> str:
    """The key of the post that opens a ticket's current thread, after `moves` moves:
    only that post's landing makes the thread the ticket's (`Tx.set_root`)."""
    return root_key(ticket) if moves == 0 else moved_root_key(ticket, moves)


def escalate_again_key(ticket: int) -> str:
    """A ticket's second escalation step (`escalate_again_after_minutes`)."""
    return f"escalate2:{ticket}"


def handoff_key(department: str, starts: datetime) -> str:
    """The message naming who is on call, once per stretch of duty (its start, in UTC)."""
    return f"handoff:{department}:{starts.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


def digest_key(department: str, day: date) -> str:
    """A department's daily digest, once per local day."""
    return f"digest:{department}:{day.isoformat()}"


# --- the states


class PostState(enum.StrEnum):
    """A chat post: pending -> sending -> done | failed; unknown when a send's outcome
    was not seen (it is looked for before it is sent again); cancelled when the thread
    it was for never came to be (a ticket moved before its root went out)."""

    PENDING = "pending"
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"  # its ticket moved away before it was ever sent


class PartState(enum.StrEnum):
    """One tweet of a reply chain: pending -> sending -> sent | refused; unknown when
    X's answer was lost."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    REFUSED = "refused"
    UNKNOWN = "unknown"


class ReplyState(enum.StrEnum):
    """An agent's public reply: confirm (awaiting Send) -> pending -> sent | refused,
    or cancelled while awaiting Send."""

    CONFIRM = "confirm"
    PENDING = "pending"
    SENT = "sent"
    REFUSED = "refused"
    CANCELLED = "cancelled"
    RETRACTED = "retracted"  # its tweets were deleted from X (`retract`)


class RetractState(enum.StrEnum):
    """A `retract`: pending (tweets being deleted) -> done | failed (X refused)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class EventState(enum.StrEnum):
    """An incoming event in the inbox: pending -> handling -> done; failed when its
    handling failed every time (a bug, logged); back to pending after a hiccup."""

    PENDING = "pending"
    HANDLING = "handling"
    DONE = "done"
    FAILED = "failed"


class ThreadMark(enum.StrEnum):
    """A ticket state as its thread root shows it (a reaction)."""

    OPEN = "open"
    CLOSED = "closed"
    CLAIMED = "claimed"
    ANSWERED = "answered"
    ESCALATED = "escalated"


class ActionId(enum.StrEnum):
    """The buttons (Slack) and confirming reactions (Matrix) the bot's posts offer: a
    preview's Send and Cancel, and the safety reply offered where a citizen's post
    shows personal data."""

    SEND = "seva_send"
    CANCEL = "seva_cancel"
    PRIVACY_REPLY = "seva_privacy_reply"
