"""The sandbox's own control API (not X's): tweet as a citizen, delete, limits, faults."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from sandbox.x.model import (
    SandboxError,
    _opt_str,
)
from sandbox.x.state import XState


class Control:
    """The sandbox's own JSON API (not X's): errors are {"error": message}."""

    def __init__(self, state: XState) -> None:
        self.x = state

    async def tweet(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        return _control(
            lambda: (
                {
                    "data": self.x.tweet(
                        body.get("username", ""),
                        body.get("text", ""),
                        _opt_str(body.get("in_reply_to_tweet_id")),
                        quote_tweet_id=_opt_str(body.get("quote_tweet_id")),
                        retweet_of_tweet_id=_opt_str(body.get("retweet_of_tweet_id")),
                        media=body.get("media"),
                    )
                },
                201,
            )
        )

    async def edit(self, request: web.Request) -> web.Response:
        """The citizen edits a post: a new version with a new id (X's edit history)."""
        body = await _json_object(request)
        tweet_id = request.match_info["id"]
        return _control(lambda: ({"data": self.x.edit(tweet_id, body.get("text", ""))}, 201))

    async def field_names(self, request: web.Request) -> web.Response:
        """Which spelling of the field parameters the API takes: old, new or both."""
        body = await _json_object(request)

        def run() -> tuple[dict[str, Any], int]:
            self.x.set_field_names(str(body.get("field_names", "")))
            return {"data": {"field_names": self.x.field_names}}, 200

        return _control(run)

    async def delete(self, request: web.Request) -> web.Response:
        tweet_id = request.match_info["id"]

        def run() -> tuple[dict[str, Any], int]:
            self.x.delete(tweet_id)
            return {"data": {"id": tweet_id, "deleted": True}}, 200

        return _control(run)

    async def snapshot(self, request: web.Request) -> web.Response:
        return web.json_response(self.x.snapshot())

    async def requests(self, request: web.Request) -> web.Response:
        """The API requests answered so far (method, path, status, auth), oldest first."""
        return web.json_response({"data": [r._asdict() for r in self.x.requests]})

    async def limits(self, request: web.Request) -> web.Response:
        body = await _json_object(request)

        def run() -> tuple[dict[str, Any], int]:
            for key, value in body.items():
                if not isinstance(value, dict) or "limit" not in value:
                    raise SandboxError(400, f'{key}: expected {{"limit": N}}')
                self.x.set_limit(key, value["limit"])
            return {"data": self.x.limit_status()}, 200

        return _control(run)

    async def credentials(self, request: web.Request) -> web.Response:
        """`{"user_tokens": "revoked"}` / `{"user_tokens": "ok"}`."""
        body = await _json_object(request)

        def run() -> tuple[dict[str, Any], int]:
            wanted = body.get("user_tokens")
            if wanted not in ("revoked", "ok"):
                raise SandboxError(400, "user_tokens must be 'revoked' or 'ok'")
            self.x.revoke_user_tokens(wanted == "revoked")
            return {"data": {"user_tokens": wanted}}, 200

        return _control(run)

    async def faults(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        return _control(
            lambda: (
                {
                    "data": self.x.add_fault(
                        body.get("method", "*"),
                        body.get("path_prefix", "/"),
                        body.get("status", 503),
                        body.get("times", 1),
                        bool(body.get("after_commit", False)),
                    )
                },
                201,
            )
        )


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"error": "expected a JSON object"}', content_type="application/json"
        )
    return body


def _control(run: Callable[[], tuple[dict[str, Any], int]]) -> web.Response:
    try:
        body, status = run()
    except SandboxError as e:
        return web.json_response({"error": e.message}, status=e.status)
    return web.json_response(body, status=status)
