"""`retract`: a ticket's last public reply taken back from X (SPEC section 5).

The command records the retraction (one per reply: a database constraint) and returns;
delivery then deletes each tweet of the chain, last part first, recording each as it
goes, and tells the thread once (a compare-and-set, and the outbox's unique key). A
post X no longer has counts as deleted, so a crash between X deleting a tweet and the
bot recording it costs one harmless extra request, never a second retraction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.domain import ACTOR_X, Audit, ChatUserId, Mention, Outgoing, Quote, Rich, Text
from bot.outbox import ReplyState, RetractState, retracted_key
from bot.ports import PendingRetraction, RateLimited, TweetRefused, UnitOfWork
from handlers.context import Bridge

log = logging.getLogger("seva." + __name__)

BACKOFF = timedelta(seconds=5)
MAX_BACKOFF = timedelta(minutes=10)


def ask_retract(tx: UnitOfWork, ticket: int, by: ChatUserId) -> str:
    """Records `by`'s request to retract the ticket's last public reply; what to answer."""
    reply_id = tx.last_public_reply(ticket)
    info = tx.reply(reply_id) if reply_id is not None else None
    if info is None:
        return f"Ticket #{ticket} has no public reply to retract."
    if info.state == ReplyState.PENDING:
        return (
            f"Ticket #{ticket}'s last reply is still being tweeted: retract it once this "
            "thread shows its link."
        )
    if tx.add_retraction(info.id, ticket, by) is None:
        return f"Ticket #{ticket}'s last reply was retracted already."
    count = len(info.tweet_ids)
    tx.audit(ticket, by, Audit.RETRACTED, f"requested: reply {info.id}, {count} tweet(s)")
    log.info("reply.retract_requested ticket=%d reply=%d by=%s", ticket, info.id, by)
    tweets = "its tweet" if count == 1 else f"its {count} tweets"
    return (
        f"Deleting ticket #{ticket}'s last reply ({tweets}) from X; this thread will say "
        "when it is gone."
    )


async def deliver_retractions(b: Bridge) -> int:
    """Deletes the tweets of every retraction due; how many retractions finished."""
    due = await b.store.run(lambda tx: tx.due_retractions())
    done = 0
    for retraction in due:
        done += await _retract(b, retraction)
    return done


async def _retract(b: Bridge, r: PendingRetraction) -> int:
    parts = await b.store.run(lambda tx: tx.undeleted_parts(r.reply))
    for part, tweet_id in parts:
        try:
            await b.sink.delete(tweet_id)
        except TweetRefused as e:
            if await b.store.run(_finish, r, e.reason):
                log.warning("reply.retract_refused ticket=%d reason=%s", r.ticket, e.reason)
                b.kick()
            return 0
        except RateLimited as e:
            await b.store.run(_retry, r.id, e.until)
            return 0
        except Exception as e:
            # The delete may have happened: asking again is harmless (gone = deleted).
            log.warning("reply.retract_failed ticket=%d error=%s", r.ticket, type(e).__name__)
            wait = min(BACKOFF * 2 ** min(r.attempts, 8), MAX_BACKOFF)
            await b.store.run(_retry, r.id, b.clock.now() + wait)
            return 0
        await b.store.run(_part_deleted, part)
    if not await b.store.run(_finish, r, None):
        return 0  # another instance finished it
    log.info("reply.retracted ticket=%d reply=%d", r.ticket, r.reply)
    b.kick()
    return 1


def _retry(tx: UnitOfWork, retraction: int, not_before: datetime) -> None:
    tx.retraction_retry(retraction, not_before)


def _part_deleted(tx: UnitOfWork, part: int) -> None:
    tx.part_deleted(part)


def _finish(tx: UnitOfWork, r: PendingRetraction, refused: str | None) -> bool:
    """Done (or X refused), recorded once with its audit entry and the thread's message;
    False when another instance got there first."""
    state = RetractState.FAILED if refused else RetractState.DONE
    if not tx.finish_retraction(r.id, state, refused):
        return False
    ticket = tx.ticket(r.ticket)
    info = tx.reply(r.reply)
    assert ticket is not None and info is not None
    deleted = tx.deleted_tweets(r.reply)
    if refused is None:
        tx.finish_reply(r.reply, ReplyState.RETRACTED)
        tx.audit(r.ticket, ACTOR_X, Audit.RETRACTED, "deleted " + ", ".join(deleted))
        count = "its tweet" if len(deleted) == 1 else f"all {len(deleted)} of its tweets"
        body = Rich.of(
            Text("Retracted: ", bold=True),
            Text(f"ticket #{ticket.number}'s reply was deleted from X ({count}), as "),
            Mention(r.requested_by),
            Text(" asked. It read:\n"),
            Quote(info.text),
        )
    else:
        tx.audit(r.ticket, ACTOR_X, Audit.REFUSED, f"retract: {refused}")
        gone = f" {len(deleted)} of its tweets were deleted first." if deleted else ""
        body = Rich.of(
            Text("X refused to delete the reply, so it is still public: ", bold=True),
            Text(refused.rstrip(".") + "." + gone),
        )
    tx.enqueue(
        Outgoing(
            key=retracted_key(r.reply),
            channel=ticket.channel,
            body=body,
            ticket=ticket.number,
        ),
        ticket.platform,
        True,
    )
    return True
