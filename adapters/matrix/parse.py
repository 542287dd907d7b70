"""What a Matrix event says, as plain text the core understands (pure): pills as user
ids, reply fallbacks dropped, reaction keys without their variation noise."""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

_EMOJI_NOISE = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")


_PILL = re.compile(
    r'<a\s+href="https://matrix\.to/#/(@[^"/?]+)"[^>]*>.*?</a>', re.IGNORECASE | re.S
)
_TAG = re.compile(r"<[^>]+>")


def with_user_ids(body: str, content: dict[str, Any]) -> str:
    """A command's text with mention pills as user ids (`!assign 5 @asha:hs`).

    Element writes a pill's display name into `body`; the id is only in the HTML.
    """
    formatted = content.get("formatted_body")
    if content.get("format") != "org.matrix.custom.html" or not isinstance(formatted, str):
        return body
    if not _PILL.search(formatted):
        return body
    text = _PILL.sub(lambda m: urllib.parse.unquote(m.group(1)), formatted)
    return html.unescape(_TAG.sub("", text.replace("<br>", "\n").replace("<br/>", "\n")))


def retry_delay(
    headers: Mapping[str, str] | None, retry_after_ms: int | None, now: datetime
) -> timedelta | None:
    """How long a 429 says to wait: `Retry-After` (seconds or an HTTP date, RFC 9110),
    which the spec prefers since v1.10, else the deprecated body `retry_after_ms`; None
    when neither says (spec: client-server API, Rate limiting)."""
    raw = (headers or {}).get("Retry-After")
    if raw:
        raw = raw.strip()
        if raw.isdigit():
            return timedelta(seconds=int(raw))
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(timedelta(0), when - now)
    if isinstance(retry_after_ms, int) and retry_after_ms >= 0:
        return timedelta(milliseconds=retry_after_ms)
    return None


def normalise_key(key: str) -> str:
    return _EMOJI_NOISE.sub("", key)


def strip_reply_fallback(body: str) -> str:
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if 0 < i < len(lines) and lines[i] == "":
        return "\n".join(lines[i + 1 :])
    return body


def is_human_text(content: dict[str, Any]) -> bool:
    """A person's text message: not a notice, an edit or a replacement."""
    relates = content.get("m.relates_to") or {}
    return (
        content.get("msgtype") == "m.text"
        and isinstance(content.get("body"), str)
        and relates.get("rel_type") != "m.replace"
        and "m.new_content" not in content
    )
