"""The stand-in as an aiohttp subapp: the Web API, the control API the console and tests
use, Socket Mode's WebSocket and response URLs."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.slack.model import (
    JSON_TYPE,
    ApiError,
    MissingScopeError,
    RateLimitedError,
    _as_bool,
)
from sandbox.slack.state import SlackState


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Web API arguments: query string, then a JSON or form body (slack_sdk sends all three)."""
    args: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return args
    if request.content_type == JSON_TYPE:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError("invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError("invalid_json")
        args.update(body)
    else:
        form = await request.post()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


async def _control_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError("invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError("invalid_json")
    return body


def _control_error(error: ApiError) -> web.Response:
    status = 404 if error.error.endswith("_not_found") else 400
    return web.json_response({"ok": False, "error": error.error}, status=status)


def _required(body: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if not body.get(key):
            raise ApiError(f"missing_{key}")


def _injected(error: str) -> ApiError:
    """An injected error as Slack sends it: `ratelimited` as HTTP 429 with Retry-After,
    every other one as HTTP 200 with `ok: false` (facts-issue7.md item 16)."""
    return RateLimitedError(1) if error == "ratelimited" else ApiError(error)


def build_slack_app(state: SlackState) -> web.Application:
    """The stand-in as an aiohttp subapp; mount it with ``app.add_subapp("/slack", ...)``."""
    app = web.Application()
    routes = web.RouteTableDef()

    @web.middleware
    async def learn_base_url(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if state.public_base_url is None:
            state_path = str(request.app.router["sandbox-state"].url_for())
            prefix = state_path.removesuffix("/sandbox/state")
            state.public_base_url = f"{request.url.origin()}{prefix}"
        return await handler(request)

    app.middlewares.append(learn_base_url)

    async def web_api(request: web.Request) -> web.Response:
        # Every answer names the token's scopes (the x-oauth-scopes header bolt and
        # `seva check --online` read; slack_sdk's file-upload tutorial shows it).
        scopes = {"x-oauth-scopes": ",".join(state.scopes)}
        try:
            args = await _read_args(request)
            method = request.match_info["method"]
            state.check_token(request.headers.get("Authorization"), args.pop("token", None), method)
            delay = state.delays.get(method, 0.0)
            if delay:
                await asyncio.sleep(delay)  # a slow method, to see what waiting on it does
            fault = state.take_fault(method)
            if fault is not None and not fault.after_commit:
                raise _injected(fault.error)
            result = state.call(method, args)
            if fault is not None:
                raise _injected(fault.error)
        except RateLimitedError as e:
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(e.retry_after), **scopes},
            )
        except MissingScopeError as e:
            body = {"ok": False, "error": e.error, "needed": e.needed, "provided": e.provided}
            return web.json_response(body, headers=scopes)
        except ApiError as e:
            return web.json_response({"ok": False, "error": e.error}, headers=scopes)
        return web.json_response(result, headers=scopes)

    app.router.add_route("GET", "/api/{method}", web_api)
    app.router.add_route("POST", "/api/{method}", web_api)

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(state.snapshot())

    app.router.add_get("/sandbox/state", get_state, name="sandbox-state")

    @routes.post("/sandbox/messages")
    async def post_message(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            _required(body, "user", "channel")
            files = body.get("files") or None
            if not body.get("text") and not files:
                raise ApiError("missing_text")
            result = await state.post_as_user(
                body["user"],
                body["channel"],
                str(body.get("text") or ""),
                body.get("thread_ts") or None,
                raw=_as_bool(body.get("raw", False)),
                files=files if isinstance(files, list) else None,
                broadcast=_as_bool(body.get("broadcast", False)),
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response(
            {"ok": True, "ts": result.ts, "event_id": result.event_id, "status": result.status}
        )

    @routes.get("/files-pri/{key}/{name}")
    @routes.get("/files-pri/{key}/download/{name}")
    async def private_file(request: web.Request) -> web.StreamResponse:
        """`url_private(_download)`: the bytes for the bot token with files:read; for
        anyone else a redirect to the login page, as Slack does (facts-issue7 s. 10)."""
        file_id = request.match_info["key"].rsplit("-", 1)[-1]
        found = state.file_bytes(file_id, request.headers.get("Authorization"))
        if found is None:
            raise web.HTTPFound(str(request.app.router["sandbox-login"].url_for()))
        mimetype, data = found
        return web.Response(body=data, content_type=mimetype)

    async def login_page(request: web.Request) -> web.Response:
        return web.Response(
            text="<!DOCTYPE html><html><body>Sign in to Seva Sandbox</body></html>",
            content_type="text/html",
        )

    app.router.add_get("/sandbox/login", login_page, name="sandbox-login")

    @routes.post("/sandbox/messages/edit")
    async def edit_message(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            _required(body, "user", "channel", "ts", "text")
            result = await state.edit_as_user(
                body["user"],
                body["channel"],
                str(body["ts"]),
                str(body["text"]),
                raw=_as_bool(body.get("raw", False)),
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response(
            {"ok": True, "ts": result.ts, "event_id": result.event_id, "status": result.status}
        )

    @routes.post("/sandbox/commands")
    async def run_command(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            _required(body, "user", "channel")
            result = await state.run_command(
                body["user"],
                body["channel"],
                str(body.get("text") or ""),
                str(body.get("command") or "/ticket"),
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response({"ok": True, "status": result.status, "response": result.response})

    @routes.post("/sandbox/actions")
    async def click_action(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            _required(body, "user", "channel", "message_ts", "action_id")
            value = body.get("value")
            status = await state.click_action(
                body["user"],
                body["channel"],
                str(body["message_ts"]),
                str(body["action_id"]),
                str(value) if value is not None else None,
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response({"ok": True, "status": status})

    @routes.post("/sandbox/users")
    async def add_user(request: web.Request) -> web.Response:
        """A person joins the workspace; with `team_id` of another workspace, a Slack
        Connect guest (what their events and payloads then carry: events.py, people.py)."""
        try:
            body = await _control_body(request)
            _required(body, "id", "name")
            team = body.get("team_id") or None
            state.add_user(
                str(body["id"]),
                str(body["name"]),
                str(body.get("real_name") or body["name"]),
                team_id=str(team) if team else None,
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response({"ok": True})

    @routes.post("/sandbox/channels/members")
    async def channel_members(request: web.Request) -> web.Response:
        """Who is in a channel (`members`: a list, or null for everyone) and whether it
        is shared with another workspace (`shared`)."""
        try:
            body = await _control_body(request)
            _required(body, "channel")
            members = body.get("members")
            if members is not None and not isinstance(members, list):
                raise ApiError("invalid_members")
            shared = body.get("shared")
            state.set_members(
                body["channel"], members, shared=None if shared is None else _as_bool(shared)
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response({"ok": True})

    @routes.post("/sandbox/redeliver")
    async def redeliver(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            _required(body, "event_id")
            status = await state.redeliver(str(body["event_id"]))
        except ApiError as e:
            return _control_error(e)
        return web.json_response({"ok": True, "status": status})

    @routes.get("/sandbox/deliveries")
    async def deliveries(request: web.Request) -> web.Response:
        """Every request and envelope sent to the bot lately: its answer and how long
        the bot took to give it."""
        return web.json_response({"deliveries": [d.json() for d in state.deliveries]})

    @routes.post("/sandbox/faults")
    async def faults(request: web.Request) -> web.Response:
        """`{"method": "chat.postMessage", "error": "internal_error", "times": 1,
        "after_commit": false}`: the next calls answer that error; `{"clear": true}`
        drops every pending fault."""
        try:
            body = await _control_body(request)
            if body.get("clear"):
                state.faults.clear()
                return web.json_response({"ok": True, "faults": []})
            _required(body, "method", "error")
            fault = state.add_fault(
                str(body["method"]),
                str(body["error"]),
                body.get("times", 1),
                _as_bool(body.get("after_commit", False)),
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response({"ok": True, "fault": fault})

    @routes.post("/sandbox/token")
    async def token(request: web.Request) -> web.Response:
        """`{"revoked": "token_revoked"}` makes every call with the bot token answer that
        error (Slack's auth errors); `{"revoked": null}` restores the token."""
        try:
            body = await _control_body(request)
            state.revoke_token(body.get("revoked") or None)
        except ApiError as e:
            return _control_error(e)
        return web.json_response({"ok": True, "revoked": state.token_error})

    @routes.post("/sandbox/config")
    async def configure(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            if "events_url" in body:
                state.events_url = body["events_url"] or None
            if "scopes" in body:
                state.scopes = tuple(str(s) for s in body["scopes"] or ())
            if "delays" in body:
                delays = body["delays"] or {}
                state.delays = {str(k): float(v) for k, v in delays.items() if float(v) >= 0}
            if "rate_limit_per_channel" in body:
                rate = float(body["rate_limit_per_channel"] or 0)
                if rate < 0 or math.isnan(rate):
                    raise ApiError("invalid_rate_limit_per_channel")
                state.rate_limit_per_channel = rate
        except (TypeError, ValueError):
            return _control_error(ApiError("invalid_rate_limit_per_channel"))
        except ApiError as e:
            return _control_error(e)
        return web.json_response(
            {
                "ok": True,
                "events_url": state.events_url,
                "rate_limit_per_channel": state.rate_limit_per_channel,
            }
        )

    @routes.get("/socket/{ticket}")
    async def socket_mode(request: web.Request) -> web.StreamResponse:
        """The WebSocket apps.connections.open points at: hello, then envelopes to ack."""
        if not state.redeem_ticket(request.match_info["ticket"]):
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = state.attach_socket(ws)
        try:
            await conn.send(state.hello())
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    state.receive_socket_message(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    break
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            pass
        finally:
            state.detach_socket(conn)
        return ws

    @routes.post("/sandbox/socket/disconnect")
    async def socket_disconnect(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request) if request.can_read_body else {}
        except ApiError as e:
            return _control_error(e)
        sent = await state.disconnect_sockets(str(body.get("reason") or "refresh_requested"))
        return web.json_response({"ok": True, "sockets": sent})

    @routes.post("/sandbox/response/{response_id}")
    async def response_url(request: web.Request) -> web.Response:
        target = state.response_target(request.match_info["response_id"])
        if target is None:
            return web.json_response({"ok": False, "error": "expired_url"}, status=404)
        if request.content_type == JSON_TYPE:
            try:
                payload: Any = await request.json()
            except ValueError:
                return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        else:
            form = await request.post()
            raw = form.get("payload")
            try:
                payload = json.loads(raw) if isinstance(raw, str) else None
            except ValueError:
                payload = None
        if not isinstance(payload, dict):
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        state.respond(target, payload)
        return web.json_response({"ok": True})

    app.add_routes(routes)

    async def close_sockets(_: web.Application) -> None:
        await state.close_sockets()  # else the server's shutdown waits for the open sockets

    async def close_state(_: web.Application) -> None:
        await state.aclose()

    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(close_state)
    return app
