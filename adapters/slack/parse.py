"""What Slack sends, as the core's types (pure): message events, slash commands,
button presses, and our own posts found again by their metadata.

The bot's own messages, other bots and other subtypes are dropped here; a person's
edit comes through marked `edited` (never tweeted). `ChatMessage.text` is the command
view here (people as `@U…` ids); the platform swaps in what a reader sees
(markup.py) before anything could be tweeted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from adapters.slack.render import TICKET_EVENT
from bot.domain import (
    ChannelId,
    ChatAction,
    ChatFile,
    ChatMessage,
    ChatUserId,
    MessageId,
    Outgoing,
)
from bot.ports import CommandContext

# A human reply in a thread that was also sent to the channel, and one with files
# attached: still a human message.
HUMAN_SUBTYPES = frozenset({"thread_broadcast", "file_share"})

_ANGLE_RE = re.compile(r"<([^<>]*)>")


def _plain_entity(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return target  # <@U123|name> -> @U123: the id is what the core understands
    if target.startswith("#"):
        return f"#{label}" if label else target
    if target.startswith("!"):
        word = target[1:].split("^", 1)[0]
        if label:
            return label
        return f"@{word}" if word in {"here", "channel", "everyone"} else ""
    if not label or label == target or target.endswith(label):
        return label or target
    return f"{label} ({target})"


def slack_to_plain(text: str) -> str:
    """What a person typed, from Slack's message encoding (entities and `<…>` markup)."""
    plain = _ANGLE_RE.sub(_plain_entity, text)
    return plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def human_message(
    event: Mapping[str, Any], bot_user_id: str | None, event_id: str = ""
) -> ChatMessage | None:
    """A person's message, or None for the bot's own, other bots', edits and any other
    subtype but a thread broadcast."""
    subtype = event.get("subtype")
    user = event.get("user")
    if (
        event.get("bot_id")
        or (subtype and subtype not in HUMAN_SUBTYPES)
        or not user
        or user == bot_user_id
    ):
        return None
    ts = MessageId(str(event.get("ts", "")))
    thread_ts = _str(event.get("thread_ts"))
    return ChatMessage(
        platform="slack",
        channel=ChannelId(str(event.get("channel", ""))),
        id=ts,
        sender=ChatUserId(str(user)),
        text=slack_to_plain(str(event.get("text") or "")),
        thread_root=MessageId(thread_ts) if thread_ts and thread_ts != ts else None,
        event_id=event_id,
        files=files(event),
    )


def files(event: Mapping[str, Any]) -> tuple[ChatFile, ...]:
    """The files of a `file_share` message (api.slack.com/events/message/file_share). A
    stub (`file_access: check_file_info`, Slack Connect and some DMs) has no name or type
    yet: `fetch_file` asks files.info for the whole file."""
    out = []
    for f in event.get("files") or []:
        if not isinstance(f, Mapping) or not f.get("id") or f.get("mode") == "tombstone":
            continue
        out.append(
            ChatFile(
                id=str(f["id"]),
                name=str(f.get("name") or f.get("title") or f["id"]),
                mimetype=str(f.get("mimetype") or ""),
                size=int(f.get("size") or 0),
            )
        )
    return tuple(out)


def edited_message(
    event: Mapping[str, Any], bot_user_id: str | None, event_id: str = ""
) -> ChatMessage | None:
    """A person's edit of their message (`message_changed`), or None for anything that
    changed nothing a reader sees (Slack also sends it for unfurls, thread counters and
    language detection: docs.slack.dev/reference/events/message/message_changed).

    The event has no top-level `user` or `thread_ts`: they are on `event.message`.
    """
    if event.get("subtype") != "message_changed":
        return None
    message = event.get("message") or {}
    previous = event.get("previous_message") or {}
    user = message.get("user")
    if (
        not isinstance(message, Mapping)
        or message.get("bot_id")
        or not user
        or user == bot_user_id
        or message.get("subtype") not in (None, *HUMAN_SUBTYPES)
        or message.get("text") == previous.get("text")
    ):
        return None
    ts = MessageId(str(message.get("ts", "")))
    thread_ts = _str(message.get("thread_ts"))
    return ChatMessage(
        platform="slack",
        channel=ChannelId(str(event.get("channel", ""))),
        id=ts,
        sender=ChatUserId(str(user)),
        text=slack_to_plain(str(message.get("text") or "")),
        thread_root=MessageId(thread_ts) if thread_ts and thread_ts != ts else None,
        event_id=event_id,
        edited=True,
    )


