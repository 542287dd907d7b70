"""X's query language, the part the bridge uses, for the stand-in's recent search."""

from __future__ import annotations

import re
from collections.abc import Callable

from sandbox.x.model import (
    _DIGITS,
    _HANDLE,
    _HASHTAG,
    _URL,
    _split_words,
    _Tweet,
)
from sandbox.x.state import XState

_QUERY_TOKEN = re.compile(r'-?\(|\)|-?"[^"]*"|[^\s()"]+')
_OPERATOR = re.compile(r"([a-z_]+):(.+)")
Match = Callable[[_Tweet], bool]


def _compile_query(query: str, state: XState) -> Match:
    """X's query language, the part the bridge uses: terms (ANDed), "phrases", OR,
    parentheses, -negation, #hashtag, @user, from:, to:, is:retweet|reply|quote,
    has:links|mentions|hashtags, conversation_id:."""
    if query.count('"') % 2:
        raise ValueError("unbalanced quotes")
    tokens = _QUERY_TOKEN.findall(query)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def parse_or() -> Match:
        alternatives = [parse_and()]
        while peek() == "OR":
            take()
            alternatives.append(parse_and())
        if len(alternatives) == 1:
            return alternatives[0]
        return lambda t: any(m(t) for m in alternatives)

    def parse_and() -> Match:
        parts: list[Match] = []
        while peek() not in (None, ")", "OR"):
            parts.append(parse_unary())
        if not parts:
            raise ValueError("an operand is missing")
        if len(parts) == 1:
            return parts[0]
        return lambda t: all(m(t) for m in parts)

    def parse_unary() -> Match:
        tok = take()
        if tok in ("(", "-("):
            inner = parse_or()
            if peek() != ")":
                raise ValueError("unbalanced parentheses")
            take()
            return (lambda t: not inner(t)) if tok == "-(" else inner
        negate = tok.startswith("-") and len(tok) > 1
        atom = _atom(tok[1:] if negate else tok, state)
        return (lambda t: not atom(t)) if negate else atom

    matcher = parse_or()
    if pos != len(tokens):
        raise ValueError("unbalanced parentheses")
    return matcher


def _atom(tok: str, state: XState) -> Match:
    if tok.startswith('"'):
        return _phrase(_split_words(tok.strip('"')), tok.strip('"'))
    if tok[0] in "#＃" and len(tok) > 1:
        tag = tok[1:].casefold()
        return lambda t: tag in {h.casefold() for h in _HASHTAG.findall(t.text)}
    if tok[0] in "@＠" and len(tok) > 1:
        handle = tok[1:].lower()
        return lambda t: handle in {h.lower() for h in _HANDLE.findall(t.text)}
    op = _OPERATOR.fullmatch(tok)
    if op and op.group(1) not in ("http", "https"):
        return _operator(op.group(1), op.group(2), state)
    return _phrase(_split_words(tok), tok)


def _phrase(words: list[str], raw: str) -> Match:
    if not words:  # emoji or punctuation only: a plain substring match
        needle = raw.casefold()
        return lambda t: needle in t.text.casefold()
    n = len(words)
    if n == 1:
        word = words[0]
        return lambda t: word in t.words()
    return lambda t: any(list(t.words()[i : i + n]) == words for i in range(len(t.words()) - n + 1))


def _operator(name: str, value: str, state: XState) -> Match:
    def user_id(handle: str) -> str | None:
        handle = handle.removeprefix("@")
        return handle if _DIGITS.fullmatch(handle) else state._by_username.get(handle.lower())

    if name == "from":
        uid = user_id(value)
        return lambda t: t.author_id == uid
    if name == "to":
        uid = user_id(value)
        return lambda t: t.in_reply_to_user_id is not None and t.in_reply_to_user_id == uid
    if name == "conversation_id":
        return lambda t: str(t.conversation_id) == value
    if name == "is":
        flags: dict[str, Match] = {
            "retweet": lambda t: t.is_retweet,
            "reply": lambda t: t.in_reply_to_tweet_id is not None,
            "quote": lambda t: t.quoted_id is not None,
        }
        if value in flags:
            return flags[value]
    if name == "has":
        checks: dict[str, Match] = {
            "links": lambda t: bool(_URL.search(t.text)),
            "mentions": lambda t: bool(_HANDLE.search(t.text)),
            "hashtags": lambda t: bool(_HASHTAG.search(t.text)),
        }
        if value in checks:
            return checks[value]
    raise ValueError(f"Reference to invalid operator '{name}:{value}'")
