"""The X stand-in's shortcuts agree with the libraries and rules they stand in for:
OAuth 1.0a signing as oauthlib does it, twitter-text's weighted length, the daily caps."""

from __future__ import annotations

import math
import random

import pytest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849 import utils as oauth_utils
from twitter_text import parse_tweet

from sandbox.x.model import (
    _ascii_weighted_length,
    _oauth_base_uri,
    _oauth_escape,
    _oauth_header_items,
    _oauth_normalized,
    _text_fits,
)
from sandbox.x.state import XState

ASCII = "".join(map(chr, range(128)))


@pytest.mark.parametrize(
    "text",
    [ASCII, "", "plain", "a b&c=d%e+f/g~h", "नमस्ते दुनिया", "café ☕ 😷", "\x00\x7f\u0080"],
)
def test_oauth_escape_is_oauthlibs(text: str) -> None:
    assert _oauth_escape(text) == oauth_utils.escape(text)


def test_oauth_normalized_parameters_are_oauthlibs() -> None:
    params = [
        ("oauth_nonce", "1234 5678"),
        ("oauth_consumer_key", "key"),
        ("b", "2"),
        ("a", "z&y"),
        ("a", "x=w"),  # the same name twice: sorted by value
        ("empty", ""),
        ("q", "नमस्ते ✓"),
    ]
    assert _oauth_normalized(params) == oauth_signature.normalize_parameters(params)


@pytest.mark.parametrize(
    "header",
    [
        'OAuth oauth_nonce="abc", oauth_signature="a%2Bb%3D", oauth_version="1.0"',
        'oauth realm="x",oauth_token="t" ,  oauth_consumer_key="k"',
        'OAUTH a="1", a="2", b=3, c=""',
        'OAuth a="x,y", b="2"',  # a comma inside quotes
        'OAuth a="x\\"y", b="2"',  # an escaped quote
        'OAuth a="1",',
        'OAuth a="1", , b="2"',
        'OAuth a="1",  ',
        "OAuth ",
        'OAuth a"=1", b="2',
        "OAuth novalue",
        'OAuth a=""',
        "OAuth a=",
        'Bearer a="1"',
        'OAuth\ta="1"',
    ],
)
def test_oauth_header_items_are_oauthlibs(header: str) -> None:
    try:
        expected: list[tuple[str, str]] | str = oauth_utils.parse_authorization_header(header)
    except ValueError as e:
        expected = str(e)
    try:
        got: list[tuple[str, str]] | str = _oauth_header_items(header)
    except ValueError as e:
        got = str(e)
    assert got == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://api.twitter.com/2/tweets",
        "http://127.0.0.1:8080/x/2/tweets",
        "HTTP://Example.COM:80/a b",
        "http://[::1]:8000/x/2/users/me",
    ],
)
def test_oauth_base_uri_is_oauthlibs(url: str) -> None:
    assert _oauth_base_uri(url) == oauth_utils.escape(oauth_signature.base_string_uri(url))


WEIGHED = [
    "",
    "plain words",
    "Answer 1234-5: call 1075.",
    "e.g. this. and that...",
    "see https://example.com/a?b=c#d and example.org, then http://x.co.",
    "https://t.co/" + "a" * 50 + " a t.co slug over 40 characters",
    "https://t.co/abc/more/path",
    "www.example.com/path/to/page.html?x=1 trailing",
    "a.b.c.d.e sub.domain.example.co.uk nope.invalidtld",
    "line one\r\nline two\rline three\nend.",
    "http://example.com" * 20,
    "x" * 281,
    "x" * 270 + " a.co",
    "@SevaHelp oxygen needed at City Hospital. Call 98765 43210. #covid19",
    "mailto:someone@example.com user@example.com",
    "(https://example.com/paren_(1)) [example.com]",
]


@pytest.mark.parametrize("text", WEIGHED)
def test_ascii_weighted_length_is_twitter_texts(text: str) -> None:
    parsed = parse_tweet(text)
    assert _ascii_weighted_length(text) == parsed.weightedLength
    if text:
        assert _text_fits(text) == parsed.valid


def test_ascii_weighted_length_of_random_text_is_twitter_texts() -> None:
    rng = random.Random(5849)
    pieces = [
        "a", "Z", "9", " ", ".", ",", ":", "/", "-", "_", "~", "?", "=", "&", "#", "@", "(",
        ")", "\r", "\n", "\r\n", "http://", "https://", "www.", ".com", ".co", ".in", "t.co/",
        "example", "x.org/p", "1075", "\t", "!", "'", '"',
    ]  # fmt: skip
    for _ in range(400):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 120)))
        assert _ascii_weighted_length(text) == parse_tweet(text).weightedLength, text


def test_no_ascii_character_is_an_emoji_or_invalid_to_twitter_text() -> None:
    """What the ASCII shortcut rests on: every ASCII character weighs 1."""
    for ch in ASCII:
        if ch not in "\r\n":
            assert parse_tweet(ch).weightedLength == 1, repr(ch)
            assert parse_tweet(ch).valid


def _daily_reference(x: XState) -> tuple[int, str]:
    """The 24-hour count and reset by their definition: every account post of the last
    24 hours, the oldest of them (in id order) resetting first."""
    now = x.clock()
    ours = [
        t
        for t in (x._tweets[i] for i in x._ids)
        if t.author_id == x.account.id and t.created_at > now - 24 * 3600
    ]
    first = ours[0].created_at if ours else now
    return len(ours), str(math.ceil(first + 24 * 3600))


@pytest.mark.parametrize("clock_goes_back", [False, True])
def test_daily_post_headers_count_the_last_24_hours(clock_goes_back: bool) -> None:
    now = [1_700_000_000.25]
    x = XState(clock=lambda: now[0])
    steps = [0, 3600, 7200, 20 * 3600, 22 * 3600, 3600, 3 * 3600]
    if clock_goes_back:
        steps[3] = -5 * 3600
    for i, step in enumerate(steps):
        now[0] += step
        x.tweet("SevaHelp", f"post {i}")
        x.tweet("citizen", f"@SevaHelp question {i}")
        for later in (0, 1800, 24 * 3600 - 1, 24 * 3600):
            now[0] += later
            count, reset = _daily_reference(x)
            headers = x.daily_post_headers()
            assert headers["x-user-limit-24hour-remaining"] == str(2400 - count)
            assert headers["x-app-limit-24hour-remaining"] == str(10000 - count)
            assert headers["x-user-limit-24hour-reset"] == reset
            now[0] -= later
    assert x._in_time_order is not clock_goes_back
