"""The Web API methods the bot calls (`POST /api/<method>`), in Slack's wire
format."""

from __future__ import annotations

import base64
import dataclasses
import functools
import hmac
import secrets
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import Any

from sandbox.slack.events import EventDelivery
from sandbox.slack.model import (
    _KEPT_TICKETS,
    ApiError,
    Message,
    MissingScopeError,
    UserGroup,
    _as_bool,
    _as_int,
    _as_json,
    _decode_cursor,
    _encode_cursor,
    ts_to_us,
)

# The scopes each method accepts (any one of them will do), from each method's page on
# docs.slack.dev/reference/methods; methods not listed need none (auth.test, api.test).
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.delete": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    "reactions.add": ("reactions:write",),
    "reactions.remove": ("reactions:write",),
    "conversations.history": ("channels:history", "groups:history"),
    "conversations.replies": ("channels:history", "groups:history"),
    "conversations.info": ("channels:read", "groups:read"),
    "conversations.members": ("channels:read", "groups:read"),
    "users.info": ("users:read",),
    "users.list": ("users:read",),
    "files.info": ("files:read",),
}


# Errors a fault may inject, as Slack documents them for the Web API (slack-ref
# `methods/_errors/common.json` and the per-method lists, /work/notes/facts-issue7.md
# item 16): HTTP 200 with `{"ok": false, "error": …}` for every one, except
# `ratelimited`, which comes as HTTP 429 with Retry-After.
INJECTABLE_ERRORS = frozenset(
    {
        # transient: "It's possible some aspect of the operation succeeded" (fatal_error)
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "ratelimited",
        "rate_limited",
        # our credentials
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        # refusals no retry can cure
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "invalid_blocks",
    }
)
AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"}
)


