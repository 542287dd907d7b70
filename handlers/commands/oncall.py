"""Who is on call: `oncall [dept]`."""

from __future__ import annotations

from datetime import datetime

from bot.domain import Mention, Rich, Text
from bot.rotation import current_and_next
from handlers.commands import Args, CommandError, command
from handlers.context import Bridge


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
