"""`move N DEPT`: a misrouted ticket goes to another department's channel or room.

Exactly once across crashes: one unit of work records the move (a compare-and-set on
the ticket's move count, so a repeated or concurrent `move` changes nothing twice),
pins what was queued for the old thread to it, and queues the new root
(`moved:N:n`) and the old thread's notice (`moved-away:N:n`) in the outbox. The
ticket's thread becomes the new one only when that root lands (the store's
`set_root`, fenced on the key), so a crash between queueing and landing only delays
it: meanwhile follow-ups and confirmations wait for the new thread, and the old one
already tweets nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.config import Department
from bot.domain import (
    Audit,
    ChatMessage,
    ChatUserId,
    Link,
    Mention,
    Outgoing,
    Rich,
    Segment,
    Text,
    Ticket,
    TicketState,
)
from bot.outbox import ReplyState, moved_away_key, moved_root_key
from bot.permissions import may_answer
from bot.ports import CommandContext, Move, MovedThread, Standing, UnitOfWork
from bot.rotation import shift_at
from handlers.context import Bridge
from handlers.ingest import root_body

log = logging.getLogger("seva." + __name__)


async def move(b: Bridge, ticket: Ticket, target: Department, actor: ChatUserId) -> Rich:
    """Moves the ticket to `target` (the asker may change it: the command checked); the
    answer for the asker."""
    if target.id == ticket.department:
        return Rich.of(Text(f"Ticket #{ticket.number} is in {target.name} already."))
    if ticket.state is TicketState.CLOSED:
        return Rich.of(Text(f"Ticket #{ticket.number} is closed: reopen it first to move it."))
    earlier = await thread_link(b, ticket)  # a network call: before the transaction
    moved = await b.store.run(_move, b, ticket, target, actor, earlier)
    if moved is None:
        return Rich.of(Text(f"Ticket #{ticket.number} was just moved by someone else."))
    b.kick()
    log.info(
        "ticket.moved ticket=%d from=%s to=%s move=%d",
        ticket.number,
        ticket.department,
        target.id,
        moved.n,
    )
    where = "room" if target.platform == "matrix" else "channel"
    return Rich.of(
        Text(f"Ticket #{ticket.number} moved to {target.name}: a new thread opens in its "),
        Text(f"{where}, and replies here are no longer tweeted."),
    )


async def thread_link(b: Bridge, ticket: Ticket) -> str | None:
    """A link to the ticket's thread root, when it has one and its platform can say."""
    platform = b.platform(ticket.platform)
    if ticket.root is None or platform is None:
        return None
    try:
        return await platform.permalink(ticket.channel, ticket.root)
    except Exception as e:
        log.warning("ticket.permalink_failed ticket=%d error=%s", ticket.number, type(e).__name__)
        return None


def _move(
    tx: UnitOfWork,
    b: Bridge,
    ticket: Ticket,
    target: Department,
    actor: ChatUserId,
    earlier: str | None,
) -> Move | None:
    moved = tx.move_ticket(
        ticket.number, ticket.moves, target.id, target.platform, target.channel, actor
    )
    if moved is None:
        return None
    source = b.department(ticket.department)
    tx.audit(ticket.number, actor, Audit.MOVED, f"{source.id} → {target.id}")
    unsent = _stop_old_replies(tx, ticket.number, actor)
    now = tx.ticket(ticket.number)
    assert now is not None
    oncall = shift_at(target.oncall, tx.now).member if target.oncall else None
    origin = _origin(source, actor, earlier if moved.left is not None else None)
    tx.enqueue(
        Outgoing(
            key=moved_root_key(ticket.number, moved.n),
            channel=now.channel,
            body=root_body(now, target, oncall, origin=origin),
            ticket=ticket.number,
            tweet_id=now.tweet_id,
            is_root=True,
        ),
        now.platform,
        in_thread=False,
        new_key=True,
    )
    if moved.left is not None:
        tx.enqueue(
            Outgoing(
                key=moved_away_key(ticket.number, moved.n),
                channel=moved.left.channel,
                body=_away_body(target, actor, unsent),
                thread_root=moved.left.root,
                ticket=ticket.number,
            ),
            moved.left.platform,
            in_thread=True,
            new_key=True,
        )
    return moved


@dataclass(frozen=True, slots=True)
class _Unsent:
    cancelled: int  # replies that were awaiting Send: cancelled, nothing tweeted
    sending: int  # replies already on their way to X: they still go out


def _stop_old_replies(tx: UnitOfWork, ticket: int, actor: ChatUserId) -> _Unsent:
    """Nothing from the old thread is tweeted after the move: a reply still awaiting Send
    (a preview or a held reply) is cancelled. One already on its way to X was sent by an
    agent before the move and goes out whole (its link shows in the new thread)."""
    cancelled = sending = 0
    for reply in tx.unsent_replies(ticket):
        if reply.state is ReplyState.CONFIRM and tx.cancel_reply(reply.id):
            tx.audit(ticket, actor, Audit.REPLY, "cancelled: the ticket moved")
            cancelled += 1
        elif reply.state is ReplyState.PENDING:
            sending += 1
    return _Unsent(cancelled, sending)


def _origin(source: Department, actor: ChatUserId, earlier: str | None) -> tuple[Segment, ...]:
    """The new root's line saying where the ticket comes from, who moved it, and a link
    to the thread it left."""
    out: list[Segment] = [Text(f"Moved here from {source.name} by "), Mention(actor)]
    if earlier:
        out += [Text(" · "), Link(earlier, "earlier thread")]
    return tuple(out)


def _away_body(target: Department, actor: ChatUserId, unsent: _Unsent) -> Rich:
    where = "room" if target.platform == "matrix" else "channel"
    body = Rich.of(
        Text(f"Moved to {target.name}", bold=True),
        Text(" by "),
        Mention(actor),
        Text(
            f". The ticket continues in a new thread in that {where}, where follow-ups from "
            "X arrive too; replies in this thread are no longer tweeted."
        ),
    )
    if unsent.cancelled:
        body += Rich.of(Text(" A reply waiting for Send was cancelled: nothing was tweeted."))
    if unsent.sending:
        body += Rich.of(
            Text(" A reply already on its way to X still goes out; its link shows there.")
        )
    return body


# --- a message in a thread its ticket left


async def tell_moved(b: Bridge, msg: ChatMessage, left: MovedThread) -> None:
    """Says that nothing from this thread is tweeted any more, and where the ticket is:
    privately on Slack; on Matrix, where everyone would see it, only to those whose
    message would otherwise have been tweeted."""
    platform = b.platform(msg.platform)
    if platform is None:
        return
    was = b.department(left.department)
    # Posted in the thread, so in the department's old channel: a member there.
    here = Standing(member=True, power_level=msg.power_level, external=msg.external)
    if not platform.private_responses and not may_answer(b.config, was, msg.sender, here):
        return
    ticket = left.ticket
    now = b.department(ticket.department)
    note = Rich.of(
        Text(f"Ticket #{ticket.number} was moved to {now.name}, so this thread is no longer "),
        Text("tweeted and your message stayed internal. Answer in its new thread"),
    )
    link = await thread_link(b, ticket)
    note += Rich.of(Text(": "), Link(link, link)) if link else Rich.of(Text("."))
    ctx = CommandContext(msg.platform, msg.channel, msg.sender, msg.thread_root)
    try:
        await platform.respond(ctx, note)
    except Exception as e:
        log.warning("reply.notice_failed error=%s", type(e).__name__)
