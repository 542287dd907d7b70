"""What people do at the console: post and edit as a user, run a slash command,
press a button."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from sandbox.slack.events import EventDelivery
from sandbox.slack.model import (
    _KEPT_ENVELOPES,
    FORM_TYPE,
    RESPONSE_URL_SECONDS,
    RESPONSE_URL_USES,
    ApiError,
    CommandResult,
    Message,
    PostResult,
    User,
    _as_bool,
    _ResponseTarget,
    encode_typed_text,
    rich_text_of,
    us_to_ts,
)


class People(EventDelivery):
    """A part of `SlackState` (state.py), which holds the workspace it works on."""

    async def post_as_user(
        self,
        user: str,
        channel: str,
        text: str,
        thread_ts: str | None = None,
        *,
        raw: bool = False,
        files: list[dict[str, Any]] | None = None,
        broadcast: bool = False,
    ) -> PostResult:
        """A person posts (with files: `[{"name", "mimetype", "content_base64"}]`, a
        `file_share` message); waits for the bot's answer to the first delivery."""
        person = self._person(user)
        chan = self.channel(channel)
        if not self.in_channel(chan, person.id):
            raise ApiError("not_in_channel")  # Slack's client asks them to join first
        root = self._thread_root(chan, thread_ts)
        typed = text if raw else encode_typed_text(text)
        shared = []
        for f in files or []:
            file_id = self.add_file(
                person.id,
                str(f.get("name") or "file"),
                str(f.get("mimetype") or "application/octet-stream"),
                base64.b64decode(str(f.get("content_base64") or "")),
            )
            if _as_bool(f.get("stub", False)):  # as Slack Connect sends it
                self.stub_files.add(file_id)
            shared.append(file_id)
        msg = self._add_message(
            chan,
            person.id,
            typed,
            bot=False,
            root=root,
            blocks=rich_text_of(typed) if typed else None,
            files=shared or None,
        )
        if broadcast and root is not None:
            # "Also send to #channel": the reply itself, subtype thread_broadcast
            # (docs.slack.dev/reference/events/message/thread_broadcast).
            msg.subtype = "thread_broadcast"
        if not chan.is_member:
            return PostResult(msg.ts, None, None)  # Slack sends the bot no events from here
        event_id, status = await self._deliver_event(self._message_event(msg))
        return PostResult(msg.ts, event_id, status)

    async def edit_as_user(
        self, user: str, channel: str, ts: str, text: str, *, raw: bool = False
    ) -> PostResult:
        person = self._person(user)
        msg = self.message(channel, ts)
        if msg.user != person.id:
            raise ApiError("cant_update_message")
        typed = text if raw else encode_typed_text(text)
        event = self._edit(msg, person.id, typed, blocks=rich_text_of(typed))
        event_id, status = await self._deliver_event(event)
        return PostResult(msg.ts, event_id, status)

    async def run_command(
        self, user: str, channel: str, text: str = "", command: str = "/ticket"
    ) -> CommandResult:
        """A person runs a slash command; what the bot answers is shown to them as Slack would."""
        person = self._person(user)
        # A command works anywhere: a DM, or a channel the bot was never added to.
        chan = self.dm(channel) if str(channel).startswith("D") else self.channel(channel)
        if not self.in_channel(chan, person.id):
            raise ApiError("not_in_channel")  # typed only where they are a member
        command = command if command.startswith("/") else "/" + command
        target = _ResponseTarget(chan.id, person.id, None, None, self.clock())
        form = {
            "token": self.verification_token,
            "team_id": self.team_of(person.id),
            "team_domain": self.team_name.lower().replace(" ", "-"),
            "channel_id": chan.id,
            "channel_name": "directmessage" if chan.is_im else chan.name,
            "user_id": person.id,
            "user_name": person.name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": self._new_response_url(target),
            "trigger_id": self._trigger_id(),
        }
        if self._sockets:
            return await self._run_command_on_socket(form, target)
        status, body, reason = await self._send(urlencode(form).encode(), FORM_TYPE, "command")
        if reason == "http_timeout":
            self._add_ephemeral(
                chan.id, person.id, f'{command} failed with the error "operation_timeout"'
            )
            return CommandResult(status, None)
        if reason is not None:
            self._add_ephemeral(
                chan.id, person.id, f'{command} failed with the error "dispatch_failed"'
            )
            return CommandResult(status, body or None)
        response: Any = None
        if body.strip():
            try:
                response = json.loads(body)
            except ValueError:
                response = body
            self.respond(target, response)
        return CommandResult(status, response)

    async def _run_command_on_socket(
        self, form: dict[str, str], target: _ResponseTarget
    ) -> CommandResult:
        """A ``slash_commands`` envelope; the ack's payload is the answer the person sees."""
        status, ack, reason = await self._send_socket(
            "slash_commands", dict(form), "command", accepts_response_payload=True
        )
        if reason is not None:
            error = "operation_timeout" if reason == "timeout" else "dispatch_failed"
            self._add_ephemeral(
                target.channel, target.user, f'{form["command"]} failed with the error "{error}"'
            )
            return CommandResult(status, None)
        response = (ack or {}).get("payload") or None
        if response is not None:
            self.respond(target, response)
        return CommandResult(status, response)

    async def click_action(
        self,
        user: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str | None = None,
    ) -> int | None:
        """A person clicks a button in a message; returns the bot's HTTP status."""
        person = self._person(user)
        msg = self.message(channel, message_ts)
        chan = self.channels[msg.channel]
        block_id, element = self._find_action(msg, action_id)
        thread_ts = us_to_ts(msg.thread_us) if msg.thread_us is not None else None
        target = _ResponseTarget(chan.id, person.id, thread_ts, msg.ts, self.clock())
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id,
            "text": element.get("text", {"type": "plain_text", "text": action_id, "emoji": True}),
            "value": value if value is not None else element.get("value"),
            "type": element.get("type", "button"),
            "action_ts": us_to_ts(self._new_us()),
        }
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": msg.ts,
            "channel_id": chan.id,
            "is_ephemeral": False,
        }
        if thread_ts is not None:
            container["thread_ts"] = thread_ts
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {
                "id": person.id,
                "username": person.name,
                "name": person.name,
                "team_id": self.team_of(person.id),
            },
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "container": container,
            "trigger_id": self._trigger_id(),
            "team": {"id": self.team_id, "domain": self.team_name.lower().replace(" ", "-")},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": chan.id, "name": chan.name},
            "message": self._render(msg, metadata=False),
            "state": {"values": {}},
            "response_url": self._new_response_url(target),
            "actions": [action],
        }
        if self._sockets:
            status, _, _ = await self._send_socket("interactive", payload, "block_actions")
            return status
        body = urlencode({"payload": json.dumps(payload)}).encode()
        status, _, _ = await self._send(body, FORM_TYPE, "block_actions")
        return status

    async def redeliver(self, event_id: str, retry_reason: str = "http_timeout") -> int | None:
        """Send an already delivered envelope again, byte for byte, as Slack's retry 1 would."""
        body = self._envelopes.get(event_id)
        if body is None:
            raise ApiError("event_not_found")
        status, _ = await self._dispatch_event(event_id, body, 1, retry_reason)
        return status

    def respond(self, target: _ResponseTarget, response: Any) -> None:
        """Show what the bot sent to a response_url (or as a command's ack body)."""
        if isinstance(response, str):
            self._add_ephemeral(target.channel, target.user, response, None, target.thread_ts)
            return
        if not isinstance(response, dict):
            return
        text = str(response.get("text") or "")
        blocks = response.get("blocks") if isinstance(response.get("blocks"), list) else None
        if target.message_ts is not None and _as_bool(response.get("delete_original", False)):
            with contextlib.suppress(ApiError):
                msg = self.message(target.channel, target.message_ts)
                self._deliver_in_background(self._delete(msg))
            return
        if target.message_ts is not None and _as_bool(response.get("replace_original", False)):
            try:
                msg = self.message(target.channel, target.message_ts)
            except ApiError:
                return
            if msg.bot_id is not None:
                self._deliver_in_background(self._edit(msg, self.bot_user_id, text, blocks=blocks))
            return
        if not text and not blocks:
            return
        if response.get("response_type") == "in_channel":
            chan = self.channels[target.channel]
            root = self._thread_root(chan, target.thread_ts) if target.thread_ts else None
            msg = self._add_message(
                chan, self.bot_user_id, text, bot=True, root=root, blocks=blocks
            )
            self._deliver_in_background(self._message_event(msg))
            return
        self._add_ephemeral(target.channel, target.user, text, blocks, target.thread_ts)

    def response_target(self, response_id: str) -> _ResponseTarget | None:
        """Where a post to this response_url goes; None once it was used 5 times or is
        older than 30 minutes (Slack then answers 404)."""
        target = self._response_targets.get(response_id)
        if target is None:
            return None
        uses = self._response_uses.get(response_id, 0)
        if uses >= RESPONSE_URL_USES or self.clock() - target.created > RESPONSE_URL_SECONDS:
            return None
        self._response_uses[response_id] = uses + 1
        return target

    def snapshot(self) -> dict[str, Any]:
        """What a person would see: every channel's messages oldest first, replies included."""
        return {
            "team": {"id": self.team_id, "name": self.team_name},
            "bot_user_id": self.bot_user_id,
            "socket_connections": len(self._sockets),
            "socket_connections_opened": self._socket_count,
            "channels": [
                {
                    "id": chan.id,
                    "name": chan.name,
                    "messages": [self._snapshot_message(m) for m in chan.by_us.values()],
                }
                for chan in self.channels.values()
            ],
            "ephemeral": [
                {
                    "channel": e.channel,
                    "user": e.user,
                    "text": e.text,
                    "blocks": e.blocks,
                    "ts": e.ts,
                    "thread_ts": e.thread_ts,
                }
                for e in self.ephemeral
            ],
            "users": [
                {"id": u.id, "name": u.name, "real_name": u.real_name, "is_bot": u.is_bot}
                for u in self.users.values()
            ],
            "usergroups": [
                {"id": g.id, "handle": g.handle, "users": list(g.users)}
                for g in self.usergroups.values()
            ],
        }

    def _snapshot_message(self, msg: Message) -> dict[str, Any]:
        return {
            "ts": msg.ts,
            "user": msg.user,
            "bot_id": msg.bot_id,
            "text": msg.text,
            "thread_ts": us_to_ts(msg.thread_us) if msg.thread_us is not None else None,
            "reply_count": len(msg.replies),
            "metadata": msg.metadata,
            "blocks": msg.blocks,
            "reactions": [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in msg.reactions.items()
            ],
            "edited": dict(msg.edited) if msg.edited else None,
        }

    def _person(self, user_id: str) -> User:
        person = self.user(user_id)
        if person.is_bot:
            raise ApiError("user_not_found")
        return person

    def _find_action(self, msg: Message, action_id: str) -> tuple[str, dict[str, Any]]:
        for block in msg.blocks or []:
            if not isinstance(block, dict):
                continue
            elements = block.get("elements") or []
            accessory = block.get("accessory")
            if isinstance(accessory, dict):
                elements = [*elements, accessory]
            for element in elements:
                if isinstance(element, dict) and element.get("action_id") == action_id:
                    return str(block.get("block_id") or secrets.token_hex(3)), element
        raise ApiError("action_not_found")

    def _trigger_id(self) -> str:
        return f"{int(time.time())}.{self.team_id}.{secrets.token_hex(16)}"

    def _new_response_url(self, target: _ResponseTarget) -> str:
        response_id = secrets.token_urlsafe(12)
        self._response_targets[response_id] = target
        if len(self._response_targets) > _KEPT_ENVELOPES:
            del self._response_targets[next(iter(self._response_targets))]
        base = self.public_base_url
        if base is None:
            raise RuntimeError(
                "SlackState.public_base_url is unknown: set it, or make any request first"
            )
        return f"{base.rstrip('/')}/sandbox/response/{response_id}"
