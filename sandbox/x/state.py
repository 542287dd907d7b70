"""A local stand-in for the X API v2, faithful to the wire format the bridge relies on.

The demo and the end-to-end tests drive it with the real tweepy client over HTTP, so
it checks what X checks (OAuth 1.0a signatures, bearer tokens, parameter ranges, the
reply policy, duplicates, rate limits) and answers the way X answers (snowflake ids,
newest-first pages, problem+json errors, rate-limit headers). A control API under
`/sandbox/` lets people and tests tweet as citizens, delete tweets, shrink limits
and inject faults. Facts followed: /work/shared/reference/x-api.md.

All state is in memory and is meant to be touched from the event loop's thread.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
import unicodedata
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, NamedTuple

from aiohttp import web
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils
from twitter_text import parse_tweet

WINDOW_SECONDS = 15 * 60
DUPLICATE_SECONDS = 24 * 3600
SEARCH_SECONDS = 7 * 24 * 3600
MENTIONS_REACHABLE = 800
USER_TWEETS_REACHABLE = 3200
FIRST_TWEET_ID = 1_860_000_000_000_000_000
FIRST_USER_ID = 1_600_000_000_000_000_001
OAUTH_MAX_SKEW = 15 * 60

# Rate limits per 15-minute window: the pay-per-use "user" column of the reference.
DEFAULT_LIMITS: dict[str, int] = {
    "users_me": 75,
    "mentions": 300,
    "search_recent": 300,
    "user_tweets": 900,
    "create_tweet": 100,
}

PROBLEMS = "https://api.twitter.com/2/problems/"
CANONICAL_HOSTS = ("https://api.twitter.com", "https://api.x.com")

DUPLICATE = "You are not allowed to create a Tweet with duplicate content."
DELETED = "You attempted to reply to a Tweet that is deleted or not visible to you."
NOT_ALLOWED = "You can only reply to or quote posts where you are mentioned or are the author."


def _names(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


TWEET_FIELDS = _names(
    "article attachments author_id card_uri community_id context_annotations "
    "conversation_id created_at display_text_range edit_controls edit_history_tweet_ids "
    "entities geo id in_reply_to_user_id lang media_metadata non_public_metrics note_tweet "
    "organic_metrics possibly_sensitive promoted_metrics public_metrics referenced_tweets "
    "reply_settings scopes source text withheld"
)
USER_FIELDS = _names(
    "affiliation connection_status created_at description entities id "
    "is_identity_verified location most_recent_tweet_id name parody pinned_tweet_id "
    "profile_banner_url profile_image_url protected public_metrics receives_your_dm "
    "subscription subscription_type url username verified verified_followers_count "
    "verified_type withheld"
)
EXPANSIONS = _names(
    "article.cover_media article.media_entities attachments.media_keys "
    "attachments.media_source_tweet attachments.poll_ids author_id edit_history_tweet_ids "
    "entities.mentions.username entities.note.mentions.username geo.place_id "
    "in_reply_to_user_id referenced_tweets.id referenced_tweets.id.attachments.media_keys "
    "referenced_tweets.id.author_id"
)
_TIMELINE_PARAMS = _names(
    "since_id until_id max_results pagination_token start_time end_time expansions "
    "tweet.fields user.fields media.fields place.fields poll.fields"
)
_SEARCH_PARAMS = _TIMELINE_PARAMS | {"query", "next_token", "sort_order"}
_USER_PARAMS = frozenset({"expansions", "tweet.fields", "user.fields"})
_CREATE_KEYS = _names(
    "text reply quote_tweet_id reply_settings media poll for_super_followers_only "
    "direct_message_deep_link place_id geo community_id nullcast made_with_ai "
    "paid_partnership share_with_followers card_uri edit_options"
)

_HANDLE = re.compile(r"(?<![A-Za-z0-9_!#$%&*@＠])[@＠]([A-Za-z0-9_]{1,15})(?![A-Za-z0-9_@＠])")
_HASHTAG = re.compile(r"(?<![\w&])[#＃](\w+)")
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_USERNAME = re.compile(r"[A-Za-z0-9_]{1,15}")
_DIGITS = re.compile(r"[0-9]{1,19}")
_TOKEN_PREFIX = "sx1"


class SandboxError(Exception):
    """A control-API request that cannot be done (unknown tweet, bad input)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestRecord(NamedTuple):
    """One X API request as the stand-in answered it (the control API is not logged)."""

    method: str
    path: str
    status: int
    auth: str  # "oauth1", "bearer" or "none"


@dataclass(slots=True)
class _User:
    id: str
    username: str
    name: str

    def json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "username": self.username}


