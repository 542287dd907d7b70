"""The X stand-in as an aiohttp app: X's endpoints and the control API."""

from __future__ import annotations

from aiohttp import web

from sandbox.x.api import XApi
from sandbox.x.control import Control
from sandbox.x.state import XState


def build_x_app(state: XState) -> web.Application:
    """The stand-in as an aiohttp app; routes are relative to wherever it is mounted."""
    app = web.Application()
    api = XApi(state)
    r = app.router
    r.add_get("/2/users/me", api.route("users_me", "/2/users/me", api.users_me, user_only=True))
    r.add_get(
        "/2/users/{id}/mentions",
        api.route("mentions", "/2/users/{id}/mentions", api.mentions),
    )
    r.add_get(
        "/2/users/{id}/tweets",
        api.route("user_tweets", "/2/users/{id}/tweets", api.user_tweets),
    )
    r.add_get(
        "/2/tweets/search/recent",
        api.route("search_recent", "/2/tweets/search/recent", api.search_recent),
    )
    r.add_post(
        "/2/tweets", api.route("create_tweet", "/2/tweets", api.create_tweet, user_only=True)
    )
    r.add_route("*", "/2/{tail:.*}", api.not_found)

    control = Control(state)
    r.add_post("/sandbox/tweets", control.tweet)
    r.add_post("/sandbox/tweets/{id}/delete", control.delete)
    r.add_get("/sandbox/state", control.snapshot)
    r.add_post("/sandbox/limits", control.limits)
    r.add_post("/sandbox/faults", control.faults)
    return app
