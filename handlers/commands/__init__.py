"""Ticket commands: one grammar for Slack's `/ticket …` and Matrix's `!ticket …`.

Each command owns its name, usage and help text in one place; `help` is generated.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain import ChatUserId, Link, Mention, Rich, Segment, Text, Ticket, TicketState
from bot.ports import CommandContext
from bot.rotation import current_and_next
from handlers.context import Bridge

log = logging.getLogger("seva.commands")


class CommandError(Exception):
    """A mistake in how a command was written: answered to the asker, changes nothing."""


@dataclass(frozen=True)
class Args:
    words: list[str]
    ctx: CommandContext


Run = Callable[[Bridge, Args], Awaitable[Rich]]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    run: Run


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, help: str) -> Callable[[Run], Run]:
    def register(fn: Run) -> Run:
        COMMANDS[name] = Command(name, usage, help, fn)
        return fn

    return register


async def run_command(b: Bridge, text: str, ctx: CommandContext) -> Rich:
    words = text.split()
    if not words:
        return help_text()
    name = words[0].casefold()
    cmd = COMMANDS.get(name)
    if cmd is None:
        return Rich.of(Text(f"Unknown command {name!r}.\n")) + help_text()
    b.metrics.commands.labels(cmd.name).inc()
    try:
        return await cmd.run(b, Args(words[1:], ctx))
    except CommandError as e:
        return Rich.of(Text(f"{e}\nUsage: {cmd.usage}"))


def help_text() -> Rich:
    lines = [f"{c.usage} — {c.help}" for c in COMMANDS.values()]
    return Rich.of(
        Text("Ticket commands (in a ticket's thread the number may be left out):\n"),
        Text("\n".join(lines)),
    )


# --- argument helpers

_NUMBER = re.compile(r"^#?(\d{1,12})$")
_MATRIX_USER = re.compile(r"^@[^:\s]+:\S+$")


def _take_ticket(b: Bridge, args: Args) -> Ticket:
    """The ticket named first in the arguments, else the thread's own."""
    if args.words and (m := _NUMBER.match(args.words[0])):
        args.words.pop(0)
        with b.store.tx() as tx:
            ticket = tx.ticket(int(m.group(1)))
        if ticket is None:
            raise CommandError(f"There is no ticket #{m.group(1)}.")
        return ticket
    if args.ctx.thread_root is not None:
        with b.store.tx() as tx:
            ticket = tx.ticket_of_thread(args.ctx.platform, args.ctx.channel, args.ctx.thread_root)
        if ticket is not None:
            return ticket
    raise CommandError("Which ticket? Give its number.")


def _user(word: str) -> ChatUserId:
    if _MATRIX_USER.match(word):
        return ChatUserId(word)
    if m := re.fullmatch(r"@?([UW][A-Z0-9]{2,})", word):  # Slack ids, as the adapter hands them
        return ChatUserId(m.group(1))
    raise CommandError(f"{word!r} is not a user: mention them (@name).")


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    return f"{hours // 24}d {hours % 24}h"


def _who(user: ChatUserId | None) -> Segment:
    return Mention(user) if user else Text("nobody")


# --- the commands


@command("status", "status N", "state, department, assignee, age, first response and link")
async def status(b: Bridge, args: Args) -> Rich:
    t = _take_ticket(b, args)
    dept = b.department(t.department)
    now = b.clock.now()
    first = _age(t.first_response_at - t.created_at) if t.first_response_at else "none yet"
    return Rich.of(
        Text(f"Ticket #{t.number}", bold=True),
        Text(f" · {t.state.value} · {dept.name}\nAssignee: "),
        _who(t.assignee),
        Text(f"\nAge: {_age(now - t.created_at)} · first response: {first}\n"),
        Text(f"From @{t.author_username}: "),
        Link(t.url, "open on X"),
    )


@command("list", "list [open|mine|all] [dept]", "up to 20 tickets, oldest open first")
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
    with b.store.tx() as tx:
        tickets = tx.tickets(
            open_only=scope != "all",
            assignee=args.ctx.user if scope == "mine" else None,
            department=dept,
        )
    if not tickets:
        return Rich.of(Text("No tickets."))
    now = b.clock.now()
    out = Rich.of(Text(f"{len(tickets)} ticket(s), oldest open first:"))
    for t in tickets:
        out += Rich.of(
            Text(
                f"\n#{t.number} · {t.state.value} · {t.department} · {_age(now - t.created_at)} · "
            ),
            _who(t.assignee),
            Text(" · "),
            Text(_snippet(t.text)),
        )
    return out


def _snippet(text: str, n: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


@command("claim", "claim N", "make yourself the assignee")
async def claim(b: Bridge, args: Args) -> Rich:
    t = _take_ticket(b, args)
    with b.store.tx() as tx:
        tx.set_assignee(t.number, args.ctx.user, args.ctx.user)
    await b.mirror(t, "claimed")
    return Rich.of(Text(f"You now have ticket #{t.number}."))


@command("assign", "assign N @user", "set the assignee")
async def assign(b: Bridge, args: Args) -> Rich:
    t = _take_ticket(b, args)
    if len(args.words) != 1:
        raise CommandError("Whom to assign it to?")
    user = _user(args.words[0])
    with b.store.tx() as tx:
        tx.set_assignee(t.number, user, args.ctx.user)
    await b.mirror(t, "claimed")
    return Rich.of(Text(f"Ticket #{t.number} assigned to "), Mention(user), Text("."))


@command("close", "close N [reason]", "close the ticket")
async def close(b: Bridge, args: Args) -> Rich:
    t = _take_ticket(b, args)
    if t.state is TicketState.CLOSED:
        return Rich.of(Text(f"Ticket #{t.number} is already closed."))
    reason = " ".join(args.words)
    with b.store.tx() as tx:
        tx.set_state(t.number, TicketState.CLOSED, args.ctx.user, reason)
    await b.mirror(t, "closed")
    return Rich.of(Text(f"Ticket #{t.number} closed" + (f": {reason}" if reason else ".")))


@command("reopen", "reopen N", "open a closed ticket again")
async def reopen(b: Bridge, args: Args) -> Rich:
    t = _take_ticket(b, args)
    if t.state is TicketState.OPEN:
        return Rich.of(Text(f"Ticket #{t.number} is already open."))
    with b.store.tx() as tx:
        tx.set_state(t.number, TicketState.OPEN, args.ctx.user)
    await b.mirror(t, "open")
    return Rich.of(Text(f"Ticket #{t.number} reopened."))


@command("oncall", "oncall [dept]", "who is on call now and next")
async def oncall(b: Bridge, args: Args) -> Rich:
    depts = b.config.departments
    if args.words:
        d = b.config.department(args.words[0].casefold())
        if d is None:
            raise CommandError(f"There is no department {args.words[0]!r}.")
        depts = [d]
    now = b.clock.now()
    out = Rich()
    for i, d in enumerate(depts):
        out += Rich.of(Text("\n" if i else ""), Text(d.name, bold=True), Text(": "))
        if d.oncall is None:
            out += Rich.of(Text("no rotation configured"))
            continue
        cur, nxt = current_and_next(d.oncall, now)
        out += Rich.of(
            Mention(cur.member),
            Text(f" until {_when(cur.ends)}, then "),
            Mention(nxt.member),
        )
    return out


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M %Z").strip()


@command("help", "help", "this list")
async def help_(b: Bridge, args: Args) -> Rich:
    return help_text()
