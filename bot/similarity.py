"""Which earlier tickets asked the same thing: the words a query is compared by, and how
alike two queries are. Pure: no I/O; the store indexes and looks up these terms.

A term is a word as `bot.routing.normalise` leaves it (NFC, case-folded, no joiners), cut
to its stem, so `ट्रेनें`/`ट्रेनों`, `trains`/`train` and `சென்னையில்`/`சென்னை` meet. A word
is a run of letters, combining marks and digits in any script (`\\p{L}\\p{M}\\p{N}`): the
vowel signs and viramas of Indic scripts belong to their word, never split it. Digits of
every script count as the same digits (`१२९५१` is `12951`). Left out: @-mentions (every
query names the help handle), links, one-letter words, short numbers and the everyday
words listed below, which say nothing about what is asked.

Stems come from the Snowball stemmers (`snowballstemmer`): English for Latin script
(romanised Hindi passes through it almost unchanged), Hindi for Devanagari, Tamil for
Tamil. Other scripts keep whole words.

Two queries are alike by the cosine of their term sets, each term weighted by its
inverse document frequency (how rare it is among all tickets), so a shared train
number or town weighs more than a shared "train".
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import regex
import snowballstemmer
from twitter_text import extract_urls_with_indices

from bot.routing import normalise

# How alike (0..1) a ticket must be to be suggested at all; tuned on the labelled set in
# tests/unit/corpus/similar.yaml (test_similar.py prints precision and recall).
MIN_SIMILARITY = 0.35
# A lookup searches by the rarest terms of a query only, as many as fit both limits:
# common words find thousands of tickets and rank none of them well.
MAX_SEARCH_TERMS = 8
MAX_POSTINGS = 5_000
ALL_OF = 3
MAX_TERM = 64
# Rarity is judged as if there were at least this many tickets: on a young help desk a
# word three tickets share is still a rare word, not a common one.
MIN_TICKETS = 200  # longer "words" (a pasted hash, a run of digits) are not compared

_WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+")
_MENTION = regex.compile(r"(?<![\p{L}\p{M}\p{N}_])[@＠][\p{L}\p{M}\p{N}_]+")
_NUMBER = regex.compile(r"\p{N}+")

# Everyday words: pronouns, particles, auxiliaries and courtesies, after `normalise`.
_EVERYDAY = """
    a about after again all also am an and any are as at be been but by can could did do
    does for from get got had has have he her here him his how i if in into is it its just
    kindly me my no not now of on or our out please pls plz sir madam maam hello hi dear
    she so still than that the their them then there these they this those to too up us
    very was we were what when where which who why will with would you your yet since
    ko ka ki ke hai hain ho hoga hogi kya kab kaise kyu kyun kahan me mein se par aur ya
    nahi nahin na bhi hi to tha thi the raha rahi rahe gaya gayi gaye mera meri mere hum
    main aap ye yeh wo woh koi kuch jab tak ji karu kare karen karo
    है हैं था थी थे हो होगा होगी होंगे का की के को में से पर और या भी ही तो नहीं ना न
    क्या कब कैसे क्यों कहाँ कहां कौन कोई कुछ यह ये वह वो इस उस इसे उसे मैं मेरा मेरी मेरे
    हम हमारा हमारी हमें आप आपका आपकी जी कृपया रहा रही रहे गया गई गए कर करें करे करना
    किया कि जो तक अभी जब तब एक सर आहे आहेत का किती
    என் எனக்கு இது அது ஒரு மற்றும் இல்லை ஏன் எப்போது எங்கே என்ன உள்ளது
    কি কী কেন কবে কখন আমি আমার আমাদের এই ওই হয় হবে আছে না এবং ও কোথায় করে এত কত
    లో లేదు ఏమి ఎందుకు ఎప్పుడు ఎక్కడ నా మా
"""
STOPWORDS = frozenset(normalise(w) for w in _EVERYDAY.split())

_STEMMERS = {
    "latin": snowballstemmer.stemmer("english"),
    "devanagari": snowballstemmer.stemmer("hindi"),
    "tamil": snowballstemmer.stemmer("tamil"),
}


def _script(word: str) -> str | None:
    """The script whose stemmer suits `word`, judged by its first letter."""
    cp = ord(word[0])
    if cp < 0x250:
        return "latin"
    if 0x900 <= cp <= 0x97F:
        return "devanagari"
    if 0xB80 <= cp <= 0xBFF:
        return "tamil"
    return None


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The stem of one normalised word (the word itself where no stemmer suits it)."""
    script = _script(word)
    if script is None:
        return word
    stemmed = _STEMMERS[script].stemWord(word)
    return stemmed or word


def _ascii_digits(number: str) -> str:
    return "".join(str(unicodedata.decimal(c, 0)) for c in number)


def terms(text: str) -> tuple[str, ...]:
    """The distinct terms of a query, in the order they first occur."""
    text = normalise(text)
    urls = extract_urls_with_indices(text) if "." in text else []
    for url in reversed(urls):
        start, end = url["indices"]
        text = text[:start] + " " + text[end:]
    text = _MENTION.sub(" ", text)
    out: dict[str, None] = {}
    for word in _WORD.findall(text):
        if len(word) > MAX_TERM:
            continue
        if _NUMBER.fullmatch(word):
            if len(word) >= 3:  # train numbers, PNRs, route numbers; not "2" or "10"
                out[_ascii_digits(word)] = None
            continue
        if len(word) < 2 or word in STOPWORDS:
            continue
        term = stem(word)
        if term not in STOPWORDS:
            out[term] = None
    return tuple(out)


def idf(df: int, n: int) -> float:
    """How telling a term is that `df` of `n` tickets hold (BM25's idf, never negative)."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def similarity(a: Iterable[str], b: Iterable[str], df: Mapping[str, int], n: int) -> float:
    """The idf-weighted cosine (0..1) of two term sets; a term missing from `df` counts as
    held by one ticket (a word nobody else used)."""
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    weight = {t: idf(df.get(t, 1), n) ** 2 for t in sa | sb}
    shared = sum(weight[t] for t in sa & sb)
    if not shared:
        return 0.0
    norm = math.sqrt(sum(weight[t] for t in sa) * sum(weight[t] for t in sb))
    return shared / norm


@dataclass(frozen=True, slots=True)
class Search:
    """What a lookup asks the index for: tickets holding any of `terms`, or, when
    `every`, all of them."""

    terms: tuple[str, ...]
    every: bool = False


def plan_search(query: Sequence[str], df: Mapping[str, int]) -> Search | None:
    """What a lookup searches by, so that its cost has a bound however many tickets
    there are: the query's rarest terms that some ticket holds, at most MAX_SEARCH_TERMS
    of them and MAX_POSTINGS tickets between them. When even the rarest is held by more
    than MAX_POSTINGS tickets, only tickets holding all of the rarest few are looked at;
    a query whose one known word is that common asks nothing a lookup can answer."""
    held = sorted((df[t], t) for t in set(query) if df.get(t))
    if not held:
        return None
    if held[0][0] > MAX_POSTINGS:
        if len(held) == 1:
            return None
        return Search(tuple(t for _, t in held[:ALL_OF]), every=True)
    chosen: list[str] = []
    postings = 0
    for count, term in held[:MAX_SEARCH_TERMS]:
        if chosen and postings + count > MAX_POSTINGS:
            break
        chosen.append(term)
        postings += count
    return Search(tuple(chosen))
