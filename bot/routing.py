"""Which department a query goes to: the first whose keywords or hashtags match."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from bot.config import Department

_HASHTAG = re.compile(r"(?<![\w&])[#＃](\w+)", re.UNICODE)


def hashtags(text: str) -> set[str]:
    return {t.casefold() for t in _HASHTAG.findall(text)}


@lru_cache(maxsize=1024)
def _phrase(keyword: str) -> re.Pattern[str]:
    # Word-bounded so "bus" does not match "business"; phrases match across any spacing.
    words = [re.escape(w) for w in keyword.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE | re.UNICODE)


def route(text: str, departments: Sequence[Department], default: str) -> str:
    tags = hashtags(text)
    for d in departments:
        if any(h.casefold() in tags for h in d.hashtags):
            return d.id
        if any(_phrase(k).search(text) for k in d.keywords if k.strip()):
            return d.id
    return default
