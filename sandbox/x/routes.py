"""The X stand-in as an aiohttp app: X's endpoints and the control API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from sandbox.x.api import XApi
from sandbox.x.control import Control
from sandbox.x.state import XState


def build_x_app(state: XState) -> web.Application:
    """The stand-in as an aiohttp app; routes are relative to wherever it is mounted."""

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

    app = web.Application(middlewares=[learn_base_url])
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
    r.add_post(
        "/2/media/upload",
        api.route("media_upload", "/2/media/upload", api.media_upload, user_only=True),
    )
    r.add_delete(
        "/2/tweets/{id}",
        api.route("delete_tweet", "/2/tweets/{id}", api.delete_tweet, user_only=True),
    )
    r.add_route("*", "/2/{tail:.*}", api.not_found)

    control = Control(state)
    r.add_post("/sandbox/tweets", control.tweet)
    r.add_post("/sandbox/tweets/{id}/delete", control.delete)
    r.add_get("/sandbox/state", control.snapshot, name="sandbox-state")
    r.add_post("/sandbox/tweets/{id}/edit", control.edit)
    r.add_post("/sandbox/field_names", control.field_names)
    r.add_get("/sandbox/requests", control.requests)
    r.add_get("/media/{name}", media_file)
    r.add_post("/sandbox/limits", control.limits)
    r.add_post("/sandbox/faults", control.faults)
    r.add_post("/sandbox/credentials", control.credentials)
    return app


# The smallest valid PNG (a 1x1 grey pixel): what the stand-in's media URLs serve, so
# the console shows something where X's CDN (pbs.twimg.com) would show the photo.
_PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b55"
    "0000000a49444154789c636800000082008177cd72b60000000049454e44ae426082"
)


async def media_file(request: web.Request) -> web.Response:
    """A posted photo or a video's preview frame (as pbs.twimg.com / video.twimg.com)."""
    return web.Response(body=_PIXEL, content_type="image/png")
