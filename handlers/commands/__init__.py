"""Commands: one grammar for Slack's `/ticket …` and Matrix's `!ticket …`.

Each command owns its name, usage and help text in one place (`@command`), so `help`
is generated. A group of commands is one module of this package, registered below.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from bot.config import Department
from bot.domain import ChatUserId, MessageId, Rich, Text, Ticket
from bot.permissions import may_change
from bot.ports import CommandContext, Count, Standing, UnitOfWork
from handlers.access import command_standings
from handlers.context import Bridge

log = logging.getLogger("seva." + __name__)


class CommandError(Exception):
    """A mistake in how a command was written: answered to the asker, changes nothing."""


@dataclass(frozen=True)
class Args:
    words: list[str]
    ctx: CommandContext
    text: str = ""  # the arguments as typed, line breaks and all (`save NAME text`)
    # The asker's standing in each department (by id), found before a command that
    # changes something runs: `require_may_change` decides on it.
    standings: Mapping[str, Standing] = field(default_factory=dict)


Run = Callable[[Bridge, Args], Awaitable[Rich]]


@dataclass(frozen=True)
class Command:
    name: str
    usage: str
    help: str
    run: Run
    changes: bool = False  # changes a ticket or saved answers: see `require_may_change`


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, help: str, *, changes: bool = False) -> Callable[[Run], Run]:
    """Registers a command; a two-word name (`oncall set`) is a sub-command, tried before
    its first word alone."""

    def register(fn: Run) -> Run:
        COMMANDS[name] = Command(name, usage, help, fn, changes)
        return fn

    return register


class NotAllowed(CommandError):
    """The asker may not change this department's tickets: answered privately, nothing
    changes."""


def require_may_change(b: Bridge, args: Args, dept: Department) -> None:
    """Every command registered with `changes=True` calls this before it changes
    anything, once it knows the department concerned."""
    ctx = args.ctx
    standing = args.standings.get(dept.id) or Standing(member=False, external=ctx.external)
    if not may_change(b.config, dept, ctx.user, standing):
        log.info("command.refused user=%s department=%s", ctx.user, dept.id)
        if standing.external:
            raise NotAllowed("People from another workspace cannot change tickets here.")
        raise NotAllowed(
            f"Only {dept.name}'s agents and the supervisors can do that, so nothing changed."
        )


async def run_command(b: Bridge, text: str, ctx: CommandContext) -> Rich:
    words = text.split()
    if not words:
        return help_text()
    name = words[0].casefold()
    taken = 1
    if len(words) > 1 and f"{name} {words[1].casefold()}" in COMMANDS:  # `oncall set …`
        name, taken = f"{name} {words[1].casefold()}", 2
    cmd = COMMANDS.get(name)
    if cmd is None:
        return Rich.of(Text(f"Unknown command {name!r}.\n")) + help_text()
    b.metrics.count(Count.COMMANDS, label=cmd.name)
    standings = await command_standings(b, ctx) if cmd.changes else {}
    try:
        return await cmd.run(b, Args(words[taken:], ctx, _typed(text, taken), standings))
    except NotAllowed as e:
        return Rich.of(Text(str(e)))
    except CommandError as e:
        return Rich.of(Text(f"{e}\nUsage: {cmd.usage}"))


def _typed(text: str, skip: int) -> str:
    """The text after the first `skip` words, as typed (line breaks kept)."""
    rest = text.strip()
    for _ in range(skip):
        rest = rest[len(rest.split(maxsplit=1)[0]) :].lstrip()
    return rest


def help_text() -> Rich:
    lines = [f"{c.usage} — {c.help}" for c in COMMANDS.values()]
    return Rich.of(
        Text("Ticket commands (in a ticket's thread the number may be left out):\n"),
        Text("\n".join(lines)),
    )


# --- arguments every group may take

_NUMBER = re.compile(r"^#?(\d{1,12})$")
_MATRIX_USER = re.compile(r"^@[^:\s]+:\S+$")


async def take_ticket(b: Bridge, args: Args) -> Ticket:
    """The ticket named first in the arguments, else the thread's own."""
    if args.words and (m := _NUMBER.match(args.words[0])):
        args.words.pop(0)
        number = int(m.group(1))
        ticket = await b.store.run(lambda tx: tx.ticket(number))
        if ticket is None:
            raise CommandError(f"There is no ticket #{m.group(1)}.")
        return ticket
    ctx = args.ctx
    if ctx.thread_root is not None:
        root = ctx.thread_root
        ticket = await b.store.run(_thread_ticket, ctx, root)
        if ticket is not None:
            return ticket
    raise CommandError("Which ticket? Give its number.")


def _thread_ticket(tx: UnitOfWork, ctx: CommandContext, root: MessageId) -> Ticket | None:
    """The ticket of this thread, also when `move` took it elsewhere since."""
    ticket = tx.ticket_of_thread(ctx.platform, ctx.channel, root)
    if ticket is None and (left := tx.moved_from(ctx.platform, ctx.channel, root)) is not None:
        ticket = left.ticket
    return ticket


def user_arg(word: str) -> ChatUserId:
    if _MATRIX_USER.match(word):
        return ChatUserId(word)
    if m := re.fullmatch(r"@?([UW][A-Z0-9]{2,})", word):  # Slack ids, as the adapter hands them
        return ChatUserId(m.group(1))
    raise CommandError(f"{word!r} is not a user: mention them (@name).")


# The groups, each a module of this package, in the order `help` lists them: a new
# group is a new module and one line here.
from handlers.commands import tickets  # noqa: E402, F401, I001
from handlers.commands import oncall  # noqa: E402, F401
from handlers.commands import answers  # noqa: E402, F401
from handlers.commands import move  # noqa: E402, F401
from handlers.commands import stats  # noqa: E402, F401
from handlers.commands import retract  # noqa: E402, F401


@command("help", "help", "this list")
async def help_(b: Bridge, args: Args) -> Rich:
    return help_text()