@dataclasses.dataclass(slots=True)
class Fault:
    """The next `times` calls of `method` ("*": any) answer `error`; with `after_commit`
    the call is carried out first (a message that exists although the caller saw an
    error, as `fatal_error` allows)."""

    method: str
    error: str
    times: int
    after_commit: bool = False

    def json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class WebApi(EventDelivery):
    """A part of `SlackState` (state.py), which holds the workspace it works on."""

    def add_fault(
        self, method: str, error: str, times: int = 1, after_commit: bool = False
    ) -> dict[str, Any]:
        if error not in INJECTABLE_ERRORS:
            raise ApiError("invalid_fault_error")
        if not isinstance(times, int) or times < 1:
            raise ApiError("invalid_fault_times")
        fault = Fault(str(method), error, times, bool(after_commit))
        self.faults.append(fault)
        return fault.json()

    def revoke_token(self, error: str | None) -> None:
        """Every call with the bot token answers `error` (one of AUTH_ERRORS) until
        called with None: a token revoked, then restored."""
        if error is not None and error not in AUTH_ERRORS:
            raise ApiError("invalid_token_error")
        self.token_error = error

    def take_fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.method in (method, "*"):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def check_token(self, authorization: str | None, token: Any = None, method: str = "") -> None:
        """The bot token for every method, except the app token for ``apps.connections.open``."""
        supplied = token
        if authorization and authorization.lower().startswith("bearer "):
            supplied = authorization[7:].strip()
        if not supplied:
            raise ApiError("not_authed")
        supplied = str(supplied)
        is_bot = hmac.compare_digest(supplied, self.bot_token)
        if is_bot and self.token_error is not None and method != "apps.connections.open":
            raise ApiError(self.token_error)
        is_app = self.app_token is not None and hmac.compare_digest(supplied, self.app_token)
        wanted, other = (is_app, is_bot) if method == "apps.connections.open" else (is_bot, is_app)
        if wanted:
            return
        raise ApiError("not_allowed_token_type" if other else "invalid_auth")

    @functools.cached_property
    def _methods(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        return {
            "api.test": lambda args: {"args": args},
            "apps.connections.open": self._apps_connections_open,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "users.info": self._users_info,
            "users.list": self._users_list,
            "files.info": self._files_info,
            "usergroups.users.list": self._usergroups_users_list,
            "usergroups.users.update": self._usergroups_users_update,
        }

    def call(self, method: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Run one Web API method (token already checked); raises ApiError / RateLimitedError."""
        handler = self._methods.get(method)
        if handler is None:
            raise ApiError("unknown_method")
        accepted = METHOD_SCOPES.get(method, ())
        if accepted and not set(accepted) & set(self.scopes):
            # The body Slack gives (Node SDK response types): what was needed and had.
            raise MissingScopeError(",".join(accepted), ",".join(self.scopes))
        return {"ok": True, **handler(dict(args))}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """A one-time WebSocket URL on this server (the token was checked to be the app token)."""
        base = self.public_base_url
        if base is None:
            raise RuntimeError("SlackState.public_base_url is unknown: set it, or make a request")
        ticket = secrets.token_urlsafe(16)
        self._tickets[ticket] = None
        if len(self._tickets) > _KEPT_TICKETS:
            del self._tickets[next(iter(self._tickets))]
        scheme, sep, rest = base.rstrip("/").partition("://")
        ws_base = ("wss" if scheme == "https" else "ws") + sep + rest
        return {"url": f"{ws_base}/socket/{ticket}"}

    def _team_url(self) -> str:
        return f"https://{self.team_name.lower().replace(' ', '-')}.slack.com/"

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self._team_url(),
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self.channel(args.get("channel"))
        if chan.is_im:
            raise ApiError("channel_not_found")
        if not chan.is_member:
            raise ApiError("not_in_channel")
        text = str(args.get("text") or "")
        blocks = _as_json(args.get("blocks"), "invalid_blocks")
        if blocks is not None and not isinstance(blocks, list):
            raise ApiError("invalid_blocks")
        if not text and not blocks:
            raise ApiError("no_text")
        metadata = self._metadata_arg(args.get("metadata"))
        root = self._thread_root(chan, args.get("thread_ts"))
        self._take_token(chan)
        msg = self._add_message(
            chan, self.bot_user_id, text, bot=True, root=root, blocks=blocks, metadata=metadata
        )
        self._deliver_in_background(self._message_event(msg))
        return {"channel": chan.id, "ts": msg.ts, "message": self._render(msg, metadata=True)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.message(args.get("channel"), args.get("ts"))
        if msg.bot_id != self.bot_id:
            raise ApiError("cant_update_message")
        text = args.get("text")
        blocks = _as_json(args.get("blocks"), "invalid_blocks")
        metadata = self._metadata_arg(args.get("metadata"))
        if text is None and blocks is None:
            raise ApiError("no_text")
        event = self._edit(
            msg,
            self.bot_user_id,
            str(text) if text is not None else None,
            blocks=blocks,
            metadata=metadata,
        )
        self._deliver_in_background(event)
        return {
            "channel": msg.channel,
            "ts": msg.ts,
            "text": msg.text,
            "message": self._render(msg, metadata=True),
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.message(args.get("channel"), args.get("ts"))
        if msg.bot_id != self.bot_id:
            raise ApiError("cant_delete_message")
        self._deliver_in_background(self._delete(msg))
        return {"channel": msg.channel, "ts": msg.ts}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        """Fails where the bot is not: `channel_not_found` for a DM it is not in,
        `not_in_channel` for a channel it was not added to (slack-ref
        chat.postEphemeral errors; slackapi/python-slack-sdk#734)."""
        chan = self.channel(args.get("channel"))
        if chan.is_im:
            raise ApiError("channel_not_found")
        if not chan.is_member:
            raise ApiError("not_in_channel")
        user = self.user(args.get("user"))
        if user.is_bot:
            raise ApiError("user_not_in_channel")
        text = str(args.get("text") or "")
        blocks = _as_json(args.get("blocks"), "invalid_blocks")
        if not text and not blocks:
            raise ApiError("no_text")
        thread_ts = args.get("thread_ts") or None
        note = self._add_ephemeral(chan.id, user.id, text, blocks, thread_ts)
        return {"message_ts": note.ts}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        """As docs.slack.dev/reference/methods/chat.getPermalink shows it:
        `https://<team>.slack.com/archives/<channel>/p<ts without its dot>`, and for a
        reply in a thread `?thread_ts=<root ts>&cid=<channel>`; `channel_not_found` or
        `message_not_found` otherwise."""
        msg = self.message(args.get("channel"), args.get("message_ts"))
        link = f"{self._team_url()}archives/{msg.channel}/p{msg.ts.replace('.', '')}"
        if msg.thread_us is not None:
            root = self.channel(msg.channel).by_us[msg.thread_us]
            link += f"?thread_ts={root.ts}&cid={msg.channel}"
        return {"channel": msg.channel, "permalink": link}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        msg, name = self._reaction_target(args)
        users = msg.reactions.setdefault(name, [])
        if self.bot_user_id in users:
            raise ApiError("already_reacted")
        users.append(self.bot_user_id)
        return {}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        msg, name = self._reaction_target(args)
        users = msg.reactions.get(name, [])
        if self.bot_user_id not in users:
            raise ApiError("no_reaction")
        users.remove(self.bot_user_id)
        if not users:
            del msg.reactions[name]
        return {}

    def _reaction_target(self, args: dict[str, Any]) -> tuple[Message, str]:
        name = str(args.get("name") or "").strip(":")
        if not name or any(c.isspace() for c in name):
            raise ApiError("invalid_name")
        if not args.get("channel") or not (args.get("timestamp") or args.get("ts")):
            raise ApiError("no_item_specified")
        return self.message(args["channel"], args.get("timestamp") or args.get("ts")), name

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self.channel(args.get("channel"))
        limit = _as_int(args.get("limit"), 100, 1, 999)
        with_metadata = _as_bool(args.get("include_all_metadata", False))
        low, high = self._bounds(args)
        cursor = _decode_cursor(args.get("cursor"))
        if cursor is not None:
            high = min(high, cursor + 1)
        keys = chan.top_level
        start, end = bisect_left(keys, low), bisect_left(keys, high)
        first = max(start, end - limit)
        page = [self._render(chan.by_us[k], metadata=with_metadata) for k in keys[first:end]]
        page.reverse()
        has_more = first > start
        return {
            "messages": page,
            "has_more": has_more,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {
                "next_cursor": _encode_cursor(keys[first - 1]) if has_more else ""
            },
        }

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self.channel(args.get("channel"))
        try:
            msg = self.message(chan.id, args.get("ts"))
        except ApiError:
            raise ApiError("thread_not_found") from None
        root = chan.by_us[msg.thread_us] if msg.thread_us is not None else msg
        limit = _as_int(args.get("limit"), 1000, 1, 1000)
        with_metadata = _as_bool(args.get("include_all_metadata", False))
        low, high = self._bounds(args)
        cursor = _decode_cursor(args.get("cursor"))
        keys = root.replies
        start = bisect_left(keys, low if cursor is None else max(low, cursor))
        end = bisect_left(keys, high)
        page: list[dict[str, Any]] = []
        if cursor is None:
            page.append(self._render(root, metadata=with_metadata))
        stop = min(end, start + max(0, limit - len(page)))
        page.extend(self._render(chan.by_us[k], metadata=with_metadata) for k in keys[start:stop])
        has_more = stop < end
        return {
            "messages": page,
            "has_more": has_more,
            "response_metadata": {"next_cursor": _encode_cursor(keys[stop]) if has_more else ""},
        }

    def _bounds(self, args: dict[str, Any]) -> tuple[int, int]:
        """Half-open key range [low, high) from oldest/latest/inclusive."""
        inclusive = _as_bool(args.get("inclusive", False))
        try:
            low = ts_to_us(args["oldest"]) + (0 if inclusive else 1) if args.get("oldest") else 0
            high = (
                ts_to_us(args["latest"]) + (1 if inclusive else 0)
                if args.get("latest")
                else 1 << 62
            )
        except ValueError:
            raise ApiError("invalid_ts_latest") from None
        return low, high

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self.channel(args.get("channel"))
        return {
            "channel": {
                "id": chan.id,
                "name": chan.name,
                "is_channel": not chan.is_im,
                "is_group": False,
                "is_im": chan.is_im,
                "is_private": chan.is_im,
                "is_archived": False,
                "is_general": False,
                "is_member": chan.is_member,
                "is_ext_shared": chan.shared,
                "is_shared": chan.shared,
                "created": 1700000000,
                "creator": next(iter(self.users), self.bot_user_id),
                "name_normalized": chan.name,
                "num_members": sum(self.in_channel(chan, u) for u in self.users)
                + int(chan.is_member),
                "context_team_id": self.team_id,
            }
        }

    def _conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        """docs.slack.dev/reference/methods/conversations.members: the channel's member
        ids, paged by `cursor` (the bot itself among them when it is in the channel)."""
        chan = self.channel(args.get("channel"))
        people = [u for u in self.users if self.in_channel(chan, u)]
        members = [*people, self.bot_user_id] if chan.is_member else people
        limit = _as_int(args.get("limit"), 100, 1, 1000)
        start = 0
        if args.get("cursor"):
            try:
                start = int(base64.b64decode(str(args["cursor"])).decode().removeprefix("offset:"))
            except ValueError:
                raise ApiError("invalid_cursor") from None
        end = start + limit
        more = end < len(members)
        cursor = base64.b64encode(f"offset:{end}".encode()).decode() if more else ""
        return {"members": members[start:end], "response_metadata": {"next_cursor": cursor}}

    def _files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """files.info (docs.slack.dev/reference/methods/files.info): the whole file."""
        found = self.files.get(str(args.get("file") or ""))
        if found is None:
            raise ApiError("file_not_found")
        return {"file": dict(found[0]), "comments": [], "response_metadata": {"next_cursor": ""}}

    def _users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """users.list (docs.slack.dev/reference/methods/users.list): `members` paged by
        `cursor` and `limit`, the bot user among them."""
        everyone = [*self.users, self.bot_user_id]
        limit = _as_int(args.get("limit"), 200, 1, 1000)
        start = 0
        if args.get("cursor"):
            try:
                start = int(base64.b64decode(str(args["cursor"])).decode().removeprefix("user:"))
            except ValueError:
                raise ApiError("invalid_cursor") from None
        end = start + limit
        cursor = base64.b64encode(f"user:{end}".encode()).decode() if end < len(everyone) else ""
        members = [self._users_info({"user": u})["user"] for u in everyone[start:end]]
        return {
            "members": members,
            "cache_ts": int(self.clock()),
            "response_metadata": {"next_cursor": cursor},
        }

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.user(args.get("user"))
        profile: dict[str, Any] = {
            "real_name": user.real_name,
            "display_name": user.name,
            "team": user.team_id or self.team_id,
        }
        if user.is_bot:
            profile["bot_id"] = self.bot_id
        return {
            "user": {
                "id": user.id,
                "team_id": user.team_id or self.team_id,
                "name": user.name,
                "real_name": user.real_name,
                "deleted": False,
                "is_bot": user.is_bot,
                "is_admin": False,
                "tz": "Asia/Kolkata",
                "tz_offset": 19800,
                "profile": profile,
            }
        }

    # User groups, from Slack's method reference (docs.slack.dev/reference/methods/
    # usergroups.users.list and usergroups.users.update, as scraped in
    # slack-ruby/slack-api-ref 14d2f364: arguments, output and error codes).

    def _usergroup(self, args: dict[str, Any]) -> UserGroup:
        ref = args.get("usergroup")
        if not ref:
            raise ApiError("missing_argument")
        group = self.usergroups.get(str(ref))
        if group is None:
            raise ApiError("no_such_subteam")
        return group

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        """`users`: the member ids (scope usergroups:read)."""
        return {"users": list(self._usergroup(args).users)}

    def _usergroups_users_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """`users` is "a comma separated string of encoded user IDs that represent the
        entire list of users for the user group" (scope usergroups:write); an empty list
        is `no_users_provided`, an unknown id `invalid_users`."""
        group = self._usergroup(args)
        raw = args.get("users")
        if isinstance(raw, list):
            ids = [str(u).strip() for u in raw]
        else:
            ids = [u.strip() for u in str(raw or "").split(",")]
        ids = [u for u in ids if u]
        if not ids:
            raise ApiError("no_users_provided")
        if any(u not in self.users for u in ids):
            raise ApiError("invalid_users")
        group.users = list(dict.fromkeys(ids))
        group.date_update = int(self.clock())
        group.updated_by = self.bot_user_id
        return {"usergroup": self._render_usergroup(group)}

    def _render_usergroup(self, group: UserGroup) -> dict[str, Any]:
        return {
            "id": group.id,
            "team_id": self.team_id,
            "is_usergroup": True,
            "name": group.name,
            "description": "",
            "handle": group.handle,
            "is_external": False,
            "date_create": 1700000000,
            "date_update": group.date_update,
            "date_delete": 0,
            "auto_type": None,
            "created_by": next(iter(self.users), self.bot_user_id),
            "updated_by": group.updated_by,
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
            "users": list(group.users),
            "user_count": len(group.users),
        }
