"""Re-routing: `move N DEPT`."""

from __future__ import annotations

from bot.domain import Rich
from handlers import moves
from handlers.commands import Args, CommandError, command, require_may_change, take_ticket
from handlers.context import Bridge


@command(
    "move",
    "move N DEPT",
    "re-route to another department: a new thread in its channel or room",
    changes=True,
)
async def move(b: Bridge, args: Args) -> Rich:
    t = await take_ticket(b, args)
    require_may_change(b, args, b.department(t.department))  # where the ticket is now
    ids = ", ".join(d.id for d in b.config.departments)
    if len(args.words) != 1:
        raise CommandError(f"Move it where? One of: {ids}.")
    target = b.config.department(args.words[0].casefold())
    if target is None:
        raise CommandError(f"{args.words[0]!r} is not a department: one of {ids}.")
    return await moves.move(b, t, target, args.ctx.user)
