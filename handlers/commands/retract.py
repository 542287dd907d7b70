"""`retract`: take a ticket's last public reply back from X (handlers/retract.py)."""

from __future__ import annotations

from bot.domain import Rich, Text
from handlers.commands import Args, CommandError, command, require_may_change, take_ticket
from handlers.context import Bridge
from handlers.retract import ask_retract


@command(
    "retract",
    "retract",
    "in a ticket's thread: delete its last public reply (every part) from X",
    changes=True,
)
async def retract(b: Bridge, args: Args) -> Rich:
    ticket = await take_ticket(b, args)
    require_may_change(b, args, b.department(ticket.department))
    if args.words:
        raise CommandError(f"{' '.join(args.words)!r}: retract takes nothing more.")
    answer = await b.store.run(ask_retract, ticket.number, args.ctx.user)
    b.kick()
    return Rich.of(Text(answer))
