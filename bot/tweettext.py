"""Tweet length by X's weighted rules, and splitting a long reply into a numbered chain.

Pure: no I/O. The counting itself is `twitter_text.parse_tweet` (the official rules:
NFC, Indic scripts weigh 1, CJK and emoji 2, every URL 23), one whitespace-separated
run at a time; the fast path below only skips it for text it provably agrees on,
because `parse_tweet` costs about a millisecond, and runs it would read in quadratic
time are weighed by an upper bound (`_heavy`), so no reply ever stalls the bot.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from twitter_text import extract_urls_with_indices, parse_tweet

MAX_WEIGHT = 280
URL_WEIGHT = 23

_LIGHT_MAX = 4351  # code points 0..4351 weigh 1 (Latin, Devanagari, Tamil, ...)
_WORDS = re.compile(r"(\s+)")
_ZWJ = "\u200d"
_MAX_CLUSTER = 16  # longer "clusters" (stacked marks) may be cut, or they could never fit
_RUNS = re.compile(r"\S+|\s+")
_HOST_DOTS = 8  # more dots in one run than any real host name has
_HOST_CHARS = 253  # DNS's limit on a host name
_LONGEST_RUN = 500  # characters without a space: a longer link is rare in a reply
# What twitter_text's URL pattern may take for a host name: anything but whitespace and
# ASCII punctuation other than "-", "." and "_" (a generous reading, on purpose).
_HOSTLIKE = re.compile(r"[^\s!-,/:-@\[-^`{-~]+")


def weighted_length(text: str) -> int:
    """The length X counts against the 280 limit (for a run of text twitter_text cannot
    read in time, an upper bound: see `_heavy`).

    URLs, emoji and NFC never span whitespace, so the count is a sum over the runs of
    text and of whitespace; each run is weighed once (remembered), which keeps
    splitting a long reply linear in its length.
    """
    if "." not in text and all(ord(c) <= _LIGHT_MAX for c in text):
        # No dot: no URL; all code points weigh 1 and none is an emoji or invalid.
        normalized = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
        return len(normalized)
    return sum(_run_weight(run) for run in _RUNS.findall(text.replace("\r\n", "\n")))


@functools.lru_cache(maxsize=4096)
def _run_weight(run: str) -> int:
    if run.isspace():
        return sum(1 if _light(ord(c)) else 2 for c in run)
    if "." not in run and all(ord(c) <= _LIGHT_MAX for c in run):
        return len(unicodedata.normalize("NFC", run))
    if _heavy(run):
        return _upper_bound(run)
    return int(parse_tweet(run).weightedLength)


def _heavy(token: str) -> bool:
    """A run twitter_text's URL pattern would read in quadratic time (3,000 characters
    of dotted labels take ten seconds, during which nothing else runs). A host name
    has a few dots and at most 253 characters, and a real link is rarely longer than
    `_LONGEST_RUN`, so such a run is weighed by a bound instead."""
    if len(token) > _LONGEST_RUN:
        return True
    return any(
        label.count(".") > _HOST_DOTS or (len(label) > _HOST_CHARS and "." in label)
        for label in _HOSTLIKE.findall(token)
    )


def _upper_bound(token: str) -> int:
    """At least what X counts for a whitespace-free run: every code point at its full
    weight (X counts an emoji sequence as one), plus 22 for each dot, since each URL X
    might see holds a dot and counts 23 however short it is."""
    normalized = unicodedata.normalize("NFC", token)
    weight = sum(1 if _light(ord(c)) else 2 for c in normalized)
    return weight + (URL_WEIGHT - 1) * normalized.count(".")


def _light(cp: int) -> bool:
    """twitter_text's v3 ranges of code points that weigh 1 (the rest weigh 2)."""
    return cp <= _LIGHT_MAX or 8192 <= cp <= 8205 or 8208 <= cp <= 8223 or 8242 <= cp <= 8247


def fits(text: str, limit: int = MAX_WEIGHT) -> bool:
    """Whether `text` can go out as one tweet (non-empty and within `limit`)."""
    return 0 < weighted_length(text) <= limit


def split_reply(text: str, limit: int = MAX_WEIGHT, *, ref: str | None = None) -> list[str]:
    """Splits a reply at word boundaries into parts numbered " (1/3)", each within `limit`.

    A text that fits comes back unchanged as the only part. URLs are never cut; a
    single word too long for a part is cut between characters (never inside an
    emoji sequence or a combining mark). Remembered: a handler can split a long reply
    on a worker thread first, so the transaction that queues it only looks it up.

    With `ref` (a ticket's `#42`), every part carries it: " (ref #42)" on a single
    tweet, " (ref #42, 1/3)" in a chain. X refuses a text the account has tweeted
    before, so one answer sent to many citizens must differ in every tweet, and a
    reference number is what a help desk's reply naturally carries.
    """
    return list(_split(text, limit, ref))