def command_context(event: Mapping[str, Any]) -> CommandContext:
    """Where a command typed as a message was asked: its channel, and thread if any."""
    thread_ts = _str(event.get("thread_ts"))
    return CommandContext(
        platform="slack",
        channel=ChannelId(str(event.get("channel", ""))),
        user=ChatUserId(str(event.get("user", ""))),
        thread_root=MessageId(thread_ts) if thread_ts else None,
    )


def slash_command(
    payload: Mapping[str, Any], home: Iterable[str] = ()
) -> tuple[str, CommandContext]:
    """The slash command's text as typed, and who asked where; `home` is the bot's
    workspace (a command from another one is marked external)."""
    ctx = CommandContext(
        platform="slack",
        channel=ChannelId(str(payload.get("channel_id", ""))),
        user=ChatUserId(str(payload.get("user_id", ""))),
        external=team_outside(payload.get("team_id"), home),
    )
    return slack_to_plain(str(payload.get("text") or "")), ctx


def button_presses(body: Mapping[str, Any], home: Iterable[str] = ()) -> list[ChatAction]:
    """The buttons pressed in a `block_actions` payload; the presser's workspace is
    `user.team_id` (else `team.id`), compared with the bot's (`home`)."""
    user_obj = body.get("user") or {}
    user = ChatUserId(str(user_obj.get("id", "")))
    channel = ChannelId(str((body.get("channel") or {}).get("id", "")))
    team = user_obj.get("team_id") or (body.get("team") or {}).get("id")
    external = team_outside(team, home)
    return [
        ChatAction(
            "slack",
            channel,
            str(action.get("action_id", "")),
            str(action.get("value") or ""),
            user,
            external=external,
        )
        for action in body.get("actions") or []
    ]


def from_another_workspace(
    envelope: Mapping[str, Any], event: Mapping[str, Any], home: Iterable[str]
) -> bool:
    """Slack Connect: whether the person behind a message event belongs to a workspace
    other than the bot's (`home`: its team id and, on Enterprise Grid, its organisation).

    The actor's workspace is the event's `user_team` (an `E…` organisation id on
    Enterprise Grid), else its `team`, as bolt reads it (slack_bolt/request/internals.py,
    `extract_actor_team_id`; facts-issue7 section 14); an edit carries them on
    `event.message`. In a channel shared with another workspace (`is_ext_shared_channel`)
    a message that names no team is treated as external: unable to tell, the bot fails
    closed. The envelope's `authorizations[0]` names the installation as well.
    """
    homes = set(home)
    for auth in (envelope.get("authorizations") or [])[:1]:
        if isinstance(auth, Mapping):
            homes |= {str(v) for v in (auth.get("team_id"), auth.get("enterprise_id")) if v}
    inner = event.get("message") if event.get("subtype") == "message_changed" else None
    source = inner if isinstance(inner, Mapping) else event
    actor = source.get("user_team") or source.get("team")
    if actor:
        return str(actor) not in homes
    return bool(envelope.get("is_ext_shared_channel"))


def team_outside(team: object, home: Iterable[str]) -> bool:
    """Whether a slash command's `team_id` or a button presser's `user.team_id` names
    another workspace than the bot's; a payload that names none is not trusted."""
    return not team or str(team) not in set(home)


def carries(msg: Mapping[str, Any], message: Outgoing) -> bool:
    """Whether a message from the history is this post: its metadata names the key, or,
    for a root posted before roots carried their key, the ticket. (A root that names
    another key is another thread of the same ticket, left by a `move`.)"""
    meta = msg.get("metadata") or {}
    payload = meta.get("event_payload") or {}
    if payload.get("key") is not None:
        return bool(payload.get("key") == message.key)
    return (
        message.is_root
        and message.ticket is not None
        and meta.get("event_type") == TICKET_EVENT
        and payload.get("ticket") == message.ticket
    )


def _str(value: object) -> str | None:
    return str(value) if value else None
