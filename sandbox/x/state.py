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

import hmac
import math
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import web
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils

from sandbox.x.model import (
    _DIGITS,
    _HANDLE,
    _TIMELINE_PARAMS,
    _USERNAME,
    CANONICAL_HOSTS,
    DEFAULT_LIMITS,
    DUPLICATE_SECONDS,
    FIRST_TWEET_ID,
    FIRST_USER_ID,
    OAUTH_MAX_SKEW,
    PROBLEMS,
    WINDOW_SECONDS,
    RequestRecord,
    SandboxError,
    _and,
    _as_int,
    _check_params,
    _escape,
    _Fault,
    _Fields,
    _fields,
    _hmac_sha1,
    _id_param,
    _int_param,
    _invalid,
    _iso,
    _missing_tweet,
    _Problem,
    _str_or_none,
    _text_fits,
    _time_filter,
    _token,
    _token_param,
    _Tweet,
    _User,
    _Window,
)


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