@functools.lru_cache(maxsize=256)
def _split(text: str, limit: int, ref: str | None = None) -> tuple[str, ...]:
    label = f"ref {ref}" if ref else ""
    if weighted_length(text + (f" ({label})" if label else "")) <= limit:
        return (f"{text} ({label})" if label else text,)
    prefix = f"{label}, " if label else ""
    digits = 1
    while True:
        widest = 10**digits - 1
        reserve = f" ({prefix}{widest}/{widest})"
        if limit - weighted_length(reserve) < URL_WEIGHT + 1:
            raise ValueError(f"limit {limit} leaves no room for a numbered part")
        chunks = _pack(_words(text), limit, reserve)
        if len(chunks) <= widest:
            break
        digits += 1
    total = len(chunks)
    return tuple(f"{chunk} ({prefix}{i}/{total})" for i, chunk in enumerate(chunks, 1))


@dataclass(slots=True)
class _Word:
    gap: str  # the whitespace before it in the original text ("" for a hard-split piece)
    text: str
    weight: int


def _words(text: str) -> list[_Word]:
    pieces = _WORDS.split(text.strip())
    words: list[_Word] = []
    gap = ""
    for i, piece in enumerate(pieces):
        if i % 2:
            gap = piece
        elif piece:
            words.append(_Word(gap, piece, weighted_length(piece)))
    return words


def _pack(words: list[_Word], limit: int, reserve: str) -> list[str]:
    """Greedy packing on additive estimates, each chunk then checked by the exact count."""
    budget = limit - weighted_length(reserve)
    chunks: list[str] = []
    queue = list(reversed(words))  # a stack: pop() takes the next word
    while queue:
        taken: list[_Word] = []
        estimate = 0
        while queue:
            word = queue[-1]
            cost = word.weight + (weighted_length(word.gap) if taken else 0)
            if taken and estimate + cost > budget:
                break
            taken.append(queue.pop())
            estimate += cost
        # The estimate is exact across whitespace in practice; verify and back off anyway.
        while len(taken) > 1 and weighted_length(_join(taken) + reserve) > limit:
            queue.append(taken.pop())
        if weighted_length(_join(taken) + reserve) > limit:
            pieces = _hard_split(taken[0].text, limit, reserve)
            first, rest = pieces[0], pieces[1:]
            chunks.append(first)
            for piece in reversed(rest):
                queue.append(_Word("", piece, weighted_length(piece)))
            continue
        chunks.append(_join(taken))
    return chunks


def _join(words: list[_Word]) -> str:
    return words[0].text + "".join(w.gap + w.text for w in words[1:])


def _hard_split(word: str, limit: int, reserve: str) -> list[str]:
    """Cuts one over-long word into pieces that fit, keeping URLs and clusters whole."""
    budget = limit - weighted_length(reserve)
    # A heavy word's pieces are weighed by the same bound as the word, so that the
    # estimates add up to what the check below finds.
    weigh = _upper_bound if _heavy(word) else weighted_length
    atoms = [(a, weigh(a)) for a in _atoms(word)]
    pieces: list[str] = []
    i = 0
    while i < len(atoms):
        j, estimate = i, 0
        while j < len(atoms) and (j == i or estimate + atoms[j][1] <= budget):
            estimate += atoms[j][1]
            j += 1
        while j - i > 1 and weighted_length("".join(a for a, _ in atoms[i:j]) + reserve) > limit:
            j -= 1
        pieces.append("".join(a for a, _ in atoms[i:j]))
        i = j
    return pieces


def _atoms(word: str) -> list[str]:
    """URLs whole, everything else as (approximate) grapheme clusters (a heavy run has
    no URL to keep whole, and reading it for one would take seconds)."""
    if _heavy(word):
        return _clusters(word)
    atoms: list[str] = []
    pos = 0
    for url in extract_urls_with_indices(word):
        start, end = url["indices"]
        atoms.extend(_clusters(word[pos:start]))
        atoms.append(word[start:end])
        pos = end
    atoms.extend(_clusters(word[pos:]))
    return atoms


def _clusters(text: str) -> list[str]:
    """Splits text where a cut cannot break a character: not before a combining mark,
    a variation selector, a skin tone or an emoji tag, not around a zero-width joiner
    or after a virama (Indic conjuncts), and not inside a flag's pair of regional
    indicators."""
    clusters: list[str] = []
    regional_run = 0
    for ch in text:
        cp = ord(ch)
        regional = 0x1F1E6 <= cp <= 0x1F1FF
        joins = bool(clusters) and len(clusters[-1]) < _MAX_CLUSTER and _joins(clusters[-1], ch)
        if joins or (regional and regional_run % 2 == 1):
            clusters[-1] += ch
        else:
            clusters.append(ch)
        regional_run = regional_run + 1 if regional else 0
    return clusters


def _joins(previous: str, ch: str) -> bool:
    cp = ord(ch)
    last = previous[-1]
    return (
        unicodedata.category(ch) in ("Mn", "Mc", "Me")
        or ch == _ZWJ
        or last == _ZWJ
        or unicodedata.combining(last) == 9  # virama: the next consonant joins the conjunct
        or 0xFE00 <= cp <= 0xFE0F
        or 0x1F3FB <= cp <= 0x1F3FF
        or 0xE0020 <= cp <= 0xE007F
        or 0xE0100 <= cp <= 0xE01EF
    )
