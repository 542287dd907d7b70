"""Which department a query goes to, and whether it is urgent, in any of India's scripts.

Pure: no I/O. Python's `re` ends a `\\w` word at the first vowel sign (`#भारतीयरेल` reads as
`#भ`), so everything here uses the `regex` module's Unicode properties instead: a word is a
run of letters, combining marks and digits (`\\p{L}\\p{M}\\p{N}`) in every script, and every
comparison is made between `normalise`d forms of the text, the keywords and the hashtags.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import regex
from twitter_text import extract_urls_with_indices

from bot.domain import DepartmentId


class Routable(Protocol):
    """What routing reads of a department (`bot.config.Department`); the config imports this
    module to check hashtags, so this module names no config class."""

    @property
    def id(self) -> DepartmentId: ...
    @property
    def keywords(self) -> Sequence[str]: ...
    @property
    def hashtags(self) -> Sequence[str]: ...


class TriageRules(Protocol):
    """What triage reads of the configuration (`bot.config.Triage`)."""

    @property
    def urgent(self) -> Sequence[str]: ...
    @property
    def ignore(self) -> Sequence[str]: ...


# --- Normalisation

_JOINERS = dict.fromkeys(map(ord, "\u200c\u200d"))  # ZWNJ, ZWJ


def normalise(text: str) -> str:
    """The form in which text, keywords and hashtags are compared: NFC, case-folded, no joiners.

    NFC makes the precomposed and the decomposed spelling of a letter equal. For the
    composition exclusions (`ड़` U+095C, `য়` U+09DF, ...) it does so by always decomposing
    them, so both spellings end up as base letter + nukta. Case folding can leave text that
    is no longer NFC, hence the second pass. ZWJ and ZWNJ only choose how a conjunct is
    drawn, and keyboards insert them inconsistently, so they never decide a match.
    """
    folded = unicodedata.normalize("NFC", text).casefold().translate(_JOINERS)
    return unicodedata.normalize("NFC", folded)


# --- Hashtags, as X reads them
#
# The rules follow twitter-text (github.com/twitter/twitter-text: js/src/regexp/validHashtag.js,
# hashtagAlphaNumeric.js, hashtagSpecialChars.js, hashtagBoundary.js, extractHashtagsWithIndices.js;
# cases in conformance/extract.yml): after `#` or the full-width `＃`, a run of letters,
# combining marks, decimal digits, `_`, ZWNJ/ZWJ and a few script-specific signs, holding at
# least one letter or mark (`#123` is no tag). The sign must not follow a letter, mark, digit
# or `&` (a variation selector is allowed: it ends an emoji), nor start the keycap `#️⃣`; a tag
# directly followed by another hash sign or by `://` is dropped, and so is one inside a URL.

# Besides letters, marks and digits, a tag may hold these signs (hashtagSpecialChars.js):
_TAG_SIGNS = (
    "_\u200c\u200d"  # underscore, ZWNJ, ZWJ
    "\ua67e"  # Cyrillic kavyka
    "\u05be\u05f3\u05f4"  # Hebrew maqaf, geresh, gershayim
    "\uff5e\u301c"  # full-width tilde, wave dash
    "\u309b\u309c\u30a0\u30fb\u3003"  # Japanese sound marks, double hyphen, middle dot, ditto
    "\u0f0b\u0f0c"  # Tibetan tsheg
    "\u00b7"  # middle dot
)
_TAG_CHAR = rf"[\p{{L}}\p{{M}}\p{{Nd}}{regex.escape(_TAG_SIGNS)}]"
_HASHTAG = regex.compile(
    rf"(?:(?<=[\ufe0e\ufe0f])|(?<!{_TAG_CHAR}|&))[#＃](?![\ufe0f\u20e3])({_TAG_CHAR}++)(?![#＃]|://)"
)
_TAG_BODY = regex.compile(rf"{_TAG_CHAR}+")
_LETTER_OR_MARK = regex.compile(r"[\p{L}\p{M}]")


def extract_hashtags(text: str) -> list[str]:
    """The hashtags X would find in text, as written and without `#`, in order.

    For text that comes without X's own `entities.hashtags`: follow-ups read from a
    conversation, the sandbox.
    """
    return [tag for _, _, tag in hashtag_spans(text)]


def hashtag_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, tag) of each hashtag, `#` included in the span (code points, as X's
    `entities.hashtags` give them: the X stand-in builds its entities with this)."""
    found = [
        (m.start(), m.end(), m.group(1))
        for m in _HASHTAG.finditer(text)
        if _LETTER_OR_MARK.search(m.group(1))
    ]
    if found and "." in text:  # a URL needs a dot; skip the costly URL scan otherwise
        urls = [u["indices"] for u in extract_urls_with_indices(text)]
        found = [f for f in found if not any(f[0] < end and start < f[1] for start, end in urls)]
    return found


