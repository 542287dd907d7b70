"""Common questions answered once (SPEC section 5): `similar`, the saved answers (`save`,
`answers`, `forget`, `answer`) and `reuse`.

`answer` and `reuse` tweet through `handlers.replies.queue_reply` like any reply (the
reply mode, chains and holds apply), each reply of theirs carrying its ticket's number
so that X never sees the same text twice, and at most one of each origin per ticket.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass

import regex

from bot.config import Department
from bot.domain import (
    Audit,
    ChatUserId,
    Mention,
    Quote,
    Rich,
    SavedAnswer,
    Text,
    Ticket,
    TicketState,
)
from bot.ports import CommandContext, Conflict, UnitOfWork
from bot.routing import normalise
from bot.similarity import terms
from handlers.commands import Args, CommandError, command, require_may_change, take_ticket
from handlers.context import Bridge
from handlers.replies import QueuedReply, ReplySource, queue_reply
from handlers.similar import answer_start, find_similar

log = logging.getLogger("seva." + __name__)

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
        if other is None:
            continue
        if other.first_response_at is None and other.state is not TicketState.OPEN:
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


# --- saved answers

_NAME = regex.compile(r"[\p{L}\p{M}\p{N}_-]{1,40}")
SHOWN = 80  # characters of an answer a list shows
_REST = regex.compile(r"\s*\S+\s+(.*)", regex.DOTALL)


def _name(word: str) -> str:
    if not _NAME.fullmatch(word):
        raise CommandError(
            f"{word!r} cannot name an answer: use letters, digits, - and _ (40 at most)."
        )
    return normalise(word)


def _after_first_word(typed: str) -> str:
    """The text after the first word, as typed (line breaks kept)."""
    m = _REST.match(typed)
    return m.group(1).strip() if m else ""


async def _department_here(b: Bridge, args: Args) -> tuple[Department, Ticket | None]:
    """What a saved-answer command is about: a thread's ticket and its department, else
    the department whose channel or room this is."""
    ctx = args.ctx
    if ctx.thread_root is not None:
        root = ctx.thread_root
        ticket = await b.store.run(lambda tx: tx.ticket_of_thread(ctx.platform, ctx.channel, root))
        if ticket is not None:
            return b.department(ticket.department), ticket
    dept = _department_of_channel(b, ctx)
    if dept is None:
        raise CommandError(
            "Saved answers belong to a department: use this in its channel or room, "
            "or in a ticket's thread."
        )
    return dept, None


def _department_of_channel(b: Bridge, ctx: CommandContext) -> Department | None:
    return next(
        (
            d
            for d in b.config.departments
            if d.platform == ctx.platform and d.channel == ctx.channel
        ),
        None,
    )


class _NoPublicReply(Exception):
    pass


def _save(
    tx: UnitOfWork, dept: Department, name: str, text: str | None, ticket: int | None, user: str
) -> tuple[SavedAnswer, SavedAnswer | None]:
    if text is None:
        assert ticket is not None
        text = tx.latest_answers([ticket]).get(ticket)
        if text is None:
            raise _NoPublicReply()
    answer = SavedAnswer(dept.id, name, text, ChatUserId(user), tx.now, ticket)
    replaced = tx.save_answer(answer)
    how = "replaced" if replaced is not None else "saved"
    tx.audit(ticket, user, Audit.SAVED, f"{how} {dept.id}/{name}: {text}")
    return answer, replaced


@command(
    "save",
    "save NAME [text]",
    "keep an answer for the department under NAME; in a ticket's thread without text, "
    "that thread's last public reply",
    changes=True,
)
async def save(b: Bridge, args: Args) -> Rich:
    if not args.words:
        raise CommandError("Save it under which name?")
    name = _name(args.words[0])
    dept, ticket = await _department_here(b, args)
    require_may_change(b, args, dept)
    text = _after_first_word(args.text) or None
    if text is None and ticket is None:
        raise CommandError(
            "What should it say? Give the text, or use save NAME in a ticket's thread "
            "to keep its last public reply."
        )
    try:
        answer, replaced = await b.store.run(
            _save, dept, name, text, ticket.number if ticket else None, args.ctx.user
        )
    except _NoPublicReply:
        assert ticket is not None
        return Rich.of(Text(f"Ticket #{ticket.number} has no public reply yet: nothing saved."))
    except Conflict:
        return Rich.of(Text(f"Someone saved {name!r} at the same moment: nothing changed."))
    log.info("answer.saved department=%s name=%s by=%s", dept.id, name, args.ctx.user)
    verb = "Replaced" if replaced is not None else "Saved"
    return Rich.of(
        Text(f"{verb} “{name}” for {dept.name}:\n"),
        Quote(answer.text),
        Text(f"\nIn a ticket's thread, answer {name} tweets it as the reply."),
    )


@command("answers", "answers [dept]", "the saved answers of a department (all, outside one)")
async def answers(b: Bridge, args: Args) -> Rich:
    dept: Department | None = None
    if args.words:
        dept = b.config.department(args.words[0].casefold())
        if dept is None:
            raise CommandError(f"There is no department {args.words[0]!r}.")
    else:
        with contextlib.suppress(CommandError):
            dept, _ = await _department_here(b, args)
    wanted = dept.id if dept is not None else None
    saved = await b.store.run(lambda tx: tx.saved_answers(wanted))
    where = dept.name if dept is not None else "any department"
    if not saved:
        return Rich.of(Text(f"No saved answers for {where} yet (save NAME text keeps one)."))
    out = Rich.of(Text(f"Saved answers for {where} ({len(saved)}):", bold=True))
    for a in saved:
        owner = "" if dept is not None else f"{a.department}/"
        out += Rich.of(
            Text(f"\n{owner}{a.name}", bold=True),
            Text(f" — “{answer_start(a.text, SHOWN)}” · "),
            Mention(a.saved_by),
            Text(f", {a.saved_at:%Y-%m-%d}"),
        )
    return out


def _forget(tx: UnitOfWork, dept: Department, name: str, user: str) -> SavedAnswer | None:
    gone = tx.forget_answer(dept.id, name)
    if gone is not None:
        tx.audit(None, user, Audit.FORGOTTEN, f"{dept.id}/{name}: {gone.text}")
    return gone


@command("forget", "forget NAME", "delete a saved answer of the department", changes=True)
async def forget(b: Bridge, args: Args) -> Rich:
    if len(args.words) != 1:
        raise CommandError("Forget which saved answer? Give its name.")
    name = _name(args.words[0])
    dept, _ = await _department_here(b, args)
    require_may_change(b, args, dept)
    gone = await b.store.run(_forget, dept, name, args.ctx.user)
    if gone is None:
        return Rich.of(Text(f"{dept.name} has no saved answer “{name}”."))
    log.info("answer.forgotten department=%s name=%s by=%s", dept.id, name, args.ctx.user)
    return Rich.of(Text(f"Forgot “{name}” ({dept.name}):\n"), Quote(gone.text))


# --- tweeting an answer written before: `answer NAME`, `reuse FROM TO…`


def _queued_text(ticket: Ticket, queued: QueuedReply) -> str:
    tweets = f" as {len(queued.parts)} tweets" if len(queued.parts) > 1 else ""
    if queued.confirm:
        return f"#{ticket.number}: waits for Send in its thread{tweets}"
    return f"#{ticket.number}: tweeting{tweets}"


def _already(tx: UnitOfWork, ticket: Ticket, origin: str) -> str:
    earlier = tx.reply_of_origin(ticket.number, origin)
    state = earlier.state.value if earlier is not None else "queued"
    return f"#{ticket.number}: had it already ({state}), nothing new"


def _answer(
    tx: UnitOfWork, b: Bridge, ctx: CommandContext, ticket: Ticket, name: str
) -> str | None:
    saved = tx.saved_answer(ticket.department, name)
    if saved is None:
        return None
    origin = f"answer:{name}"
    source = ReplySource(
        ticket.platform, ticket.channel, f"{origin}#{uuid.uuid4().hex}", ctx.user, origin
    )
    queued = queue_reply(tx, b, ticket, source, saved.text)
    return _queued_text(ticket, queued) if queued else _already(tx, ticket, origin)


@command(
    "answer",
    "answer NAME [N]",
    "tweet a saved answer as the ticket's public reply (in its thread, N may be left out)",
    changes=True,
)
async def answer(b: Bridge, args: Args) -> Rich:
    if not args.words:
        raise CommandError("Which saved answer? Give its name.")
    name = _name(args.words.pop(0))
    ticket = await take_ticket(b, args)
    if args.words:
        raise CommandError(f"{' '.join(args.words)!r} is not a ticket number.")
    dept = b.department(ticket.department)
    require_may_change(b, args, dept)
    try:
        outcome = await b.store.run(_answer, b, args.ctx, ticket, name)
    except Conflict:
        outcome = f"#{ticket.number}: had it already, nothing new"
    if outcome is None:
        return Rich.of(Text(f"{dept.name} has no saved answer “{name}” (answers lists them)."))
    b.kick()
    return Rich.of(Text(f"Saved answer “{name}”, {outcome}."))


_TICKET = regex.compile(r"#?(\d{1,12})")


def _reuse(tx: UnitOfWork, b: Bridge, args: Args, source: int, targets: list[int]) -> list[str]:
    """Queues ticket `source`'s public answer as the reply to each target, in one
    transaction: every reply is queued, or (a refusal, a crash) none is."""
    answer = tx.latest_answers([source]).get(source)
    if answer is None:
        if tx.ticket(source) is None:
            raise CommandError(f"There is no ticket #{source}.")
        raise CommandError(f"Ticket #{source} has no public answer yet.")
    tickets: list[Ticket] = []
    for number in dict.fromkeys(targets):
        ticket = tx.ticket(number)
        if ticket is None:
            raise CommandError(f"There is no ticket #{number}.")
        require_may_change(b, args, b.department(ticket.department))
        tickets.append(ticket)
    origin = f"reuse:{source}"
    out = []
    for ticket in tickets:
        if ticket.number == source:
            out.append(f"#{source}: the answer comes from it")
            continue
        where = ReplySource(
            ticket.platform,
            ticket.channel,
            f"{origin}#{ticket.number}#{uuid.uuid4().hex}",
            args.ctx.user,
            origin,
        )
        queued = queue_reply(tx, b, ticket, where, answer)
        out.append(_queued_text(ticket, queued) if queued else _already(tx, ticket, origin))
    return out


@command(
    "reuse",
    "reuse FROM [TO …]",
    "tweet ticket FROM's public answer as the reply to each TO (in a thread: this ticket)",
    changes=True,
)
async def reuse(b: Bridge, args: Args) -> Rich:
    numbers = []
    for word in args.words:
        m = _TICKET.fullmatch(word)
        if m is None:
            raise CommandError(f"{word!r} is not a ticket number.")
        numbers.append(int(m.group(1)))
    if not numbers:
        raise CommandError("Reuse which ticket's answer?")
    source, targets = numbers[0], numbers[1:]
    if not targets:
        here = await take_ticket(b, Args([], args.ctx))
        targets = [here.number]
    try:
        outcome = await b.store.run(_reuse, b, args, source, targets)
    except Conflict:
        return Rich.of(
            Text("Another reuse of the same answer got there first: nothing changed; try again.")
        )
    b.kick()
    log.info("answer.reused source=%d targets=%d by=%s", source, len(targets), args.ctx.user)
    return Rich.of(
        Text(f"Ticket #{source}'s answer, each tweet with its ticket's number:\n"),
        Text("\n".join(outcome)),
    )
