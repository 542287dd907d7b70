"""The X API v2 endpoints the bot uses: auth, faults, rate limits and headers around each."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from twitter_text import parse_tweet

from sandbox.x.model import (
    _CREATE_KEYS,
    _DIGITS,
    _SEARCH_PARAMS,
    _USER_PARAMS,
    DELETED,
    DUPLICATE,
    MEDIA_CATEGORIES,
    MENTIONS_REACHABLE,
    NOT_ALLOWED,
    PROBLEMS,
    SEARCH_SECONDS,
    USER_TWEETS_REACHABLE,
    RequestRecord,
    _and,
    _check_params,
    _escape,
    _Fault,
    _field_params,
    _fields,
    _forbidden,
    _http_problem,
    _id_param,
    _image_type,
    _int_param,
    _invalid,
    _Problem,
    _relative_path,
    _text_fits,
    _time_filter,
    _token,
    _token_param,
    _Tweet,
)
from sandbox.x.search import _compile_query
from sandbox.x.state import XState

Handler = Callable[[web.Request, str | None], Awaitable[tuple[dict[str, Any], int]]]


class XApi:
    def __init__(self, state: XState) -> None:
        self.state = state

    def route(
        self, key: str, template: str, handler: Handler, *, user_only: bool = False
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Wraps a handler in what every X endpoint does: auth, faults, rate limit, headers."""
        state = self.state

        async def endpoint(request: web.Request) -> web.StreamResponse:
            rel_path = _relative_path(request, template)
            auth = "none"
            fault: _Fault | None = None
            try:
                auth, caller = await state._authenticate(request, rel_path)
                if user_only and caller is None:
                    raise _Problem(
                        403,
                        "Unsupported Authentication",
                        "Authenticating with OAuth 2.0 Application-Only is forbidden for this "
                        "endpoint.  Supported authentication types are [OAuth 1.0a User "
                        "Context, OAuth 2.0 User Context].",
                        PROBLEMS + "unsupported-authentication",
                    )
                fault = state._take_fault(request.method, rel_path)
                if fault is not None and not fault.after_commit:
                    raise _http_problem(fault.status)
                state._consume(key)
                body, status = await handler(request, caller)
                if fault is not None:
                    raise _http_problem(fault.status)
                response: web.Response = web.json_response(body, status=status)
            except _Problem as problem:
                response = problem.response()
            limit, remaining, reset = state._peek(key)
            if response.status == 429:
                remaining = 0
            response.headers["x-rate-limit-limit"] = str(limit)
            response.headers["x-rate-limit-remaining"] = str(remaining)
            response.headers["x-rate-limit-reset"] = str(reset)
            if key == "create_tweet":
                response.headers.update(state.daily_post_headers())
            state.requests.append(RequestRecord(request.method, rel_path, response.status, auth))
            return response

        return endpoint

    async def not_found(self, request: web.Request) -> web.Response:
        return _Problem(404, "Not Found", "Sorry, that page does not exist.").response()

    async def users_me(self, request: web.Request, caller: str | None) -> tuple[dict, int]:
        _check_params(request.query, _field_params(_USER_PARAMS, self.state.field_names))
        user = self.state._users[caller or ""]
        return {"data": self.state._user_json(user, _fields(request.query))}, 200

    async def mentions(self, request: web.Request, caller: str | None) -> tuple[dict, int]:
        user = self.state._user_or_404(request.match_info["id"])
        ids = self.state._mentions.get(user.id, [])
        return self.state._timeline(request, ids, reachable=MENTIONS_REACHABLE), 200

    async def user_tweets(self, request: web.Request, caller: str | None) -> tuple[dict, int]:
        user = self.state._user_or_404(request.match_info["id"])
        exclude = set(filter(None, request.query.get("exclude", "").split(",")))
        if exclude - {"retweets", "replies"}:
            raise _invalid(
                "exclude",
                request.query["exclude"],
                "The `exclude` query parameter value is not one of [replies,retweets]",
            )

        def keep(t: _Tweet) -> bool:
            if "retweets" in exclude and t.is_retweet:
                return False
            return not ("replies" in exclude and t.in_reply_to_tweet_id is not None)

        ids = self.state._by_author.get(user.id, [])
        body = self.state._timeline(request, ids, reachable=USER_TWEETS_REACHABLE, keep=keep)
        return body, 200

    async def search_recent(self, request: web.Request, caller: str | None) -> tuple[dict, int]:
        state = self.state
        q = request.query
        _check_params(q, _field_params(_SEARCH_PARAMS, state.field_names))
        query = q.get("query", "")
        if not query.strip():
            raise _invalid("query", query, "The `query` query parameter can not be empty")
        if len(query) > 512:
            raise _invalid("query", query, "The `query` query parameter is longer than 512")
        try:
            matches = _compile_query(query, state)
        except ValueError as e:
            raise _invalid(
                "query", query, f"There were errors processing your request: {e}"
            ) from None
        fields = _fields(q)
        max_results = _int_param(q, "max_results", 10, 100, 10)
        since = _id_param(q, "since_id")
        until = _id_param(q, "until_id")
        token = _token_param(q, "next_token") or _token_param(q, "pagination_token")
        if token is not None:
            until = token if until is None else min(until, token)
        cutoff = state.clock() - SEARCH_SECONDS
        page, more = state._walk(
            state._ids,
            since=since,
            until=until,
            max_results=max_results,
            keep=_and(matches, _time_filter(q, since)),
            stop=lambda t: t.created_at < cutoff,
        )
        return state._page(page, fields, _token(page[-1].id) if more and page else None), 200

    async def media_upload(self, request: web.Request, caller: str | None) -> tuple[dict, int]:
        """`POST /2/media/upload`, the one-shot upload (X's OpenAPI 2.159 and 2.167:
        multipart `media` and `media_category`; images up to 5 MB, X-docs media best
        practices). Its id goes in a post's `media.media_ids` within a day."""
        if not request.content_type.startswith("multipart/"):
            raise _invalid("media", "", "The request body must be multipart/form-data.")
        form = await request.post()
        media = form.get("media")
        category = str(form.get("media_category") or "")
        if category not in MEDIA_CATEGORIES:
            raise _invalid(
                "media_category",
                category,
                f"$.media_category: must be one of [{', '.join(sorted(MEDIA_CATEGORIES))}]",
            )
        data = media.file.read() if isinstance(media, web.FileField) else None
        if not data:
            raise _invalid("media", "", "$.media: is missing but it is required")
        kind = _image_type(data)
        if category == "tweet_image" and kind is None:
            raise _invalid("media", "", "Unsupported media type: expected JPEG, PNG, GIF or WEBP.")
        if len(data) > 5 * 1024 * 1024:
            raise _invalid("media", "", "Image file size must be <= 5242880 bytes.")
        return {"data": self.state._upload(caller or "", data, kind or "")}, 200

    async def delete_tweet(self, request: web.Request, caller: str | None) -> tuple[dict, int]:
        """`DELETE /2/tweets/{id}` as X's OpenAPI spec has it (operation deletePosts; the
        `TweetDeleteResponse` schema in xdevplatform/xdk, `{"data": {"deleted": true}}`,
        facts-issue7 section 8); user context only. Deleting any version of an edited
        post deletes them all. X documents no answer for a post already gone or another
        author's: this stand-in says 404 resource-not-found and 403, as its other
        endpoints do."""
        tweet_id = request.match_info["id"]
        if not _DIGITS.fullmatch(tweet_id):
            raise _invalid(
                "id", tweet_id, f"The `id` query parameter value [{tweet_id}] is not valid"
            )
        t = self.state._tweets.get(int(tweet_id))
        if t is None or t.deleted:
            raise _Problem(
                404,
                "Not Found Error",
                f"Could not find tweet with id: [{tweet_id}].",
                PROBLEMS + "resource-not-found",
            )
        if t.author_id != caller:
            raise _forbidden("You are not allowed to delete a Tweet that you did not create.")
        self.state.delete(tweet_id)
        return {"data": {"deleted": True}}, 200

    async def create_tweet(self, request: web.Request, caller: str | None) -> tuple[dict, int]:
        state = self.state
        author = state._users[caller or ""]
        try:
            body = await request.json()
        except ValueError:
            raise _Problem(
                400,
                "Invalid Request",
                "The request body is not valid JSON.",
                PROBLEMS + "invalid-request",
            ) from None
        if not isinstance(body, dict):
            raise _invalid("body", str(body), "The request body must be a JSON object")
        for key in body:
            if key not in _CREATE_KEYS:
                raise _invalid(
                    key,
                    "",
                    f"$.{key}: is not defined in the schema and the schema does not "
                    "allow additional properties",
                )
        text = body.get("text", "")
        media_keys = state._media_for_post(author.id, body.get("media"))
        if not isinstance(text, str) or (not text.strip() and not media_keys):
            raise _invalid("text", str(text or ""), "Tweet text must not be empty.")
        if not _text_fits(text):
            weight = parse_tweet(text).weightedLength
            raise _invalid(
                "text",
                text,
                f"Tweet text is too long: {weight} weighted characters, the limit is 280.",
            )
        reply = body.get("reply")
        reply_to = None
        if reply is not None:
            target_id = reply.get("in_reply_to_tweet_id") if isinstance(reply, dict) else None
            if not isinstance(target_id, str) or not _DIGITS.fullmatch(target_id):
                raise _invalid(
                    "reply.in_reply_to_tweet_id",
                    str(target_id),
                    "$.reply.in_reply_to_tweet_id: must be a string of digits",
                )
            reply_to = state._tweets.get(int(target_id))
            if reply_to is None or reply_to.deleted:
                raise _forbidden(DELETED)
            if not state._may_engage(author.id, reply_to):
                raise _forbidden(NOT_ALLOWED)
        refs: list[tuple[str, int]] = []
        quote_id = body.get("quote_tweet_id")
        if quote_id is not None:
            if not isinstance(quote_id, str) or not _DIGITS.fullmatch(quote_id):
                raise _invalid("quote_tweet_id", str(quote_id), "$.quote_tweet_id: must be digits")
            quoted = state._tweets.get(int(quote_id))
            if quoted is None or quoted.deleted:
                raise _forbidden(
                    "You attempted to quote a Tweet that is deleted or not visible to you."
                )
            if not state._may_engage(author.id, quoted):
                raise _forbidden(NOT_ALLOWED)
            refs.append(("quoted", quoted.id))
        if text.strip() and state._is_duplicate(author.id, text):
            raise _forbidden(DUPLICATE)
        t = state._create(author, text, reply_to, refs, media_keys=media_keys)
        data = {"id": str(t.id), "text": _escape(t.text), "edit_history_tweet_ids": [str(t.id)]}
        return {"data": data}, 201
