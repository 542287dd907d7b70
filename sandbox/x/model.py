"""The X stand-in's records, limits, errors and parameter parsing, in X's wire format."""

from __future__ import annotations

import base64
import functools
import hmac
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, NamedTuple

from aiohttp import web
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils
from twitter_text import parse_tweet
from twitter_text.extract_urls import extract_urls_with_indices

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
    "media_upload": 500,  # POST /2/media/upload, per user (X-docs rate-limits.mdx)
    "delete_tweet": 50,  # per user and 15 minutes (X's rate-limits page)
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
# X's OpenAPI 2.167 (docs openapi.json, xdk's specs/openapi.json), GET /2/users/{id}/mentions:
# `post.fields` and the renamed expansions. author_id, in_reply_to_user_id, referenced_posts
# and edit_history_post_ids are expansions only there.
POST_FIELDS = _names(
    "article article_title attachments card_uri community_id context_annotations "
    "conversation_id created_at display_text_range edit_controls entities geo id lang "
    "matched_media_notes media_metadata non_public_metrics note_post note_request_suggestions "
    "organic_metrics paid_partnership possibly_sensitive promoted_metrics public_metrics "
    "reply_settings scopes source suggested_source_links suggested_source_links_with_counts "
    "text withheld"
)
POST_EXPANSIONS = _names(
    "article.cover_media article.media_entities attachments.media_keys "
    "attachments.media_source_tweet attachments.poll_ids author_id edit_history_post_ids "
    "entities.mentions.username geo.place_id in_reply_to_user_id referenced_posts username"
)
# media.fields: the same enum in both specs (components.parameters.MediaFieldsParameter).
MEDIA_FIELDS = _names(
    "alt_text duration_ms height media_key non_public_metrics organic_metrics "
    "preview_image_url promoted_metrics public_metrics type url variants width"
)
# Which spellings of the field parameters the stand-in accepts (`XState.field_names`):
# X's docs and xurl use the old names, its newest OpenAPI spec the new ones, and whether
# the live API takes either is not known; tests choose.
FIELD_NAMES = ("old", "new", "both")
_COMMON_TIMELINE_PARAMS = _names(
    "since_id until_id max_results pagination_token start_time end_time expansions "
    "user.fields media.fields place.fields poll.fields"
)
_TIMELINE_PARAMS = _COMMON_TIMELINE_PARAMS | {"tweet.fields"}
_SEARCH_PARAMS = _TIMELINE_PARAMS | {"query", "next_token", "sort_order"}
_USER_PARAMS = frozenset({"expansions", "tweet.fields", "user.fields"})
MEDIA_CATEGORIES = frozenset(
    {"tweet_image", "tweet_video", "tweet_gif", "dm_image", "dm_video", "dm_gif", "subtitles"}
)
MEDIA_EXPIRES = 24 * 3600  # expires_after_secs of an upload (MediaUploadResponse examples)
LONG_POST_LIMIT = 25_000  # characters of a long post (X Premium)
NOTE_CUT = 270  # weighted characters of `text` left for a long post (captures: ~270, no ellipsis)
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
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # twitter-text's convert_line_ending
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
    media_keys: tuple[str, ...] = ()
    history: tuple[int, ...] = ()  # the versions this edit replaced, oldest first
    superseded: bool = False  # an edit replaced it: timelines show only the newest
    _words: tuple[str, ...] | None = None
    _fits: bool | None = None

    @property
    def hidden(self) -> bool:
        return self.deleted or self.superseded

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

    def fits(self) -> bool:
        """Within 280 weighted characters: measured once, not on every page it is on."""
        if self._fits is None:
            self._fits = _text_fits(self.text)
        return self._fits


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
class _Media:
    """One attachment, as `includes.media` shows it (X-spec-old `Media`, by `type`)."""

    key: str
    type: str  # photo | video | animated_gif
    alt_text: str = ""
    width: int = 1200
    height: int = 900
    duration_ms: int = 0


@dataclass(slots=True)
class _Fields:
    tweet: frozenset[str] = frozenset()
    user: frozenset[str] = frozenset()
    expansions: frozenset[str] = frozenset()
    media: frozenset[str] = frozenset()
    new_names: bool = False  # the request used post.fields: answer with the new names


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
    new_names = "post.fields" in query
    return _Fields(
        tweet=(
            _list_param(query, "post.fields", POST_FIELDS)
            if new_names
            else _list_param(query, "tweet.fields", TWEET_FIELDS)
        ),
        user=_list_param(query, "user.fields", USER_FIELDS),
        expansions=_list_param(query, "expansions", POST_EXPANSIONS if new_names else EXPANSIONS),
        media=_list_param(query, "media.fields", MEDIA_FIELDS),
        new_names=new_names,
    )


def _field_params(params: frozenset[str], field_names: str) -> frozenset[str]:
    """The query parameters an endpoint accepts, with the field parameter(s) the stand-in
    is set to take: `tweet.fields` (old), `post.fields` (new) or both."""
    if field_names == "old":
        return params
    renamed = params - {"tweet.fields"} | {"post.fields"}
    return renamed if field_names == "new" else params | renamed


