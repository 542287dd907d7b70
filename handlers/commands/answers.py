"""Common questions answered once: `similar` (and, with them, the saved answers and
`reuse`): SPEC section 5."""

from __future__ import annotations

from dataclasses import dataclass

from bot.domain import Rich, Text, Ticket, TicketState
from bot.ports import UnitOfWork
from bot.similarity import terms
from handlers.commands import Args, CommandError, command, take_ticket
from handlers.context import Bridge
from handlers.similar import answer_start, find_similar

SIMILAR_SHOWN = 5


@dataclass(frozen=True, slots=True)
class _Alike:
    ticket: Ticket
    answer: str | None


def _alike(tx: UnitOfWork, ticket: Ticket) -> list[_Alike]:
    """Open and answered tickets like `ticket`, most alike first (a closed ticket that
    never got an answer is left out: there is nothing in it to reuse or to join)."""
    matches = find_similar(
        tx, terms(ticket.text), answered=False, exclude={ticket.number}, limit=20
    )
    answers = tx.latest_answers(m.ticket for m in matches)
    out = []
    for m in matches:
        other = tx.ticket(m.ticket)
        unanswered = other is None or other.first_response_at is None
        if other is None or (unanswered and other.state is not TicketState.OPEN):
            continue
        out.append(_Alike(other, answers.get(other.number)))
    return out[:SIMILAR_SHOWN]


@command("similar", "similar [N]", "open and answered tickets asking the same as N")
async def similar(b: Bridge, args: Args) -> Rich:
    ticket = await take_ticket(b, args)
    if args.words:
        raise CommandError(f"{' '.join(args.words)!r} is not a ticket number.")
    alike = await b.store.run(_alike, ticket)
    if not alike:
        return Rich.of(Text(f"No open or answered ticket asks what #{ticket.number} asks."))
    out = Rich.of(Text(f"Tickets like #{ticket.number}, most alike first:", bold=True))
    for a in alike:
        t = a.ticket
        state = "answered" if a.answer is not None else "waiting"
        line = f"\n#{t.number} · {t.state.value}, {state} · {t.department} · "
        if a.answer is not None:
            line += f"answer: “{answer_start(a.answer)}”"
        else:
            line += f"@{t.author_username}: “{answer_start(t.text)}”"
        out += Rich.of(Text(line))
    if any(a.answer is not None for a in alike):
        out += Rich.of(Text("\nReuse an answer here with reuse N."))
    return out