@dataclass(slots=True)
class _Tweet:
    id: int
    text: str
    author_id: str
    created_at: float
    conversation_id: int
    in_reply_to_tweet_id: int | None = None
    in_reply_to_user_id: str | None = None
    referenced: tuple[tuple[str, int], ...] = ()
    deleted: bool = False
    _words: tuple[str, ...] | None = None

    @property
    def is_retweet(self) -> bool:
        return any(kind == "retweeted" for kind, _ in self.referenced)

    @property
    def quoted_id(self) -> int | None:
        return next((i for kind, i in self.referenced if kind == "quoted"), None)

    def words(self) -> tuple[str, ...]:
        if self._words is None:
            self._words = tuple(_split_words(self.text))
        return self._words


@dataclass(slots=True)
class _Window:
    start: float
    used: int = 0


@dataclass(slots=True)
class _Fault:
    method: str
    path_prefix: str
    status: int
    times: int
    after_commit: bool

    def json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path_prefix": self.path_prefix,
            "status": self.status,
            "times": self.times,
            "after_commit": self.after_commit,
        }


@dataclass(slots=True)
class _Fields:
    tweet: frozenset[str] = frozenset()
    user: frozenset[str] = frozenset()
    expansions: frozenset[str] = frozenset()


class _Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        type_: str = "about:blank",
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.body: dict[str, Any] = {"title": title, "detail": detail, "type": type_}
        self.body["status"] = status
        if errors:
            self.body["errors"] = errors

    def response(self) -> web.Response:
        return web.json_response(
            self.body, status=self.status, content_type="application/problem+json"
        )


def _http_problem(status: int) -> _Problem:
    phrase = HTTPStatus(status).phrase
    return _Problem(status, phrase, phrase)


def _invalid(parameter: str, value: str, message: str) -> _Problem:
    return _Problem(
        400,
        "Invalid Request",
        "One or more parameters to your request was invalid.",
        PROBLEMS + "invalid-request",
        [{"parameters": {parameter: [value]}, "message": message}],
    )


def _forbidden(detail: str) -> _Problem:
    return _Problem(403, "Forbidden", detail)


