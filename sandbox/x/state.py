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

from bot.routing import hashtag_spans
from sandbox.x.model import (
    _DIGITS,
    _HANDLE,
    _TIMELINE_PARAMS,
    _URL,
    _USERNAME,
    CANONICAL_HOSTS,
    DEFAULT_LIMITS,
    DUPLICATE_SECONDS,
    FIELD_NAMES,
    FIRST_TWEET_ID,
    FIRST_USER_ID,
    LONG_POST_LIMIT,
    MEDIA_EXPIRES,
    OAUTH_MAX_SKEW,
    PROBLEMS,
    WINDOW_SECONDS,
    RequestRecord,
    SandboxError,
    _and,
    _as_int,
    _base36,
    _check_params,
    _cut,
    _escape,
    _Fault,
    _field_params,
    _Fields,
    _fields,
    _hmac_sha1,
    _id_param,
    _int_param,
    _invalid,
    _iso,
    _Media,
    _missing_tweet,
    _oauth_base_uri,
    _oauth_escape,
    _oauth_header_items,
    _oauth_normalized,
    _Problem,
    _str_or_none,
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
        # Whether created_at never went down from one tweet to the next (a test's clock
        # may be set back): then a time window is a tail of every ascending id index.
        self._in_time_order = True
        self._windows: dict[str, _Window] = {}
        self._faults: list[_Fault] = []
        self.user_tokens_revoked = False  # see revoke_user_tokens
        self._media: dict[str, _Media] = {}
        # Uploaded media not yet in a post: id -> (owner, uploaded at, bytes, type).
        self._uploads: dict[str, tuple[str, float, int, str]] = {}
        # Which spelling of the field parameters the API takes: "old" (tweet.fields),
        # "new" (post.fields) or "both"; the other one gets X's 400 invalid-request.
        self.field_names = "old"
        # Where the stand-in is reached (learned from the first request): media URLs.
        self.public_base_url: str | None = None

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
        media: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Posts as `username` (a citizen, created on first use, or the account itself).

        A retweet's text is made the way X makes it ("RT @author: text"). Text over 280
        weighted characters is a long post (up to 25,000 characters, as X Premium
        allows): the API then cuts `text` and gives the whole in `note_tweet`. `media`
        attaches photos, videos or GIFs: `[{"type": "photo", "alt_text": "…"}]`.
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
            if len(text) > LONG_POST_LIMIT:
                raise SandboxError(400, f"text is longer than {LONG_POST_LIMIT} characters")
            if in_reply_to_tweet_id is not None:
                reply_to = self._visible(in_reply_to_tweet_id)
            if quote_tweet_id is not None:
                refs.append(("quoted", self._visible(quote_tweet_id).id))
        keys = self._new_media(media or [])
        return self._state_json(self._create(author, text, reply_to, refs, media_keys=keys))

    def edit(self, tweet_id: str, text: str) -> dict[str, Any]:
        """Edits a post the way X does: a new post with a new, higher id whose edit
        history lists the earlier versions, oldest first; timelines and search then show
        only the newest version. X's rules (docs: x-api/fundamentals/edit-posts.mdx):
        within 30 minutes, at most 5 edits, and never a reply to someone else's post."""
        old = self._visible(tweet_id)
        if old.superseded:
            raise SandboxError(409, f"tweet {tweet_id} was edited already: edit the newest")
        if not isinstance(text, str) or not text.strip():
            raise SandboxError(400, "text must not be empty")
        if len(text) > LONG_POST_LIMIT:
            raise SandboxError(400, f"text is longer than {LONG_POST_LIMIT} characters")
        if len(old.history) >= 5:
            raise SandboxError(403, "a post can be edited at most 5 times")
        first = self._tweets[old.history[0]] if old.history else old
        if self.clock() - first.created_at > 30 * 60:
            raise SandboxError(403, "a post can be edited only within 30 minutes")
        replied = self._tweets.get(old.in_reply_to_tweet_id or -1)
        if replied is not None and replied.author_id != old.author_id:
            raise SandboxError(403, "replies to other people's posts cannot be edited")
        author = self._users[old.author_id]
        old.superseded = True
        new = self._create(
            author,
            text,
            replied,
            [r for r in old.referenced if r[0] != "replied_to"],
            media_keys=old.media_keys,
            history=(*old.history, old.id),
        )
        if old.conversation_id == old.id:  # an edited root starts its own conversation
            new.conversation_id = new.id
        return self._state_json(new)

    def delete(self, tweet_id: str) -> None:
        """Deleting any version of an edited post deletes the whole chain."""
        t = self._tweets.get(_as_int(tweet_id))
        if t is None:
            raise SandboxError(404, f"no tweet {tweet_id}")
        t.deleted = True
        for other in self._tweets.values():
            if t.id in other.history or other.id in t.history:
                other.deleted = True

    def set_field_names(self, names: str) -> None:
        """Which spelling of the field parameters the API accepts: old, new or both."""
        if names not in FIELD_NAMES:
            raise SandboxError(400, f"field_names must be one of {list(FIELD_NAMES)}")
        self.field_names = names

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
            "field_names": self.field_names,
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

    def daily_post_headers(self) -> dict[str, str]:
        """The 24-hour posting caps X reports on `POST /2/tweets` (third-party captures:
        plhery/node-twitter-api-v2#495, #553): per user and per app, Unix-second resets."""
        now = self.clock()
        since = now - DUPLICATE_SECONDS
        ids = self._by_author.get(self.account.id, [])
        tweets = self._tweets
        if self._in_time_order:
            # The posts of the last 24 hours are the newest ids: found by bisection, not
            # by reading the account's whole history on every post.
            start = bisect_right(ids, since, key=lambda i: tweets[i].created_at)
            count = len(ids) - start
            first = tweets[ids[start]].created_at if count else now
        else:
            ours = [i for i in ids if tweets[i].created_at > since]
            count = len(ours)
            first = tweets[ours[0]].created_at if ours else now
        reset = str(math.ceil(first + DUPLICATE_SECONDS))
        out = {}
        for family, limit in (("x-user-limit-24hour", 2400), ("x-app-limit-24hour", 10000)):
            out[f"{family}-limit"] = str(limit)
            out[f"{family}-remaining"] = str(max(0, limit - count))
            out[f"{family}-reset"] = reset
        return out

    def clear_faults(self) -> None:
        self._faults.clear()

    def revoke_user_tokens(self, revoked: bool) -> None:
        """The account's OAuth 1.0a user tokens refused (401) while `revoked`: what X
        answers once the account revoked the app's access; reads with the app's bearer
        token still work. Then restored."""
        self.user_tokens_revoked = bool(revoked)

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

    def _upload(self, owner: str, data: bytes, kind: str) -> dict[str, Any]:
        """An upload waiting for a post (MediaUploadResponse: id, media_key, size)."""
        media_id = str(self._new_id())
        self._uploads[media_id] = (owner, self.clock(), len(data), kind)
        return {
            "id": media_id,
            "media_key": f"3_{media_id}",
            "size": len(data),
            "expires_after_secs": MEDIA_EXPIRES,
            "image": {"image_type": kind, "w": 1, "h": 1},
        }

    def _media_for_post(self, owner: str, media: Any) -> tuple[str, ...]:
        """`media.media_ids` of a new post: 1 to 4 of the poster's own live uploads
        (X-spec-old TweetCreateRequest.media), each usable once."""
        if media is None:
            return ()
        ids = media.get("media_ids") if isinstance(media, dict) else None
        if not isinstance(ids, list) or not 1 <= len(ids) <= 4:
            raise _invalid("media.media_ids", str(ids), "$.media.media_ids: 1 to 4 ids")
        keys = []
        for media_id in ids:
            upload = self._uploads.get(str(media_id))
            if upload is None or upload[0] != owner or self.clock() - upload[1] > MEDIA_EXPIRES:
                raise _invalid(
                    "media.media_ids", str(media_id), f"Your media IDs are invalid: [{media_id}]"
                )
            key = f"3_{media_id}"
            self._media[key] = _Media(key, "photo")
            keys.append(key)
        for media_id in ids:
            del self._uploads[str(media_id)]
        return tuple(keys)

    def _new_media(self, specs: list[dict[str, Any]]) -> tuple[str, ...]:
        """Media keys for attachments (X: up to 4 photos, or 1 video or GIF)."""
        if not isinstance(specs, list) or len(specs) > 4:
            raise SandboxError(400, "media: a list of at most 4 items")
        prefixes = {"photo": "3", "video": "13", "animated_gif": "16"}
        keys = []
        for spec in specs:
            kind = spec.get("type", "photo") if isinstance(spec, dict) else None
            if kind not in prefixes:
                raise SandboxError(400, "media type must be photo, video or animated_gif")
            if kind != "photo" and len(specs) > 1:
                raise SandboxError(400, "a video or GIF must be the only attachment")
            key = f"{prefixes[kind]}_{self._new_id()}"
            self._media[key] = _Media(
                key, kind, str(spec.get("alt_text") or ""), duration_ms=32_000 * (kind == "video")
            )
            keys.append(key)
        return tuple(keys)

    def _create(
        self,
        author: _User,
        text: str,
        reply_to: _Tweet | None,
        refs: list[tuple[str, int]],
        *,
        media_keys: tuple[str, ...] = (),
        history: tuple[int, ...] = (),
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
            media_keys=media_keys,
            history=history,
        )
        if self._ids and t.created_at < self._tweets[self._ids[-1]].created_at:
            self._in_time_order = False
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
            if self.user_tokens_revoked:
                # The account revoked the app's access: its OAuth 1.0a user tokens get
                # 401 (posting, users/me), while the app's bearer token still reads.
                raise _Problem(401, "Unauthorized", "Unauthorized")
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
            items = _oauth_header_items(header)
            params = {k: oauth_utils.unescape(v) for k, v in items}
            # The signed parameters (RFC 5849 section 3.4.1.3.1) as oauthlib's
            # collect_parameters gathers them, the header parsed once: the query and the
            # form body from oauthlib, then the header's own but realm and
            # oauth_signature, its oauth_* values decoded.
            collected = oauth_signature.collect_parameters(
                uri_query=request.rel_url.raw_query_string,
                body=form,
                exclude_oauth_signature=True,
            )
            collected += [
                (k, params[k] if k.startswith("oauth_") else v)
                for k, v in items
                if k not in ("realm", "oauth_signature")
            ]
            normalized = _oauth_normalized(collected)
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
        # The signature base string (RFC 5849 section 3.4.1.1): method, base string URI
        # and normalized parameters, each encoded, joined by "&"; only the URI differs.
        method = _oauth_escape(request.method.upper())
        encoded_params = _oauth_escape(normalized)
        for url in urls:
            base = f"{method}&{_oauth_base_uri(url)}&{encoded_params}"
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
            "media_keys": list(t.media_keys),
            "edit_history_tweet_ids": [str(i) for i in (*t.history, t.id)],
            "superseded": t.superseded,
        }

    def _api_json(self, t: _Tweet, fields: _Fields) -> dict[str, Any]:
        """A post as X renders it, in the names the request used (X-spec-old `Tweet`,
        X-spec-new `Post`): a long post's `text` cut with the whole in `note_tweet`, a
        t.co link for its media, entities with code-point offsets."""
        wanted = fields.tweet
        exp = fields.expansions
        new = fields.new_names
        long_post = not t.fits()
        text = _cut(t.text) if long_post else t.text
        media_url = None
        if t.media_keys:
            media_url = f"https://t.co/{_base36(t.id)[-10:]}"
            text = f"{text} {media_url}"
        history_name = "edit_history_post_ids" if new else "edit_history_tweet_ids"
        out: dict[str, Any] = {
            "id": str(t.id),
            "text": _escape(text),
            history_name: [str(i) for i in (*t.history, t.id)],  # a default field
        }
        if "author_id" in wanted or "author_id" in exp:
            out["author_id"] = t.author_id
        if "conversation_id" in wanted:
            out["conversation_id"] = str(t.conversation_id)
        if "created_at" in wanted:
            out["created_at"] = _iso(t.created_at)
        if t.in_reply_to_user_id and (
            "in_reply_to_user_id" in wanted or "in_reply_to_user_id" in exp
        ):
            out["in_reply_to_user_id"] = t.in_reply_to_user_id
        refs = [{"type": k, "id": str(i)} for k, i in t.referenced]
        if refs and new and "referenced_posts" in exp:
            out["referenced_posts"] = refs
        elif (
            refs
            and not new
            and (
                "referenced_tweets" in wanted
                or any(e.startswith("referenced_tweets.id") for e in exp)
            )
        ):
            out["referenced_tweets"] = refs
        if t.media_keys and ("attachments" in wanted or "attachments.media_keys" in exp):
            out["attachments"] = {"media_keys": list(t.media_keys)}
        if "entities" in wanted:
            entities = self._entities(text, t, media_url)
            if entities:
                out["entities"] = entities
        note = "note_post" if new else "note_tweet"
        if long_post and note in wanted:
            out[note] = {"text": _escape(t.text)}
            note_entities = self._entities(t.text, t, None)
            if note_entities:
                out[note]["entities"] = note_entities
        return out

    def _entities(self, text: str, t: _Tweet, media_url: str | None) -> dict[str, Any]:
        """hashtags, mentions and urls of `text`, start inclusive and end exclusive, in
        code points (X-spec-old `EntityIndicesInclusiveExclusive`; real captures)."""
        out: dict[str, Any] = {}
        tags = [{"start": a, "end": b, "tag": tag} for a, b, tag in hashtag_spans(text)]
        if tags:
            out["hashtags"] = tags
        mentions = []
        for m in _HANDLE.finditer(text):
            user_id = self._by_username.get(m.group(1).lower())
            item: dict[str, Any] = {"start": m.start(), "end": m.end(), "username": m.group(1)}
            if user_id is not None:
                item["id"] = user_id
            mentions.append(item)
        if mentions:
            out["mentions"] = mentions
        urls: list[dict[str, Any]] = []
        for m in _URL.finditer(text):
            if m.group(0) == media_url:
                continue
            urls.append(
                {"start": m.start(), "end": m.end(), "url": m.group(0), "expanded_url": m.group(0)}
            )
        if media_url is not None and t.media_keys:
            start = text.rindex(media_url)
            kind = self._media[t.media_keys[0]].type
            path = "photo" if kind == "photo" else "video"
            urls.append(
                {
                    "start": start,
                    "end": start + len(media_url),
                    "url": media_url,
                    "expanded_url": f"https://x.com/{self._users[t.author_id].username}"
                    f"/status/{t.id}/{path}/1",
                    "display_url": f"pic.x.com/{media_url.rsplit('/', 1)[-1]}",
                    "media_key": t.media_keys[0],
                }
            )
        if urls:
            out["urls"] = urls
        return out

    def _media_json(self, key: str, fields: _Fields) -> dict[str, Any]:
        """`includes.media`: a photo has `url`, a video or GIF `preview_image_url` and
        `variants` but no `url` (X-spec-old `Media` subtypes)."""
        m = self._media[key]
        wanted = fields.media
        out: dict[str, Any] = {"media_key": key, "type": m.type}
        base = (self.public_base_url or "http://127.0.0.1").rstrip("/")
        image = f"{base}/media/{key}.png"
        if m.type == "photo" and "url" in wanted:
            out["url"] = image
        if m.type != "photo" and "preview_image_url" in wanted:
            out["preview_image_url"] = image
        if m.type != "photo" and "variants" in wanted:
            out["variants"] = [
                {"content_type": "application/x-mpegURL", "url": f"{base}/media/{key}.m3u8"},
                {
                    "bit_rate": 256000,
                    "content_type": "video/mp4",
                    "url": f"{base}/media/{key}-256.mp4",
                },
                {
                    "bit_rate": 832000,
                    "content_type": "video/mp4",
                    "url": f"{base}/media/{key}-832.mp4",
                },
            ]
        if m.type == "video" and "duration_ms" in wanted:
            out["duration_ms"] = m.duration_ms
        if "alt_text" in wanted and m.alt_text:
            out["alt_text"] = m.alt_text
        if "width" in wanted:
            out["width"] = m.width
        if "height" in wanted:
            out["height"] = m.height
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
        new = fields.new_names
        user_ids: dict[str, None] = {}
        included: dict[int, _Tweet] = {}
        media: dict[str, None] = {}
        errors: list[dict[str, Any]] = []
        refs_expanded = (
            "referenced_posts" in exp
            if new
            else ("referenced_tweets.id" in exp or "referenced_tweets.id.author_id" in exp)
        )
        history_expanded = ("edit_history_post_ids" if new else "edit_history_tweet_ids") in exp
        for t in tweets:
            if "author_id" in exp:
                user_ids[t.author_id] = None
            if "in_reply_to_user_id" in exp and t.in_reply_to_user_id:
                user_ids[t.in_reply_to_user_id] = None
            if "attachments.media_keys" in exp:
                media.update(dict.fromkeys(t.media_keys))
            if refs_expanded:
                for _, ref_id in t.referenced:
                    ref = self._tweets.get(ref_id)
                    if ref is None or ref.deleted:
                        errors.append(_missing_tweet(ref_id))
                        continue
                    included[ref_id] = ref
                    if "referenced_tweets.id.author_id" in exp:
                        user_ids[ref.author_id] = None
            if history_expanded:
                for old_id in t.history:
                    if old_id in self._tweets and not self._tweets[old_id].deleted:
                        included[old_id] = self._tweets[old_id]
        includes: dict[str, Any] = {}
        if user_ids:
            includes["users"] = [self._user_json(self._users[u], fields) for u in user_ids]
        if included:
            name = "posts" if new else "tweets"
            includes[name] = [self._api_json(t, fields) for t in included.values()]
        if media:
            includes["media"] = [self._media_json(k, fields) for k in media if k in self._media]
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
            if t.hidden or (keep is not None and not keep(t)):
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
        params = _field_params(_TIMELINE_PARAMS, self.field_names)
        _check_params(q, params | ({"exclude"} if keep is not None else set()))
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
