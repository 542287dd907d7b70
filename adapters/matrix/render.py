"""`Rich` bodies as Matrix message content (pure): an escaped HTML `formatted_body` and a
plain `body`, where a post keeps its key, and how actions and ticket states show.

Every piece of text is escaped and "@room" is broken, so a citizen's words can neither
ping the room nor inject markup; only `Mention` segments become pills.
"""

from __future__ import annotations

import hashlib
import html
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.domain import Action, Link, Mention, Quote, Rich, Text
from bot.outbox import ActionId, ThreadMark

KEY_FIELD = "org.sevabridge.key"
TICKET_FIELD = "org.sevabridge.ticket"
TWEET_FIELD = "org.sevabridge.tweet_id"
ACTIONS_FIELD = "org.sevabridge.actions"
HTML_FORMAT = "org.matrix.custom.html"


# The reaction that confirms each action, in order; the first also accepts aliases.
ACTION_KEYS = ("✅", "❌", "3️⃣", "4️⃣", "5️⃣")
CONFIRM_ALIASES = frozenset({"✅", "✔", "☑", "👍"})
# Actions offered on a thread root, where people react ✅ or 👍 in passing, have a key
# of their own that nobody types by accident: the safety reply tweets when confirmed.
DEDICATED_KEYS: dict[str, str] = {ActionId.PRIVACY_REPLY: "🛡️"}


def action_keys(actions: Sequence[Action]) -> list[tuple[str, Action]]:
    """The reaction that confirms each action: its own key, else the next of ACTION_KEYS."""
    positional = iter(ACTION_KEYS)
    out: list[tuple[str, Action]] = []
    for action in actions:
        key = DEDICATED_KEYS.get(action.id) or next(positional, None)
        if key is None:
            break
        out.append((key, action))
    return out


# How a ticket state shows on its thread root; states mapped to None show nothing.
# One mark at a time: the root shows the ticket's latest state.
STATE_MARKS: dict[str, str | None] = {
    ThreadMark.CLOSED: "✅",
    ThreadMark.CLAIMED: "👀",
    ThreadMark.ANSWERED: "💬",
    ThreadMark.ESCALATED: "🚨",
    ThreadMark.OPEN: None,
}


ROOM_PING = re.compile(r"@(?=room)", re.IGNORECASE)
_USER_ID = re.compile(r"^@[^:\s]+:[^\s]+$")


@dataclass(frozen=True, slots=True)
class Rendered:
    body: str
    formatted_body: str
    user_ids: list[str]


def render(rich: Rich) -> Rendered:
    """Plain `body`, HTML `formatted_body` and the users to mention.

    Every piece of text is escaped and "@room" is broken with a word joiner, so a
    citizen's words can neither ping the room nor inject markup; only `Mention`
    segments produce pills and entries in `m.mentions`.
    """
    body: list[str] = []
    out: list[str] = []
    users: list[str] = []
    for seg in rich.segments:
        match seg:
            case Text(text=t, bold=bold):
                body.append(defuse(t))
                escaped = html_text(t)
                out.append(f"<strong>{escaped}</strong>" if bold else escaped)
            case Mention(user=u) if _USER_ID.match(u):
                body.append(u)
                href = html.escape("https://matrix.to/#/" + urllib.parse.quote(u, safe="@:"))
                out.append(f'<a href="{href}">{html.escape(u)}</a>')
                if u not in users:
                    users.append(u)
            case Mention(user=u):
                body.append(defuse(u))
                out.append(html_text(u))
            case Link(url=url, label=label):
                shown = label or url
                body.append(defuse(f"{shown} ({url})" if shown != url else url))
                if urllib.parse.urlsplit(url).scheme.lower() in ("http", "https"):
                    out.append(f'<a href="{html.escape(url)}">{html_text(shown)}</a>')
                else:
                    out.append(html_text(f"{shown} ({url})" if shown != url else url))
            case Quote(text=t):
                lines = t.splitlines() or [""]
                body.append(defuse("\n".join("> " + line for line in lines)))
                out.append("<blockquote>" + html_text(t) + "</blockquote>")
    return Rendered("".join(body), "".join(out), users)


def defuse(text: str) -> str:
    return ROOM_PING.sub("@\u2060", text)


def html_text(text: str) -> str:
    return html.escape(defuse(text)).replace("\n", "<br>")


def txn_id(key: str) -> str:
    """Deterministic per `Outgoing.key`, so Synapse drops a resend after a crash."""
    return "seva-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def thread_relation(root: str, latest: str | None = None) -> dict[str, Any]:
    """A message in a thread, with the reply fallback for clients without threads: it
    replies to "the most recent message known to the client in the thread" (spec,
    modules/threading.md, Fallback for unthreaded clients), the root until one is known."""
    return {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": latest or root},
    }


def edit_content(rendered: Rendered, message_id: str, before: list[str]) -> dict[str, Any]:
    """An `m.replace` edit of our message. Its top-level `m.mentions` holds only the
    users this edit newly mentions, `m.new_content` all of them (spec,
    modules/event_replacements.md, "Edits of events with mentions"): nobody is pinged
    twice, and a mention the edit removes is in neither."""
    new = {
        "msgtype": "m.text",
        "body": rendered.body,
        "format": HTML_FORMAT,
        "formatted_body": rendered.formatted_body,
        "m.mentions": {"user_ids": rendered.user_ids},
    }
    added = [u for u in rendered.user_ids if u not in before]
    return {
        **new,
        "body": "* " + rendered.body,
        "m.mentions": {"user_ids": added},
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": message_id},
    }