class XState:
    """Everything the stand-in knows: users, tweets, limits, faults.

    `clock` (Unix seconds) drives created_at, ids, the 24-hour duplicate rule, the
    7-day search window and the 15-minute rate-limit windows, so tests never sleep.
    """

    def __init__(
        self,
        username: str = "SevaHelp",
        account_id: str = "1700000000000000001",
        bearer_token: str = "sandbox-bearer-token",
        api_key: str = "sandbox-api-key",
        api_secret: str = "sandbox-api-secret",
        access_token: str = "sandbox-access-token",
        access_token_secret: str = "sandbox-access-token-secret",
        *,
        account_name: str = "Seva Help Desk",
        clock: Callable[[], float] = time.time,
        limits: dict[str, int] | None = None,
    ) -> None:
        self.bearer_token = bearer_token
        self.api_key = api_key
        self.api_secret = api_secret
        self.access_token = access_token
        self.access_token_secret = access_token_secret
        self.clock = clock
        self.limits = dict(DEFAULT_LIMITS)
        for key, limit in (limits or {}).items():
            self.set_limit(key, limit)
        self.requests: deque[RequestRecord] = deque(maxlen=10_000)

        self._users: dict[str, _User] = {}
        self._by_username: dict[str, str] = {}
        self._next_user_id = FIRST_USER_ID
        self._tweets: dict[int, _Tweet] = {}
        self._ids: list[int] = []  # every tweet id, ascending
        self._by_author: dict[str, list[int]] = {}
        self._mentions: dict[str, list[int]] = {}  # user id -> ids of tweets mentioning them
        self._mention_sets: dict[str, set[int]] = {}
        self._last_text: dict[tuple[str, str], int] = {}  # (author, text) -> newest tweet id
        self._epoch = clock()
        self._last_id = FIRST_TWEET_ID - 1
        self._windows: dict[str, _Window] = {}
        self._faults: list[_Fault] = []

        self.account = self._add_user(username, account_name, account_id)

    # --- control: plain Python -----------------------------------------------------

    def user(self, username: str, name: str | None = None) -> dict[str, str]:
        """The user with this handle, created on first use."""
        return self._user_by_name(username, name).json()

    def tweet(
        self,
        username: str,
        text: str,
        in_reply_to_tweet_id: str | None = None,
        *,
        quote_tweet_id: str | None = None,
        retweet_of_tweet_id: str | None = None,
    ) -> dict[str, Any]:
        """Posts as `username` (a citizen, created on first use, or the account itself).

        A retweet's text is made the way X makes it ("RT @author: text").
        """
        author = self._user_by_name(username)
        refs: list[tuple[str, int]] = []
        reply_to = None
        if retweet_of_tweet_id is not None:
            original = self._visible(retweet_of_tweet_id)
            orig_author = self._users[original.author_id]
            text = f"RT @{orig_author.username}: {original.text}"
            refs.append(("retweeted", original.id))
        else:
            if not isinstance(text, str) or not text.strip():
                raise SandboxError(400, "text must not be empty")
            if not _text_fits(text):
                raise SandboxError(400, "text is longer than 280 weighted characters")
            if in_reply_to_tweet_id is not None:
                reply_to = self._visible(in_reply_to_tweet_id)
            if quote_tweet_id is not None:
                refs.append(("quoted", self._visible(quote_tweet_id).id))
        return self._state_json(self._create(author, text, reply_to, refs))

    def delete(self, tweet_id: str) -> None:
        t = self._tweets.get(_as_int(tweet_id))
        if t is None:
            raise SandboxError(404, f"no tweet {tweet_id}")
        t.deleted = True

    def get(self, tweet_id: str) -> dict[str, Any] | None:
        t = self._tweets.get(_as_int(tweet_id))
        return None if t is None else self._state_json(t)

    def snapshot(self) -> dict[str, Any]:
        """Accounts and every tweet (deleted ones flagged), oldest first."""
        return {
            "account": {"id": self.account.id, "username": self.account.username},
            "users": [u.json() for u in self._users.values()],
            "tweets": [self._state_json(self._tweets[i]) for i in self._ids],
            "limits": self.limit_status(),
            "faults": [f.json() for f in self._faults],
        }

    def set_limit(self, endpoint: str, limit: int) -> None:
        """Requests allowed per 15-minute window for one endpoint key (see DEFAULT_LIMITS)."""
        if endpoint not in DEFAULT_LIMITS:
            raise SandboxError(
                400, f"unknown endpoint {endpoint!r}; one of {sorted(DEFAULT_LIMITS)}"
            )
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise SandboxError(400, "limit must be a non-negative integer")
        self.limits[endpoint] = limit

    def reset_limits(self) -> None:
        """Starts fresh windows for every endpoint."""
        self._windows.clear()

    def limit_status(self) -> dict[str, dict[str, int]]:
        out = {}
        for key in DEFAULT_LIMITS:
            limit, remaining, reset = self._peek(key)
            out[key] = {"limit": limit, "remaining": remaining, "reset": reset}
        return out

    def add_fault(
        self,
        method: str,
        path_prefix: str,
        status: int,
        times: int = 1,
        after_commit: bool = False,
    ) -> dict[str, Any]:
        """The next `times` API requests matching method and path get `status` (5xx or 429).

        Paths are relative to the stand-in's root ("/2/tweets"); method "*" matches any.
        With `after_commit` the request is carried out and only then answered with the
        error: a tweet that went out although the client saw a failure.
        """
        if not isinstance(status, int) or not (status == 429 or 500 <= status <= 599):
            raise SandboxError(400, "status must be 429 or 5xx")
        if not isinstance(times, int) or times < 1:
            raise SandboxError(400, "times must be a positive integer")
        if not isinstance(path_prefix, str) or not path_prefix.startswith("/"):
            raise SandboxError(400, "path_prefix must start with '/'")
        fault = _Fault(str(method).upper(), path_prefix, status, times, bool(after_commit))
        self._faults.append(fault)
        return fault.json()

    def clear_faults(self) -> None:
        self._faults.clear()

    # --- users and tweets ----------------------------------------------------------

    def _add_user(self, username: str, name: str, user_id: str | None = None) -> _User:
        if not _USERNAME.fullmatch(username):
            raise SandboxError(400, f"invalid username {username!r}")
        if user_id is None:
            user_id = str(self._next_user_id)
            self._next_user_id += 1
        user = _User(user_id, username, name)
        self._users[user_id] = user
        self._by_username[username.lower()] = user_id
        return user

    def _user_by_name(self, username: str, name: str | None = None) -> _User:
        if not isinstance(username, str):
            raise SandboxError(400, "username must be a string")
        username = username.removeprefix("@")
        user_id = self._by_username.get(username.lower())
        if user_id is not None:
            return self._users[user_id]
        return self._add_user(username, name or username)

    def _visible(self, tweet_id: str | int) -> _Tweet:
        t = self._tweets.get(_as_int(tweet_id))
        if t is None or t.deleted:
            raise SandboxError(404, f"no tweet {tweet_id}")
        return t

    def _new_id(self) -> int:
        elapsed_ms = max(0, int((self.clock() - self._epoch) * 1000))
        self._last_id = max(self._last_id + 1, FIRST_TWEET_ID + (elapsed_ms << 22))
        return self._last_id

    def _create(
        self,
        author: _User,
        text: str,
        reply_to: _Tweet | None,
        refs: list[tuple[str, int]],
    ) -> _Tweet:
        tweet_id = self._new_id()
        if reply_to is not None:
            refs = [("replied_to", reply_to.id), *refs]
        t = _Tweet(
            id=tweet_id,
            text=text,
            author_id=author.id,
            created_at=self.clock(),
            conversation_id=reply_to.conversation_id if reply_to else tweet_id,
            in_reply_to_tweet_id=reply_to.id if reply_to else None,
            in_reply_to_user_id=reply_to.author_id if reply_to else None,
            referenced=tuple(refs),
        )
        self._tweets[tweet_id] = t
        self._ids.append(tweet_id)
        self._by_author.setdefault(author.id, []).append(tweet_id)
        for user_id in self._mentioned(t):
            self._mentions.setdefault(user_id, []).append(tweet_id)
            self._mention_sets.setdefault(user_id, set()).add(tweet_id)
        self._last_text[(author.id, text)] = tweet_id
        return t

    def _mentioned(self, t: _Tweet) -> set[str]:
        """Who this tweet mentions: @handles in its text, and the author it replies to."""
        users = {
            self._by_username[h.lower()]
            for h in _HANDLE.findall(t.text)
            if h.lower() in self._by_username
        }
        if t.in_reply_to_user_id is not None:
            users.add(t.in_reply_to_user_id)
        users.discard(t.author_id)
        return users

    def _is_duplicate(self, author_id: str, text: str) -> bool:
        last = self._tweets.get(self._last_text.get((author_id, text), -1))
        return (
            last is not None
            and not last.deleted
            and self.clock() - last.created_at < DUPLICATE_SECONDS
        )

    def _may_engage(self, user_id: str, target: _Tweet) -> bool:
        """The reply policy: the target mentions the user, replies to them, is theirs,
        or quotes one of their posts."""
        if target.author_id == user_id or target.id in self._mention_sets.get(user_id, ()):
            return True
        quoted = self._tweets.get(target.quoted_id or -1)
        return quoted is not None and quoted.author_id == user_id

    # --- rate limits and faults ----------------------------------------------------

    def _window(self, key: str) -> _Window:
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now >= window.start + WINDOW_SECONDS:
            window = self._windows[key] = _Window(now)
        return window

    def _peek(self, key: str) -> tuple[int, int, int]:
        window = self._window(key)
        limit = self.limits[key]
        reset = math.ceil(window.start + WINDOW_SECONDS)
        return limit, max(0, limit - window.used), reset

    def _consume(self, key: str) -> None:
        window = self._window(key)
        if window.used >= self.limits[key]:
            raise _Problem(429, "Too Many Requests", "Too Many Requests")
        window.used += 1

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.method in ("*", method) and path.startswith(fault.path_prefix):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # --- authentication ------------------------------------------------------------

    async def _authenticate(self, request: web.Request, rel_path: str) -> tuple[str, str | None]:
        """("bearer", None) for the app, ("oauth1", account id) for the user; else 401."""
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "bearer":
            if credentials and hmac.compare_digest(credentials.strip(), self.bearer_token):
                return "bearer", None
        elif scheme.lower() == "oauth":
            form = None
            if request.content_type == "application/x-www-form-urlencoded":
                form = await request.text()
            if self._oauth_valid(request, rel_path, header, form):
                return "oauth1", self.account.id
        raise _Problem(401, "Unauthorized", "Unauthorized")

    def _oauth_valid(
        self, request: web.Request, rel_path: str, header: str, form: str | None
    ) -> bool:
        try:
            params = {
                k: oauth_utils.unescape(v)
                for k, v in oauth_utils.parse_authorization_header(header)
            }
            collected = oauth_signature.collect_parameters(
                uri_query=request.rel_url.raw_query_string,
                body=form,
                headers={"Authorization": header},
                exclude_oauth_signature=True,
            )
            normalized = oauth_signature.normalize_parameters(collected)
        except (ValueError, TypeError):
            return False
        given = params.get("oauth_signature", "")
        if (
            params.get("oauth_signature_method") != "HMAC-SHA1"
            or params.get("oauth_version", "1.0") != "1.0"
            or not params.get("oauth_nonce")
            or not hmac.compare_digest(params.get("oauth_consumer_key", ""), self.api_key)
            or not hmac.compare_digest(params.get("oauth_token", ""), self.access_token)
            or not given
        ):
            return False
        try:
            if abs(time.time() - int(params.get("oauth_timestamp", ""))) > OAUTH_MAX_SKEW:
                return False
        except ValueError:
            return False
        # The client signs the URL it meant (api.twitter.com) even when a transport
        # adapter delivers it here; accept that or the URL as received.
        urls = [host + rel_path for host in CANONICAL_HOSTS]
        urls.append(str(request.url.with_query(None)))
        for url in urls:
            base = oauth_signature.signature_base_string(
                request.method, oauth_signature.base_string_uri(url), normalized
            )
            expected = _hmac_sha1(base, self.api_secret, self.access_token_secret)
            if hmac.compare_digest(expected, given):
                return True
        return False

    # --- rendering -----------------------------------------------------------------

    def _state_json(self, t: _Tweet) -> dict[str, Any]:
        return {
            "id": str(t.id),
            "text": t.text,
            "author_id": t.author_id,
            "username": self._users[t.author_id].username,
            "created_at": _iso(t.created_at),
            "conversation_id": str(t.conversation_id),
            "in_reply_to_tweet_id": _str_or_none(t.in_reply_to_tweet_id),
            "in_reply_to_user_id": t.in_reply_to_user_id,
            "referenced_tweets": [{"type": k, "id": str(i)} for k, i in t.referenced],
            "mentions_account": t.id in self._mention_sets.get(self.account.id, ()),
            "deleted": t.deleted,
        }

    def _api_json(self, t: _Tweet, fields: _Fields) -> dict[str, Any]:
        wanted = fields.tweet
        out: dict[str, Any] = {
            "id": str(t.id),
            "text": _escape(t.text),
            "edit_history_tweet_ids": [str(t.id)],
        }
        if "author_id" in wanted or "author_id" in fields.expansions:
            out["author_id"] = t.author_id
        if "conversation_id" in wanted:
            out["conversation_id"] = str(t.conversation_id)
        if "created_at" in wanted:
            out["created_at"] = _iso(t.created_at)
        if t.in_reply_to_user_id and (
            "in_reply_to_user_id" in wanted or "in_reply_to_user_id" in fields.expansions
        ):
            out["in_reply_to_user_id"] = t.in_reply_to_user_id
        if t.referenced and (
            "referenced_tweets" in wanted
            or any(e.startswith("referenced_tweets.id") for e in fields.expansions)
        ):
            out["referenced_tweets"] = [{"type": k, "id": str(i)} for k, i in t.referenced]
        return out

    def _user_json(self, user: _User, fields: _Fields) -> dict[str, Any]:
        return user.json()

    def _page(self, tweets: list[_Tweet], fields: _Fields, next_token: str | None) -> dict:
        if not tweets:
            return {"meta": {"result_count": 0}}
        body: dict[str, Any] = {"data": [self._api_json(t, fields) for t in tweets]}
        includes, errors = self._includes(tweets, fields)
        if includes:
            body["includes"] = includes
        if errors:
            body["errors"] = errors
        meta: dict[str, Any] = {
            "newest_id": str(tweets[0].id),
            "oldest_id": str(tweets[-1].id),
            "result_count": len(tweets),
        }
        if next_token:
            meta["next_token"] = next_token
        body["meta"] = meta
        return body

    def _includes(
        self, tweets: list[_Tweet], fields: _Fields
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        exp = fields.expansions
        user_ids: dict[str, None] = {}
        included: dict[int, _Tweet] = {}
        errors: list[dict[str, Any]] = []
        for t in tweets:
            if "author_id" in exp:
                user_ids[t.author_id] = None
            if "in_reply_to_user_id" in exp and t.in_reply_to_user_id:
                user_ids[t.in_reply_to_user_id] = None
            if "referenced_tweets.id" in exp or "referenced_tweets.id.author_id" in exp:
                for _, ref_id in t.referenced:
                    ref = self._tweets.get(ref_id)
                    if ref is None or ref.deleted:
                        errors.append(_missing_tweet(ref_id))
                        continue
                    included[ref_id] = ref
                    if "referenced_tweets.id.author_id" in exp:
                        user_ids[ref.author_id] = None
        includes: dict[str, Any] = {}
        if user_ids:
            includes["users"] = [self._user_json(self._users[u], fields) for u in user_ids]
        if included:
            includes["tweets"] = [self._api_json(t, fields) for t in included.values()]
        return includes, errors

    # --- the timelines -------------------------------------------------------------

    def _walk(
        self,
        ids: list[int],
        *,
        since: int | None,
        until: int | None,
        max_results: int,
        reachable: int | None = None,
        keep: Callable[[_Tweet], bool] | None = None,
        stop: Callable[[_Tweet], bool] | None = None,
    ) -> tuple[list[_Tweet], bool]:
        """Newest first from an ascending id index, between since and until (exclusive):
        the page, and whether anything older remains."""
        lo = bisect_right(ids, since) if since is not None else 0
        if reachable is not None:
            lo = max(lo, len(ids) - reachable)
        hi = bisect_left(ids, until) if until is not None else len(ids)
        out: list[_Tweet] = []
        tweets = self._tweets
        for i in range(hi - 1, lo - 1, -1):
            t = tweets[ids[i]]
            if stop is not None and stop(t):
                break
            if t.deleted or (keep is not None and not keep(t)):
                continue
            if len(out) == max_results:
                return out, True
            out.append(t)
        return out, False

    def _user_or_404(self, user_id: str) -> _User:
        if not _DIGITS.fullmatch(user_id):
            raise _invalid(
                "id", user_id, f"The `id` query parameter value [{user_id}] is not valid"
            )
        user = self._users.get(user_id)
        if user is None:
            raise _Problem(
                404,
                "Not Found Error",
                f"Could not find user with id: [{user_id}].",
                PROBLEMS + "resource-not-found",
            )
        return user

    def _timeline(
        self,
        request: web.Request,
        ids: list[int],
        *,
        reachable: int,
        keep: Callable[[_Tweet], bool] | None = None,
    ) -> dict[str, Any]:
        q = request.query
        _check_params(q, _TIMELINE_PARAMS | ({"exclude"} if keep is not None else set()))
        fields = _fields(q)
        max_results = _int_param(q, "max_results", 5, 100, 10)
        since = _id_param(q, "since_id")
        until = _id_param(q, "until_id")
        token = _token_param(q, "pagination_token")
        if token is not None:
            until = token if until is None else min(until, token)
        keep = _and(keep, _time_filter(q, since))
        page, more = self._walk(
            ids, since=since, until=until, max_results=max_results, reachable=reachable, keep=keep
        )
        return self._page(page, fields, _token(page[-1].id) if more and page else None)


# --- HTTP ----------------------------------------------------------------------------

Handler = Callable[[web.Request, str | None], Awaitable[tuple[dict[str, Any], int]]]


def build_x_app(state: XState) -> web.Application:
    """The stand-in as an aiohttp app; routes are relative to wherever it is mounted."""
    app = web.Application()
    api = _Api(state)
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

    control = _Control(state)
    r.add_post("/sandbox/tweets", control.tweet)
    r.add_post("/sandbox/tweets/{id}/delete", control.delete)
    r.add_get("/sandbox/state", control.snapshot)
    r.add_post("/sandbox/limits", control.limits)
    r.add_post("/sandbox/faults", control.faults)
    return app


class _Api:
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
            state.requests.append(RequestRecord(request.method, rel_path, response.status, auth))
            return response

        return endpoint

    async def not_found(self, request: web.Request) -> web.Response:
        return _Problem(404, "Not Found", "Sorry, that page does not exist.").response()

    async def users_me(self, request: web.Request, caller: str | None) -> tuple[dict, int]:
        _check_params(request.query, _USER_PARAMS)
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
        _check_params(q, _SEARCH_PARAMS)
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
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
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
        if state._is_duplicate(author.id, text):
            raise _forbidden(DUPLICATE)
        t = state._create(author, text, reply_to, refs)
        data = {"id": str(t.id), "text": _escape(t.text), "edit_history_tweet_ids": [str(t.id)]}
        return {"data": data}, 201


class _Control:
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
                    )
                },
                201,
            )
        )

    async def delete(self, request: web.Request) -> web.Response:
        tweet_id = request.match_info["id"]

        def run() -> tuple[dict[str, Any], int]:
            self.x.delete(tweet_id)
            return {"data": {"id": tweet_id, "deleted": True}}, 200

        return _control(run)

    async def snapshot(self, request: web.Request) -> web.Response:
        return web.json_response(self.x.snapshot())

    async def limits(self, request: web.Request) -> web.Response:
        body = await _json_object(request)

        def run() -> tuple[dict[str, Any], int]:
            for key, value in body.items():
                if not isinstance(value, dict) or "limit" not in value:
                    raise SandboxError(400, f'{key}: expected {{"limit": N}}')
                self.x.set_limit(key, value["limit"])
            return {"data": self.x.limit_status()}, 200

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


