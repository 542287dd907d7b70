"""Which earlier tickets asked the same thing as this one.

The terms are `bot.similarity.terms`; the store finds the tickets holding the rarest of
them (`UnitOfWork.search`), and the best of those are scored here on all their terms
(`bot.similarity.similarity`), so both databases suggest alike.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from bot.domain import Ticket
from bot.ports import UnitOfWork
from bot.similarity import MIN_SIMILARITY, MIN_TICKETS, idf, plan_search, similarity, terms

log = logging.getLogger("seva." + __name__)

# How many of the tickets the store ranks best are scored on all their terms.
CANDIDATES = 30


@dataclass(frozen=True, slots=True)
class Match:
    ticket: int
    score: float  # 0..1, bot.similarity.similarity


def find_similar(
    tx: UnitOfWork,
    query: Sequence[str],
    *,
    answered: bool,
    exclude: Collection[int] = (),
    limit: int = 3,
) -> list[Match]:
    """Up to `limit` tickets asking what `query` (a ticket's terms) asks, most alike first;
    only answered ones when `answered`. Tickets less alike than MIN_SIMILARITY never are."""
    if not query:
        return []
    df = tx.term_counts(query)
    n = max(tx.ticket_count(), MIN_TICKETS)
    plan = plan_search(query, df)
    if plan is None:
        return []
    weights = {t: idf(df[t], n) for t in plan.terms}
    hits = tx.search(weights, answered=answered, every=plan.every, limit=CANDIDATES + len(exclude))
    found = [(number, found_terms) for number, found_terms in hits if number not in exclude]
    unknown = {t for _, found_terms in found for t in found_terms} - df.keys()
    df = {**df, **tx.term_counts(unknown)}
    scored = sorted(
        ((similarity(query, found_terms, df, n), number) for number, found_terms in found),
        key=lambda pair: (-pair[0], -pair[1]),
    )
    return [Match(number, score) for score, number in scored if score >= MIN_SIMILARITY][:limit]


@dataclass(frozen=True, slots=True)
class Suggestion:
    """An earlier answered ticket like a new one, with the start of its public answer."""

    ticket: int
    answer: str


# One poll's first this many new tickets get suggestions (the rest of a backlog gets none;
# `similar N` still finds them), so a backlog never holds the transaction long: a lookup
# takes milliseconds (bench/similar.py).
MAX_SUGGESTED = 100
ANSWER_START = 80


def index_and_suggest(
    tx: UnitOfWork, tickets: Sequence[Ticket]
) -> dict[int, tuple[Suggestion, ...]]:
    """Looks up earlier answered tickets like each new one, then makes the new ones
    findable too: in the transaction that opens them, so a root never misses its
    suggestions and no ticket is left out of the index."""
    found: dict[int, list[Match]] = {}
    per_ticket = [(t.number, terms(t.text)) for t in tickets]
    for number, query in per_ticket[:MAX_SUGGESTED]:
        found[number] = find_similar(tx, query, answered=True)
    if len(per_ticket) > MAX_SUGGESTED:
        log.info("similar.skipped tickets=%d", len(per_ticket) - MAX_SUGGESTED)
    tx.index_tickets(per_ticket)
    answers = tx.latest_answers({m.ticket for ms in found.values() for m in ms})
    return {
        number: tuple(
            Suggestion(m.ticket, answer_start(answers[m.ticket])) for m in ms if m.ticket in answers
        )
        for number, ms in found.items()
    }


def reindex(tx: UnitOfWork, ticket: int, text: str) -> None:
    """A ticket's question changed (the citizen edited it): it is found by its new words."""
    tx.reindex_ticket(ticket, terms(text))


def answer_start(answer: str, n: int = ANSWER_START) -> str:
    """The first words of an answer, on one line."""
    flat = " ".join(answer.split())
    if len(flat) <= n:
        return flat
    cut = flat[: n - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > n // 2 else cut) + "…"