def _image_type(data: bytes) -> str | None:
    """The image type by its magic number, as X's upload checks the bytes themselves."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _weight(ch: str) -> int:
    """X's weight of one code point (twitter-text config v3; /work/shared/reference)."""
    cp = ord(ch)
    light = cp <= 4351 or 8192 <= cp <= 8205 or 8208 <= cp <= 8223 or 8242 <= cp <= 8247
    return 1 if light else 2


def _cut(text: str, limit: int = NOTE_CUT) -> str:
    """A long post's `text`: a plain prefix, no ellipsis, no link (captures in
    xdevplatform/samples#202)."""
    used = 0
    for i, ch in enumerate(text):
        used += _weight(ch)
        if used > limit:
            return text[:i]
    return text


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
    digest = hmac.digest(_hmac_key(consumer_secret, token_secret), base_string.encode(), "sha1")
    return base64.b64encode(digest).decode()


@functools.lru_cache(maxsize=16)
def _hmac_key(consumer_secret: str, token_secret: str) -> bytes:
    """RFC 5849 section 3.4.2: the encoded secrets joined by "&" (the same on every call)."""
    return (oauth_utils.escape(consumer_secret) + "&" + oauth_utils.escape(token_secret)).encode()


def _oauth_header_items(header: str) -> list[tuple[str, str]]:
    """oauthlib's `parse_authorization_header`, whose comma split (urllib's
    `parse_http_list`, RFC 2068 section 2 lists) reads one character at a time: a header
    without backslash escapes or commas inside quotes splits the same with `str.split`
    (as every client's does: its values are percent-encoded). Anything else, and any
    header that does not parse, goes to oauthlib."""
    rest = header[6:]
    if header[:6].lower() == "oauth " and "\\" not in rest:
        parts = rest.split(",")
        if all(part.count('"') % 2 == 0 for part in parts):
            if parts[-1] == "":
                parts.pop()  # parse_http_list keeps no empty last part
            try:
                return list(oauth_utils.parse_keqv_list([p.strip() for p in parts]).items())
            except (IndexError, ValueError):
                pass
    return oauth_utils.parse_authorization_header(header)


# RFC 5849 section 3.6: every byte but the unreserved ALPHA, DIGIT, "-", ".", "_" and "~"
# as %XX, upper-case hex. oauthlib's escape (urllib's quote) goes byte by byte in Python
# once anything needs escaping, as `&`, `=` and `%` in a signature base string do.
_OAUTH_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_OAUTH_ASCII_ESCAPES = {c: f"%{c:02X}" for c in range(128) if c not in _OAUTH_UNRESERVED}


def _oauth_escape(text: str) -> str:
    """RFC 5849 section 3.6 percent-encoding, as oauthlib's `utils.escape` does it."""
    if text.isascii():
        return text.translate(_OAUTH_ASCII_ESCAPES)
    return oauth_utils.escape(text)  # UTF-8 bytes first


def _oauth_normalized(params: Iterable[tuple[str, str]]) -> str:
    """RFC 5849 section 3.4.1.3.2: encoded, sorted by name then value, `k=v` joined by `&`
    (oauthlib's `signature.normalize_parameters`)."""
    pairs = sorted((_oauth_escape(k), _oauth_escape(v)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in pairs)


@functools.lru_cache(maxsize=256)
def _oauth_base_uri(url: str) -> str:
    """The base string URI (RFC 5849 section 3.4.1.2), encoded for the base string: a
    few URLs come back on every request, and oauthlib parses each one (host as an IP
    address too) every time."""
    return _oauth_escape(oauth_signature.base_string_uri(url))


def _text_fits(text: str) -> bool:
    """X's 280 weighted characters; parse_tweet is slow, so plain short text skips it."""
    if text.isascii():
        return _ascii_weighted_length(text) <= 280
    if len(text) <= 280 and "." not in text and all(ord(c) <= 4351 for c in text):
        return True  # no URL possible, every code point weighs 1
    return bool(parse_tweet(text).valid)


def _ascii_weighted_length(text: str) -> int:
    """parse_tweet's weightedLength of ASCII text, without its per-character loop and
    emoji scan (twitter-text config v3, /work/shared/reference/x-api.md): NFC leaves
    ASCII alone, no ASCII is an emoji or an invalid character, every character weighs
    1 and every URL 23. Line breaks count once (\r\n is \n), and a URL starting
    inside an earlier one is skipped, as parse_tweet walks the text."""
    normalized = _LINE_BREAK.sub("\n", text)
    urls = {u["indices"][0]: u["url"] for u in extract_urls_with_indices(normalized)}
    weight, end = len(normalized), 0
    for start in sorted(urls):
        if start >= end:
            weight += 23 - len(urls[start])
            end = start + len(urls[start])
    return weight


# --- search queries --------------------------------------------------------------------


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
