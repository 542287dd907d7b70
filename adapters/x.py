"""X API v2 adapter: tweepy's sync client behind the TweetSource and TweetSink ports.

tweepy hard-codes https://api.twitter.com; a transport adapter mounted on the session
sends every call to `base_url` instead (the sandbox stand-in, or X itself). tweepy is
asked for raw `requests.Response`s so the rate-limit headers are ours to read: the
adapter never sleeps, it raises RateLimited with the time X named.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import aiohttp
import requests
import tweepy
from requests.adapters import HTTPAdapter
from yarl import URL

from adapters.x_fields import (
    Dialect,
    dialect_refused,
    own_posts_params,
    page_tweets,
    references,
    timeline_params,
    without_media_links,
)
from bot.domain import Tweet, TweetId, XUser, XUserId
from bot.ports import (
    CheckLine,
    Clock,
    CredentialsRefused,
    KeyValue,
    RateLimited,
    TweetRefused,
    Unavailable,
)

log = logging.getLogger("seva." + __name__)

X_API_BASE_URL = "https://api.twitter.com"
DIALECT_KEY = "x.field_dialect"  # which spelling of the field parameters X accepts
FALLBACK_WAIT = timedelta(minutes=15)  # a 429 without a usable reset header
MIN_WAIT = timedelta(seconds=60)  # a reset already in the past (clock skew)
# Above this many mentions since the cursor, X may have dropped older ones (it keeps 800).
MENTIONS_REACHABLE = 800

# These loggers print request headers or OAuth base strings at DEBUG.
_CHATTY_LOGGERS = ("tweepy", "requests_oauthlib", "oauthlib")
_LEADING_MENTIONS = re.compile(r"^(?:[@＠][A-Za-z0-9_]{1,15}\s+)+")
_URLS = re.compile(r"https?://\S+", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


class _Redirect(HTTPAdapter):
    """Sends what tweepy addresses to api.twitter.com to `base_url`, with a timeout
    (tweepy sets none, and a hung socket would hold a worker thread forever)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__()
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._loopback = _is_loopback(self._base)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = request.url or ""
        if self._base != X_API_BASE_URL and url.startswith(X_API_BASE_URL + "/"):
            request.url = self._base + url[len(X_API_BASE_URL) :]
            if self._loopback:
                proxies = {}  # any proxy was picked for api.twitter.com, not for here
        return super().send(
            request,
            stream=stream,
            timeout=self._timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


class OAuth1Signer:
    """Signs requests as the bot's account: OAuth 1.0a user context, HMAC-SHA1 (RFC 5849,
    whose sections the comments cite).

    Made for `post`, where oauthlib's `Client.sign` took 110 us of the event loop's CPU
    a reply (0.25-0.3 ms in the bot's profile); this takes under 7 us. For the same
    nonce and timestamp its header is oauthlib's, byte for byte
    (tests/unit/test_x_signing.py). Only the URL's
    query and the oauth_* parameters are signed: a JSON body is not form-encoded, so it
    is no parameter source (3.4.1.3.1). It holds the secrets only inside a keyed HMAC and
    never logs; its repr names no credential.
    """

    __slots__ = ("_header", "_mac", "_pairs")

    def __init__(
        self, consumer_key: str, consumer_secret: str, token: str, token_secret: str
    ) -> None:
        # 3.4.2: the key is the encoded consumer secret and the encoded token secret
        # joined by "&". Keying the HMAC once saves hashing the key pads on every sign.
        key = _escape(consumer_secret) + "&" + _escape(token_secret)
        self._mac = hmac.new(key.encode(), digestmod=hashlib.sha1)
        # The protocol parameters that never change (3.1), encoded (3.4.1.3.2), for
        # the base string; the nonce and timestamp join them on each sign. An empty
        # token is left out, as oauthlib leaves it out.
        constant = [
            ("oauth_version", "1.0"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_consumer_key", consumer_key),
        ]
        if token:
            constant.append(("oauth_token", token))
        self._pairs = [(_escape(k), _escape(v)) for k, v in constant]
        # The same, as they stand in the header (3.5.1), in oauthlib's order.
        self._header = ", ".join(f'{k}="{v}"' for k, v in self._pairs)

    def __repr__(self) -> str:
        return "OAuth1Signer(HMAC-SHA1)"

    def authorization(
        self, method: str, url: str, *, nonce: str | None = None, timestamp: str | None = None
    ) -> str:
        """The Authorization header for a request (3.5.1); nonce and timestamp fixed
        only by tests."""
        # 3.3: seconds since the epoch, and a random string unique to that second.
        timestamp = str(int(time.time())) if timestamp is None else timestamp
        nonce = secrets.token_hex(16) if nonce is None else nonce
        prefix, query = _request_base(method, url)
        nonce, timestamp = _escape(nonce), _escape(timestamp)
        # 3.4.1.3.2: the encoded parameters sorted by name, then value (all ASCII now,
        # so str order is byte order), each as name=value, joined by "&".
        pairs = [*query, *self._pairs, ("oauth_nonce", nonce), ("oauth_timestamp", timestamp)]
        normalized = "&".join(f"{k}={v}" for k, v in sorted(pairs))
        # 3.4.1.1: the normalized parameters are encoded once more. They hold nothing
        # but unreserved characters, "%", "=" and "&", so encoding them is these three
        # replacements ("%" first); `quote` here would double the time of a sign.
        base = prefix + normalized.replace("%", "%25").replace("=", "%3D").replace("&", "%26")
        mac = self._mac.copy()
        mac.update(base.encode())
        # 3.4.2: the digest base64-encoded; 3.5.1: encoded again (3.6) in the header,
        # where only "+", "/" and "=" of base64's alphabet are not unreserved.
        signature = base64.b64encode(mac.digest()).decode()
        signature = signature.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
        return (
            f'OAuth oauth_nonce="{nonce}", oauth_timestamp="{timestamp}", '
            f'{self._header}, oauth_signature="{signature}"'
        )


@functools.lru_cache(maxsize=32)
def _request_base(method: str, url: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What a request's method and URL give its signature base string, worked out once
    per URL: the first two parts, "&" included (3.4.1.1), and the query's parameters
    encoded (3.4.1.3). No credential is in here, so a cache may hold it."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname  # hostname: lowercased, no user
    if not scheme or not host:
        raise ValueError("only an absolute URL can be signed")
    # 3.4.1.2: lowercase scheme and host; the port only when it is not the scheme's
    # default; the path, "/" when empty; no query, no fragment. An IP address is
    # written in its usual form, IPv6 in brackets, as oauthlib writes it.
    try:
        address = ipaddress.ip_address(host)
        host = f"[{address}]" if address.version == 6 else str(address)
    except ValueError:
        pass
    port = parts.port
    if port and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    base_uri = f"{scheme}://{host}{parts.path or '/'}"
    # 3.4.1.3.1: the query decoded as application/x-www-form-urlencoded ("+" is a
    # space, a name without "=" has an empty value), oauth_signature left out;
    # 3.4.1.3.2: each name and value encoded (3.6). (oauthlib refuses a query holding
    # characters a URI cannot, such as a space; `post` signs yarl's encoding, which
    # holds none.)
    query = tuple(
        (_escape(k), _escape(v))
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k != "oauth_signature"
    )
    return f"{method.upper()}&{_escape(base_uri)}&", query


def _escape(value: str) -> str:
    """3.6: UTF-8, then every byte but the unreserved ALPHA, DIGIT, "-", ".", "_" and
    "~" as %XX, hex in capitals (quote always keeps letters, digits and "_.-")."""
    return quote(value, safe="~")


class XClient:
    """The bot's X account: reads its mentions, posts its replies.

    Reads use the bearer token when there is one (the app's larger limits), else the
    user context; posting and users/me always use OAuth 1.0a user context.
    """

    def __init__(
        self,
        *,
        consumer_key: str,
        consumer_secret: str,
        access_token: str,
        access_token_secret: str,
        bearer_token: str | None = None,
        base_url: str = X_API_BASE_URL,
        timeout: float = 30.0,
        own_reply_pages: int = 3,
        clock: Clock | None = None,
        kv: KeyValue | None = None,
    ) -> None:
        for name in _CHATTY_LOGGERS:
            chatty = logging.getLogger(name)
            if chatty.getEffectiveLevel() < logging.INFO:
                chatty.setLevel(logging.INFO)
        credentials = {
            "consumer_key": consumer_key,
            "consumer_secret": consumer_secret,
            "access_token": access_token,
            "access_token_secret": access_token_secret,
        }
        # Two sessions, so a long mentions poll never queues a reply behind it.
        self._reader = self._client(bearer_token or None, credentials, base_url, timeout)
        self._writer = self._client(None, credentials, base_url, timeout)
        self._read_as_user = not bearer_token
        self._own_reply_pages = own_reply_pages
        self._clock = clock
        self._me: XUser | None = None
        self._me_lock = asyncio.Lock()
        self._kv = kv
        self._dialect: Dialect | None = None
        # Replies go out from the event loop (`post`), signed as tweepy signs them, to
        # the URL as aiohttp sends it (yarl's encoding of base_url): what is signed is
        # what X receives.
        self._post_url = URL(base_url.rstrip("/") + "/2/tweets")
        self._timeout = timeout
        self._signer = OAuth1Signer(
            consumer_key, consumer_secret, access_token, access_token_secret
        )
        self._posting: tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession] | None = None

    @staticmethod
    def _client(
        bearer: str | None, credentials: dict[str, str], base_url: str, timeout: float
    ) -> Any:
        client = tweepy.Client(
            bearer_token=bearer,
            return_type=requests.Response,
            wait_on_rate_limit=False,
            **credentials,
        )
        client.session.mount(X_API_BASE_URL, _Redirect(base_url, timeout))
        return client

    def close(self) -> None:
        """Closes tweepy's HTTP connection pools (at shutdown; `aclose` closes all)."""
        self._reader.session.close()
        self._writer.session.close()

    async def aclose(self) -> None:
        """Closes every connection pool, the event loop's posting session too."""
        self.close()
        if self._posting is not None:
            await self._posting[1].close()
            self._posting = None

    def _posting_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._posting is None or self._posting[0] is not loop or self._posting[1].closed:
            timeout = aiohttp.ClientTimeout(total=self._timeout)
            self._posting = (loop, aiohttp.ClientSession(timeout=timeout))
        return self._posting[1]

    async def check(self) -> list[CheckLine]:
        """`seva check --online`, X's part: whom the credentials post as and the limits
        `GET /2/users/me` reports, and which spelling of the field parameters the
        account's API accepts (a mentions read of 5: harmless, no post is made).

        Raises Unavailable naming what to check when users/me fails.
        """
        try:
            body, headers = await self._read_json(
                "users/me",
                self._writer.request,
                "GET",
                "/2/users/me",
                params={"user.fields": "username"},
                user_auth=True,
            )
            data = body.get("data") or {}
            me = XUser(XUserId(str(data["id"])), str(data["username"]), str(data.get("name", "")))
        except Exception as e:
            raise Unavailable(
                f"GET /2/users/me failed ({type(e).__name__}: {e}); check X_API_KEY, "
                "X_API_SECRET, X_ACCESS_TOKEN, X_ACCESS_TOKEN_SECRET and X_API_BASE_URL"
            ) from None
        self._me = me
        lines = [CheckLine(True, f"posting as @{me.username} (id {me.id})")]
        lines.append(_limit_line("users/me", headers, "x-rate-limit", self._now()))
        posting = [
            f for f in ("x-user-limit-24hour", "x-app-limit-24hour") if f"{f}-limit" in headers
        ]
        for family in posting:
            lines.append(_limit_line("posting (24 hours)", headers, family, self._now()))
        if not posting:
            lines.append(
                CheckLine(
                    True,
                    "posting limits: X shows the 24-hour caps (x-user-limit-24hour-*) only on "
                    "posts; the bot reads them from each reply it posts",
                )
            )
        try:
            _, read_headers = await self._read_posts(
                "mentions",
                f"/2/users/{me.id}/mentions",
                {"max_results": "5"},
                timeline_params,
                user_auth=self._read_as_user,
            )
        except (Unavailable, RateLimited) as e:
            lines.append(CheckLine(False, f"reading mentions failed: {e}"))
            return lines
        dialect = await self.dialect()
        lines.append(
            CheckLine(
                True,
                f"the API accepts {dialect.value} "
                + (
                    "(the names X's docs use)"
                    if dialect is Dialect.TWEET
                    else "(the renamed fields of X's newest API spec)"
                ),
            )
        )
        lines.append(_limit_line("mentions", read_headers, "x-rate-limit", self._now()))
        return lines

    # --- TweetSource -----------------------------------------------------------------

    async def me(self) -> XUser:
        """The authenticated account (users/me), asked once and then remembered."""
        async with self._me_lock:
            if self._me is None:
                body, _ = await self._read_json(
                    "users/me", self._writer.get_me, user_auth=True, user_fields=["username"]
                )
                data = body.get("data")
                if not isinstance(data, dict) or not data.get("id") or not data.get("username"):
                    raise Unavailable("X users/me: the answer named no account")
                self._me = XUser(
                    XUserId(str(data["id"])), str(data["username"]), str(data.get("name", ""))
                )
                log.info("x.me id=%s username=%s", self._me.id, self._me.username)
            return self._me

    async def mentions(self, since_id: TweetId | None) -> list[Tweet]:
        me = await self.me()
        tweets = await self._pages(
            "mentions",
            f"/2/users/{me.id}/mentions",
            {},
            token_param="pagination_token",
            since_id=since_id,
        )
        if since_id and len(tweets) >= MENTIONS_REACHABLE:
            log.warning("x.mentions.possible_gap since_id=%s count=%d", since_id, len(tweets))
        return tweets

    async def search(self, query: str, since_id: TweetId | None) -> list[Tweet]:
        """Recent search (the last 7 days), newest first; at most 8 pages a call."""
        return await self._pages(
            "search/recent",
            "/2/tweets/search/recent",
            {"query": query},
            token_param="next_token",
            since_id=since_id,
            max_pages=MENTIONS_REACHABLE // 100,
        )

    async def _pages(
        self,
        what: str,
        route: str,
        params: Mapping[str, str],
        *,
        token_param: str,
        since_id: TweetId | None,
        max_pages: int | None = None,
    ) -> list[Tweet]:
        """Every page of a timeline read, newest first, without the account's own posts."""
        me = await self.me()
        tweets: list[Tweet] = []
        seen: set[str] = set()
        token: str | None = None
        pages = 0
        while True:
            page: dict[str, str] = {**params, "max_results": "100"}
            if since_id:
                page["since_id"] = since_id
            if token:
                page[token_param] = token
            body, headers = await self._read_posts(
                what, route, page, timeline_params, user_auth=self._read_as_user
            )
            pages += 1
            for tweet in page_tweets(body):
                if tweet.id in seen or tweet.author_id == me.id:
                    continue
                seen.add(tweet.id)
                tweets.append(tweet)
            if body.get("errors"):
                log.info("x.partial_errors what=%s count=%d", what, len(body["errors"]))
            token = (body.get("meta") or {}).get("next_token")
            if not token or (max_pages is not None and pages >= max_pages):
                break
            if headers.get("x-rate-limit-remaining") == "0":
                # The caller commits its cursor only after storing, so it simply polls
                # again later; nothing read here is lost.
                until = self._reset(headers)
                log.warning("x.rate_limited what=%s pages=%d until=%s", what, pages, until)
                raise RateLimited(until, what)
        log.debug("x.read what=%s count=%d pages=%d", what, len(tweets), pages)
        return tweets

    async def dialect(self) -> Dialect:
        """The spelling of the field parameters X accepted last (remembered across
        restarts); `tweet.fields`, as X's docs show, until X refuses it."""
        if self._dialect is None:
            stored = await self._kv.get(DIALECT_KEY) if self._kv else None
            self._dialect = Dialect(stored) if stored in set(Dialect) else Dialect.TWEET
        return self._dialect

    async def _read_posts(
        self,
        what: str,
        route: str,
        params: Mapping[str, str],
        fields: Callable[[Dialect], dict[str, str]],
        *,
        user_auth: bool,
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        """A read of posts in the dialect X accepts: when X refuses the field parameter
        by name, the same read in the other spelling, which is then remembered."""
        dialect = await self.dialect()
        for attempt in range(2):
            try:
                return await self._read_json(
                    what,
                    self._reader.request,
                    "GET",
                    route,
                    params={**params, **fields(dialect)},
                    user_auth=user_auth,
                    dialect=dialect,
                )
            except _DialectRefused:
                if attempt:
                    break
                dialect = await self._switch_dialect(dialect)
        raise Unavailable(
            f"X {what} refused both tweet.fields and post.fields; "
            "check X_API_BASE_URL and the API's changelog"
        )

    async def _switch_dialect(self, refused: Dialect) -> Dialect:
        self._dialect = refused.other
        log.warning("x.field_dialect refused=%s using=%s", refused.value, self._dialect.value)
        if self._kv is not None:
            await self._kv.put(DIALECT_KEY, self._dialect.value)
        return self._dialect

    # --- TweetSink -------------------------------------------------------------------

    async def post(self, text: str, in_reply_to: TweetId, media_ids: Sequence[str] = ()) -> TweetId:
        """`POST /2/tweets` (X's OpenAPI `createTweet`: `text`, `reply.in_reply_to_tweet_id`,
        `media.media_ids`), OAuth 1.0a user context, sent from the event loop. tweepy's
        sync client takes a worker thread for each call: twenty answers at once queued
        for the threads and their GIL hand-offs (bench/pipeline.py), and its async client
        cannot be pointed at `base_url`. Signed as tweepy signs (HMAC-SHA1, the JSON
        body outside the signature), by OAuth1Signer: oauthlib took 110 us a post."""
        body: dict[str, Any] = {"reply": {"in_reply_to_tweet_id": in_reply_to}}
        if text:
            body["text"] = text
        if media_ids:
            body["media"] = {"media_ids": list(media_ids)}
        url = self._post_url
        headers = {"Authorization": self._signer.authorization("POST", str(url))}
        try:
            async with self._posting_session().post(url, json=body, headers=headers) as r:
                status, raw, answer_headers = r.status, await r.read(), r.headers
        except (aiohttp.ClientError, TimeoutError) as e:
            # A timeout may hide a tweet that did go out: the caller checks
            # find_own_reply before trying again.
            raise Unavailable(f"X unreachable while posting: {type(e).__name__}") from e
        answer = _loaded(raw)
        if status >= 400:
            raise self._post_refused(status, answer, answer_headers, in_reply_to)
        try:
            tweet_id = TweetId(str(answer["data"]["id"]))  # type: ignore[index]
        except (KeyError, TypeError) as e:
            raise Unavailable("X accepted the tweet but its answer was unreadable") from e
        log.info("x.posted tweet_id=%s in_reply_to=%s", tweet_id, in_reply_to)
        return tweet_id

    async def upload_media(self, data: bytes, mimetype: str) -> str:
        """X's v2 media upload, one shot (`POST /2/media/upload`, multipart `media` and
        `media_category=tweet_image`; X's OpenAPI 2.159 and 2.167, facts-issue7 section
        7), signed like posting (OAuth 1.0a user context): tweepy has no v2 upload."""
        from tweepy import OAuth1UserHandler

        writer = self._writer
        auth = OAuth1UserHandler(
            writer.consumer_key,
            writer.consumer_secret,
            writer.access_token,
            writer.access_token_secret,
        ).apply_auth()
        extension = mimetype.rsplit("/", 1)[-1]

        def upload() -> requests.Response:
            return writer.session.post(
                X_API_BASE_URL + "/2/media/upload",
                files={"media": (f"reply.{extension}", data, mimetype)},
                data={"media_category": "tweet_image"},
                auth=auth,
            )

        try:
            response = await asyncio.to_thread(upload)
        except requests.RequestException as e:
            raise Unavailable(f"X unreachable while uploading an image: {type(e).__name__}") from e
        if response.status_code == 429:
            raise RateLimited(self._reset(response.headers), "media/upload")
        if response.status_code >= 500:
            raise Unavailable(f"X could not take the image: HTTP {response.status_code}")
        body = _json(response)
        media_id = ((body or {}).get("data") or {}).get("id") if isinstance(body, dict) else None
        problem = str(body.get("type", "")) if isinstance(body, dict) else ""
        if response.status_code == 401 or problem.endswith(_CREDENTIAL_PROBLEMS):
            # Not this image's fault: replies wait until X takes the credentials again.
            raise CredentialsRefused(
                f"X refused the posting credentials: {response.status_code} "
                f"{_problem_text(body, response.status_code)}"
            )
        if response.status_code >= 400 or not media_id:
            raise TweetRefused(_problem_text(body, response.status_code), response.status_code)
        log.info("x.media_uploaded media_id=%s bytes=%d", media_id, len(data))
        return str(media_id)

    async def delete(self, tweet_id: TweetId) -> None:
        """`DELETE /2/tweets/:id` (X's OpenAPI spec: 200 `{"data": {"deleted": true}}`,
        user context; facts-issue7 section 8). A post that is not there any more (404)
        counts as deleted, so a retry after a lost answer is harmless. Raises
        TweetRefused when X says no (another account's post), RateLimited, Unavailable."""
        try:
            response = await asyncio.to_thread(self._writer.delete_tweet, tweet_id, user_auth=True)
        except tweepy.NotFound:
            log.info("x.deleted tweet_id=%s already_gone=true", tweet_id)
            return
        except tweepy.HTTPException as e:
            status = getattr(e.response, "status_code", 0)
            refused = self._post_refused(status, _body(e), e.response.headers, tweet_id)
            raise refused from e
        except requests.RequestException as e:
            raise Unavailable(f"X unreachable while deleting: {type(e).__name__}") from e
        try:
            deleted = response.json()["data"]["deleted"]
        except (ValueError, KeyError, TypeError) as e:
            raise Unavailable("X answered the delete unreadably") from e
        if deleted is not True:
            raise TweetRefused("X did not delete the post", response.status_code)
        log.info("x.deleted tweet_id=%s", tweet_id)

    async def find_own_reply(
        self, in_reply_to: TweetId, text: str, exclude: Collection[str] = ()
    ) -> TweetId | None:
        me = await self.me()
        wanted = _comparable(text)
        token: str | None = None
        for _ in range(self._own_reply_pages):
            params = {"since_id": in_reply_to, "max_results": "100", "exclude": "retweets"}
            if token:
                params["pagination_token"] = token
            # since_id: a reply is always newer than what it answers.
            body, headers = await self._read_posts(
                "users/tweets",
                f"/2/users/{me.id}/tweets",
                params,
                own_posts_params,
                user_auth=self._read_as_user,
            )
            for item in body.get("data") or []:
                if str(item.get("id")) in exclude:
                    continue
                replied = references(item).get("replied_to")
                shown = without_media_links(str(item.get("text", "")), item.get("entities"))
                if replied == in_reply_to and _comparable(shown) == wanted:
                    return TweetId(str(item["id"]))
            token = (body.get("meta") or {}).get("next_token")
            if not token:
                return None
            if headers.get("x-rate-limit-remaining") == "0":
                raise RateLimited(self._reset(headers), "users/tweets")
        return None

    # --- plumbing --------------------------------------------------------------------

    async def _read_json(
        self,
        what: str,
        call: Callable[..., Any],
        *args: Any,
        dialect: Dialect | None = None,
        **params: Any,
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        """One read call, off the event loop; its JSON and headers, or a port error."""
        try:
            response = await asyncio.to_thread(call, *args, **params)
        except tweepy.BadRequest as e:
            if dialect is not None and dialect_refused(400, _body(e), dialect):
                raise _DialectRefused(dialect) from e
            raise Unavailable(f"X {what} refused: 400 {_reason(e)}") from e
        except tweepy.TooManyRequests as e:
            until = self._reset(e.response.headers)
            log.warning("x.rate_limited what=%s until=%s", what, until.isoformat())
            raise RateLimited(until, what) from e
        except tweepy.TwitterServerError as e:
            raise Unavailable(f"X {what}: {e.response.status_code} {_reason(e)}") from e
        except tweepy.HTTPException as e:
            # 400/401/403/404 on a read: our request or credentials are wrong. Retrying
            # later is all the caller can do; the message says what to fix.
            status = getattr(e.response, "status_code", "?")
            raise Unavailable(f"X {what} refused: {status} {_reason(e)}") from e
        except requests.RequestException as e:
            raise Unavailable(f"X {what} unreachable: {type(e).__name__}") from e
        try:
            body = response.json()
        except ValueError as e:
            raise Unavailable(f"X {what}: the answer was not JSON") from e
        if not isinstance(body, dict):
            raise Unavailable(f"X {what}: unexpected answer")
        return body, response.headers

    def _post_refused(
        self, status: int, body: object, headers: Mapping[str, str], in_reply_to: TweetId
    ) -> Exception:
        """What X's answer to a post means: wait, retry, pause posting, or refused."""
        reason = _problem_text(body, status)
        if status == 429:
            until = self._reset(headers)
            log.warning("x.rate_limited what=post until=%s", until.isoformat())
            return RateLimited(until, "post")
        if status >= 500:
            return Unavailable(f"X could not take the reply: {status} {reason}")
        problem = str(body.get("type", "")) if isinstance(body, dict) else ""
        if status == 401 or problem.endswith(_CREDENTIAL_PROBLEMS):
            # Not this reply's fault: every reply waits until X takes the credentials again.
            log.warning("x.credentials_refused what=post status=%s", status)
            return CredentialsRefused(f"X refused the posting credentials: {status} {reason}")
        if status in (400, 403):
            log.info("x.refused in_reply_to=%s status=%s reason=%s", in_reply_to, status, reason)
            return TweetRefused(reason, status)
        return Unavailable(f"X could not take the reply: {status} {reason}")

    def _now(self) -> datetime:
        return self._clock.now() if self._clock is not None else datetime.now(UTC)

    def _reset(self, headers: Mapping[str, str]) -> datetime:
        """When to ask again: the latest reset among the exhausted limits (the 24-hour
        posting caps are not in x-rate-limit-reset), else x-rate-limit-reset."""
        now = self._now()
        exhausted = [
            _epoch(headers.get(f"{family}-reset"))
            for family in ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour")
            if headers.get(f"{family}-remaining") == "0"
        ]
        resets = [r for r in exhausted if r is not None]
        if not resets:
            plain = _epoch(headers.get("x-rate-limit-reset"))
            resets = [plain] if plain is not None else []
        if not resets:
            return now + FALLBACK_WAIT
        latest = max(resets)
        return latest if latest > now else now + MIN_WAIT


def _limit_line(what: str, headers: Mapping[str, str], family: str, now: datetime) -> CheckLine:
    """`74 of 75 left, resets 12:15 UTC`; not ok when none is left."""
    limit, remaining = headers.get(f"{family}-limit"), headers.get(f"{family}-remaining")
    reset = _epoch(headers.get(f"{family}-reset"))
    if limit is None or remaining is None:
        return CheckLine(True, f"{what}: X sent no {family}-* headers")
    when = f", resets {reset:%H:%M} UTC" if reset is not None and reset > now else ""
    text = f"{what} limit ({family}): {remaining} of {limit} left{when}"
    if remaining == "0":
        return CheckLine(False, text + "; wait for the reset before switching on")
    return CheckLine(True, text)


# Problem types of a 403 that is about our app or tokens, not about the reply (X's
# OpenAPI problem types: the app lacks write permission, or this kind of auth is not
# allowed here); a 401 always is.
_CREDENTIAL_PROBLEMS = ("unsupported-authentication", "client-forbidden", "oauth1-permissions")


class _DialectRefused(Exception):
    """X answered 400 naming the field parameter of this dialect."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__(dialect.value)
        self.dialect = dialect


def _loaded(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _json(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _problem_text(body: object, status: int) -> str:
    """X's own words from a problem body: its errors' messages, else detail or title."""
    if isinstance(body, dict):
        errors = body.get("errors") or []
        messages = [
            e if isinstance(e, str) else e.get("message") if isinstance(e, dict) else None
            for e in errors
        ]
        if any(messages):
            return " ".join(str(m) for m in messages if m)
        for key in ("detail", "title"):
            if body.get(key):
                return str(body[key])
    return f"HTTP {status}"


def _body(e: tweepy.HTTPException) -> object:
    try:
        return e.response.json()
    except ValueError:
        return None


def _comparable(text: str) -> str:
    """Text as X may give it back: entities decoded, leading @mentions and t.co-wrapped
    URLs made neutral, whitespace collapsed."""
    text = unicodedata.normalize("NFC", html.unescape(text))
    text = _LEADING_MENTIONS.sub("", text.strip())
    text = _URLS.sub("<url>", text)
    return _SPACES.sub(" ", text).strip()


def _reason(e: tweepy.HTTPException) -> str:
    """X's own words in a refusal tweepy raised (`_problem_text` of its body)."""
    return _problem_text(_body(e), getattr(e.response, "status_code", 0))


def _epoch(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(str(value)), UTC) if value else None
    except (ValueError, OverflowError, OSError):
        return None


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