# --- helpers -------------------------------------------------------------------------


def _relative_path(request: web.Request, template: str) -> str:
    """The path below the stand-in's mount point (the resource knows its full template)."""
    canonical = (
        request.match_info.route.resource.canonical
        if request.match_info.route.resource
        else template
    )
    prefix = canonical[: len(canonical) - len(template)] if canonical.endswith(template) else ""
    raw = request.rel_url.raw_path
    return raw[len(prefix) :] if prefix and raw.startswith(prefix) else raw


def _check_params(query: Any, allowed: Iterable[str]) -> None:
    allowed = frozenset(allowed)
    for name in query:
        if name not in allowed:
            raise _invalid(
                name,
                query[name],
                f"The query parameter [{name}] is not one of [{','.join(sorted(allowed))}]",
            )


def _list_param(query: Any, name: str, known: frozenset[str]) -> frozenset[str]:
    values = frozenset(filter(None, query.get(name, "").split(",")))
    for value in values:
        if value not in known:
            raise _invalid(
                name,
                value,
                f"The `{name}` query parameter value [{value}] is not one of "
                f"[{','.join(sorted(known))}]",
            )
    return values


def _fields(query: Any) -> _Fields:
    return _Fields(
        tweet=_list_param(query, "tweet.fields", TWEET_FIELDS),
        user=_list_param(query, "user.fields", USER_FIELDS),
        expansions=_list_param(query, "expansions", EXPANSIONS),
    )


