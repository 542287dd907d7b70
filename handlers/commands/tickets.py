"""Ticket commands: status, list, claim, assign, close, reopen."""

from __future__ import annotations

from bot.domain import (
    Audit,
    ChatUserId,
    Link,
    Mention,
    Rich,
    Segment,
    Text,
    Ticket,
    TicketState,
)
from bot.figures import span
from bot.outbox import ThreadMark
from bot.ports import UnitOfWork
from handlers.commands import (
    Args,
    CommandError,
    command,
    require_may_change,
    take_ticket,
    user_arg,
)
from handlers.context import Bridge, queue_mark


def _who(user: ChatUserId | None) -> Segment:
    return Mention(user) if user else Text("nobody")


@command("status", "status N", "state, department, assignee, age, first response and link")
async def status(b: Bridge, args: Args) -> Rich:
    t = await take_ticket(b, args)
    dept = b.department(t.department)
    now = b.clock.now()
    first = span(t.first_response_at - t.created_at) if t.first_response_at else "none yet"
    if t.state is TicketState.CLOSED and t.closed_at is not None:
        first += f" · resolved in {span(t.closed_at - t.created_at)}"
    return Rich.of(
        Text(f"Ticket #{t.number}", bold=True),
        Text(f" · {t.state.value}"),
        *_urgent_mark(t),
        Text(f" · {dept.name}\nAssignee: "),
        _who(t.assignee),
        Text(f"\nAge: {span(now - t.created_at)} · first response: {first}\n"),
        Text(f"From @{t.author_username}: " if t.author_username else "From (name removed): "),
        Link(t.url, "open on X"),
    )


@command(
    "list", "list [open|mine|all] [dept]", "up to 20 tickets, urgent open ones first, then oldest"
)
async def list_(b: Bridge, args: Args) -> Rich:
    scope = "open"
    dept: str | None = None
    for word in args.words:
        w = word.casefold()
        if w in ("open", "mine", "all"):
            scope = w
        elif b.config.department(w) is not None:
            dept = w
        else:
            raise CommandError(f"{word!r} is neither open/mine/all nor a department.")
    assignee = args.ctx.user if scope == "mine" else None
    tickets = await b.store.run(
        lambda tx: tx.tickets(open_only=scope != "all", assignee=assignee, department=dept)
    )
    if not tickets:
        return Rich.of(Text("No tickets."))
    now = b.clock.now()
    out = Rich.of(Text(f"{len(tickets)} ticket(s), urgent open first, then oldest first:"))
    for t in tickets:
        out += Rich.of(
            Text(f"\n#{t.number} · {t.state.value}"),
            *_urgent_mark(t),
            Text(f" · {t.department} · {span(now - t.created_at)} · "),
            _who(t.assignee),
            Text(" · "),
            Text(_snippet(t.text)),
        )
    return out


def _urgent_mark(t: Ticket) -> tuple[Segment, ...]:
    return (Text(" · "), Text("URGENT", bold=True)) if t.urgent else ()


def _snippet(text: str, n: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


@command("claim", "claim N", "make yourself the assignee", changes=True)
async def claim(b: Bridge, args: Args) -> Rich:
    t = await take_ticket(b, args)
    require_may_change(b, args, b.department(t.department))
    await b.store.run(_assign, t, args.ctx.user, args.ctx.user)
    b.kick()
    return Rich.of(Text(f"You now have ticket #{t.number}."))


@command("assign", "assign N @user", "set the assignee", changes=True)
async def assign(b: Bridge, args: Args) -> Rich:
    t = await take_ticket(b, args)
    require_may_change(b, args, b.department(t.department))
    if not args.words:
        raise CommandError("Whom to assign it to?")
    user = await _person(b, args)
    await b.store.run(_assign, t, user, args.ctx.user)
    b.kick()
    return Rich.of(Text(f"Ticket #{t.number} assigned to "), Mention(user), Text("."))


async def _person(b: Bridge, args: Args) -> ChatUserId:
    """A mention or user id, else whoever the platform knows by that name."""
    if len(args.words) == 1:
        try:
            return user_arg(args.words[0])
        except CommandError:
            pass
    name = " ".join(args.words)
    platform = b.platform(args.ctx.platform)
    found = await platform.find_user(name) if platform is not None else None
    if found is None:
        raise CommandError(f"No one (or more than one person) is called {name!r}: mention them.")
    return found


@command("close", "close N [reason]", "close the ticket", changes=True)
async def close(b: Bridge, args: Args) -> Rich:
    t = await take_ticket(b, args)
    require_may_change(b, args, b.department(t.department))
    if t.state is TicketState.CLOSED:
        return Rich.of(Text(f"Ticket #{t.number} is already closed."))
    reason = " ".join(args.words)
    await b.store.run(_set_state, t, TicketState.CLOSED, args.ctx.user, reason)
    b.kick()
    return Rich.of(Text(f"Ticket #{t.number} closed" + (f": {reason}" if reason else ".")))


@command("reopen", "reopen N", "open a closed ticket again", changes=True)
async def reopen(b: Bridge, args: Args) -> Rich:
    t = await take_ticket(b, args)
    require_may_change(b, args, b.department(t.department))
    if t.state is TicketState.OPEN:
        return Rich.of(Text(f"Ticket #{t.number} is already open."))
    await b.store.run(_set_state, t, TicketState.OPEN, args.ctx.user)
    b.kick()
    return Rich.of(Text(f"Ticket #{t.number} reopened."))


def _assign(tx: UnitOfWork, ticket: Ticket, assignee: ChatUserId, actor: ChatUserId) -> None:
    tx.set_assignee(ticket.number, assignee)
    tx.audit(ticket.number, actor, Audit.ASSIGNED, assignee)
    queue_mark(tx, ticket, ThreadMark.CLAIMED)


def _set_state(
    tx: UnitOfWork, ticket: Ticket, state: TicketState, actor: ChatUserId, reason: str = ""
) -> None:
    closed = state is TicketState.CLOSED
    tx.set_state(ticket.number, state)
    tx.audit(ticket.number, actor, Audit.CLOSED if closed else Audit.REOPENED, reason)
    queue_mark(tx, ticket, ThreadMark.CLOSED if closed else ThreadMark.OPEN)