def is_hashtag(tag: str) -> bool:
    """Whether X reads `#tag` as exactly this one tag (for checking the configuration)."""
    return _TAG_BODY.fullmatch(tag) is not None and _LETTER_OR_MARK.search(tag) is not None


# --- Whole words

_WORD_CHAR = r"[\p{L}\p{M}\p{N}]"


@lru_cache(maxsize=4096)
def _word_pattern(word: str) -> tuple[str, regex.Pattern[str]] | None:
    """(first token, pattern) for a normalised keyword; None for a blank one.

    The first token is a cheap substring test that rules most keywords out before the
    regular expression runs. A combining mark on either side means the keyword is only part
    of a word (`ट्रेन` in `ट्रेनिंग`, `कर` in `करें`); the words of a phrase may be separated
    by any whitespace.
    """
    tokens = word.split()
    if not tokens:
        return None
    body = r"\s+".join(regex.escape(t) for t in tokens)
    return tokens[0], regex.compile(rf"(?<!{_WORD_CHAR}){body}(?!{_WORD_CHAR})")


@lru_cache(maxsize=8192)
def _normalised_entry(entry: str) -> str:
    """`normalise` for configured words and tags, which recur on every query."""
    return normalise(entry)


def _unique(items: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(as written, normalised) for each entry, skipping repeats that normalise alike."""
    seen: set[str] = set()
    for item in items:
        norm = _normalised_entry(item)
        if norm not in seen:
            seen.add(norm)
            yield item, norm


def _found(normalised_text: str, words: Iterable[str]) -> tuple[str, ...]:
    out = []
    for word, norm in _unique(words):
        compiled = _word_pattern(norm)
        if compiled is None:
            continue
        first, pattern = compiled
        if first in normalised_text and pattern.search(normalised_text):
            out.append(word)
    return tuple(out)


def find_words(text: str, words: Iterable[str]) -> tuple[str, ...]:
    """The words or phrases that occur in text as whole words, each as written in `words`."""
    return _found(normalise(text), words)


# --- Routing


@dataclass(frozen=True, slots=True)
class Routing:
    """Where a query goes, and why: `matched` lists the hashtags (`#railways`) and keywords
    as the configuration writes them, so a misrouted ticket shows what misled it."""

    department: DepartmentId
    matched: tuple[str, ...] = ()


def route(
    text: str,
    departments: Sequence[Routable],
    default: str,
    hashtags: Iterable[str] | None = None,
) -> Routing:
    """The department with the most matching hashtags and keywords; ties go to the one
    listed first, and a query that matches none goes to `default`.

    `hashtags` are X's own `entities.hashtags` when the API sent them; without them the
    tags are read from the text by twitter-text's rules.
    """
    tags = extract_hashtags(text) if hashtags is None else hashtags
    normalised_tags = {normalise(t.lstrip("#＃")) for t in tags}
    normalised_text = normalise(text)
    best: Routing | None = None
    for dept in departments:
        matched = tuple(f"#{h}" for h, norm in _unique(dept.hashtags) if norm in normalised_tags)
        matched += _found(normalised_text, dept.keywords)
        if matched and (best is None or len(matched) > len(best.matched)):
            best = Routing(dept.id, matched)
    return best if best is not None else Routing(DepartmentId(default))


# --- Triage


def urgent_words(text: str, triage: TriageRules) -> tuple[str, ...]:
    """The `triage.urgent` words or phrases in a query, as configured; any at all means urgent."""
    return find_words(text, triage.urgent)


def is_ignored(username: str, triage: TriageRules) -> bool:
    """Whether mentions from this X account make no ticket: `triage.ignore` names it in any
    case, with or without `@`."""
    name = username.removeprefix("@").casefold()
    return any(entry.removeprefix("@").casefold() == name for entry in triage.ignore)