def _int_param(query: Any, name: str, lo: int, hi: int, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"-?[0-9]+", raw) or not lo <= int(raw) <= hi:
        raise _invalid(
            name, raw, f"The `{name}` query parameter value [{raw}] is not between {lo} and {hi}"
        )
    return int(raw)


def _id_param(query: Any, name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw):
        raise _invalid(name, raw, f"The `{name}` query parameter value [{raw}] is not valid")
    return int(raw)


def _token(tweet_id: int) -> str:
    return _TOKEN_PREFIX + _base36(tweet_id)


def _token_param(query: Any, name: str) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        if not raw.startswith(_TOKEN_PREFIX):
            raise ValueError(raw)
        return int(raw[len(_TOKEN_PREFIX) :], 36)
    except ValueError:
        raise _invalid(
            name, raw, f"The `{name}` query parameter value [{raw}] is not valid"
        ) from None


def _time_filter(query: Any, since: int | None) -> Callable[[_Tweet], bool] | None:
    """start_time/end_time; since_id wins over start_time, as on X."""
    start = None if since is not None else _time_param(query, "start_time")
    end = _time_param(query, "end_time")
    if start is None and end is None:
        return None
    return lambda t: (
        (start is None or t.created_at >= start) and (end is None or t.created_at < end)
    )


def _time_param(query: Any, name: str) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise _invalid(
            name, raw, f"The `{name}` query parameter value [{raw}] is not valid"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _and(
    a: Callable[[_Tweet], bool] | None, b: Callable[[_Tweet], bool] | None
) -> Callable[[_Tweet], bool] | None:
    if a is None or b is None:
        return a or b
    return lambda t: a(t) and b(t)


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def _as_int(tweet_id: str | int) -> int:
    if isinstance(tweet_id, int):
        return tweet_id
    if not isinstance(tweet_id, str) or not _DIGITS.fullmatch(tweet_id):
        raise SandboxError(400, f"not a tweet id: {tweet_id!r}")
    return int(tweet_id)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _str_or_none(value: int | None) -> str | None:
    return None if value is None else str(value)


def _iso(ts: float) -> str:
    when = datetime.fromtimestamp(ts, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _escape(text: str) -> str:
    """X's v2 `text` has &, < and > as HTML entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _missing_tweet(tweet_id: int) -> dict[str, Any]:
    return {
        "value": str(tweet_id),
        "detail": f"Could not find tweet with referenced_tweets.id: [{tweet_id}].",
        "title": "Not Found Error",
        "resource_type": "tweet",
        "parameter": "referenced_tweets.id",
        "resource_id": str(tweet_id),
        "type": PROBLEMS + "resource-not-found",
    }


def _hmac_sha1(base_string: str, consumer_secret: str, token_secret: str) -> str:
    """RFC 5849 section 3.4.2."""
    key = oauth_utils.escape(consumer_secret) + "&" + oauth_utils.escape(token_secret)
    digest = hmac.new(key.encode(), base_string.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _text_fits(text: str) -> bool:
    """X's 280 weighted characters; parse_tweet is slow, so plain short text skips it."""
    if len(text) <= 280 and "." not in text and all(ord(c) <= 4351 for c in text):
        return True  # no URL possible, every code point weighs 1
    return bool(parse_tweet(text).valid)


# --- search queries --------------------------------------------------------------------

_QUERY_TOKEN = re.compile(r'-?\(|\)|-?"[^"]*"|[^\s()"]+')
_OPERATOR = re.compile(r"([a-z_]+):(.+)")
Match = Callable[[_Tweet], bool]


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or unicodedata.category(ch).startswith("M")


def _split_words(text: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    for ch in _URL.sub(" ", text):
        if _word_char(ch):
            current.append(ch)
        elif current:
            words.append("".join(current).casefold())
            current = []
    if current:
        words.append("".join(current).casefold())
    return words


def _compile_query(query: str, state: XState) -> Match:
    """X's query language, the part the bridge uses: terms (ANDed), "phrases", OR,
    parentheses, -negation, #hashtag, @user, from:, to:, is:retweet|reply|quote,
    has:links|mentions|hashtags, conversation_id:."""
    if query.count('"') % 2:
        raise ValueError("unbalanced quotes")
    tokens = _QUERY_TOKEN.findall(query)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def parse_or() -> Match:
        alternatives = [parse_and()]
        while peek() == "OR":
            take()
            alternatives.append(parse_and())
        if len(alternatives) == 1:
            return alternatives[0]
        return lambda t: any(m(t) for m in alternatives)

    def parse_and() -> Match:
        parts: list[Match] = []
        while peek() not in (None, ")", "OR"):
            parts.append(parse_unary())
        if not parts:
            raise ValueError("an operand is missing")
        if len(parts) == 1:
            return parts[0]
        return lambda t: all(m(t) for m in parts)

    def parse_unary() -> Match:
        tok = take()
        if tok in ("(", "-("):
            inner = parse_or()
            if peek() != ")":
                raise ValueError("unbalanced parentheses")
            take()
            return (lambda t: not inner(t)) if tok == "-(" else inner
        negate = tok.startswith("-") and len(tok) > 1
        atom = _atom(tok[1:] if negate else tok, state)
        return (lambda t: not atom(t)) if negate else atom

    matcher = parse_or()
    if pos != len(tokens):
        raise ValueError("unbalanced parentheses")
    return matcher


def _atom(tok: str, state: XState) -> Match:
    if tok.startswith('"'):
        return _phrase(_split_words(tok.strip('"')), tok.strip('"'))
    if tok[0] in "#＃" and len(tok) > 1:
        tag = tok[1:].casefold()
        return lambda t: tag in {h.casefold() for h in _HASHTAG.findall(t.text)}
    if tok[0] in "@＠" and len(tok) > 1:
        handle = tok[1:].lower()
        return lambda t: handle in {h.lower() for h in _HANDLE.findall(t.text)}
    op = _OPERATOR.fullmatch(tok)
    if op and op.group(1) not in ("http", "https"):
        return _operator(op.group(1), op.group(2), state)
    return _phrase(_split_words(tok), tok)


def _phrase(words: list[str], raw: str) -> Match:
    if not words:  # emoji or punctuation only: a plain substring match
        needle = raw.casefold()
        return lambda t: needle in t.text.casefold()
    n = len(words)
    if n == 1:
        word = words[0]
        return lambda t: word in t.words()
    return lambda t: any(list(t.words()[i : i + n]) == words for i in range(len(t.words()) - n + 1))


def _operator(name: str, value: str, state: XState) -> Match:
    def user_id(handle: str) -> str | None:
        handle = handle.removeprefix("@")
        return handle if _DIGITS.fullmatch(handle) else state._by_username.get(handle.lower())

    if name == "from":
        uid = user_id(value)
        return lambda t: t.author_id == uid
    if name == "to":
        uid = user_id(value)
        return lambda t: t.in_reply_to_user_id is not None and t.in_reply_to_user_id == uid
    if name == "conversation_id":
        return lambda t: str(t.conversation_id) == value
    if name == "is":
        flags: dict[str, Match] = {
            "retweet": lambda t: t.is_retweet,
            "reply": lambda t: t.in_reply_to_tweet_id is not None,
            "quote": lambda t: t.quoted_id is not None,
        }
        if value in flags:
            return flags[value]
    if name == "has":
        checks: dict[str, Match] = {
            "links": lambda t: bool(_URL.search(t.text)),
            "mentions": lambda t: bool(_HANDLE.search(t.text)),
            "hashtags": lambda t: bool(_HASHTAG.search(t.text)),
        }
        if value in checks:
            return checks[value]
    raise ValueError(f"Reference to invalid operator '{name}:{value}'")


__all__ = ["DEFAULT_LIMITS", "RequestRecord", "SandboxError", "XState", "build_x_app"]
