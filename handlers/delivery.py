"""The two outboxes: chat posts and reply tweets, each delivered exactly once.

A row is claimed (committed) before its side effect and finished after it. When
the outcome of a side effect is unknown (a crash, a timeout, a 5xx) the row is
marked `unknown`, and before it is tried again the remote is asked whether the
first try landed (`ChatPlatform.find`, `TweetSink.find_own_reply`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import datetime, timedelta
from typing import Any

from bot.domain import (
    ACTOR_X,
    Audit,
    Link,
    MessageId,
    Outgoing,
    Rich,
    Text,
    Ticket,
    TweetId,
    tweet_url,
)
from bot.outbox import (
    PartState,
    PostState,
    ReplyState,
    ThreadMark,
    refused_key,
    sent_key,
    unverified_key,
)
from bot.ports import (
    ChatPlatform,
    Count,
    PendingPart,
    PendingPost,
    PlatformRefused,
    RateLimited,
    TweetRefused,
    UnitOfWork,
)
from handlers.context import Bridge

log = logging.getLogger("seva." + __name__)

# A claim outlives any call made under it (HTTP timeouts are 10-30 s), so another
# instance only takes over work whose owner is really gone.
LEASE = timedelta(minutes=2)
BACKOFF = timedelta(seconds=5)
VERIFY_BACKOFF = timedelta(seconds=30)
MAX_VERIFY_BACKOFF = timedelta(minutes=10)
TELL_AFTER_VERIFIES = 4
REPLY_CONCURRENCY = 8


async def deliver(b: Bridge) -> None:
    """Drains both outboxes until nothing is due, in one go (tests and tools; the bot
    itself runs `run_forever`, which shares every step but the scheduling)."""
    while True:
        posted = await deliver_posts(b)
        tweeted = await deliver_replies(b)
        if not posted and not tweeted:
            return


async def run_forever(b: Bridge, idle: float = 1.0) -> None:
    """Delivery, woken by `Bridge.kick` and every `idle` seconds anyway.

    Reply tweets and chat posts run apart, and each channel in its own task, so a
    paced burst of thread roots in one channel never delays a reply or another channel.
    """
    await asyncio.gather(_replies_forever(b, idle), _posts_forever(b, idle))


async def _wait(event: asyncio.Event, idle: float) -> None:
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
    # races with the event, and the loop would then never stop.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(idle):
            await event.wait()
    event.clear()


async def _replies_forever(b: Bridge, idle: float) -> None:
    while True:
        await _wait(b.wake_replies, idle)
        try:
            while await deliver_replies(b):
                pass
        except Exception:
            log.exception("delivery.replies_failed")
            await asyncio.sleep(idle)


async def _posts_forever(b: Bridge, idle: float) -> None:
    lanes: dict[tuple[str, str], asyncio.Task[int]] = {}
    unserved: set[tuple[str, str]] = set()
    try:
        while True:
            await _wait(b.wake_posts, idle)
            try:
                for key in await b.store.run(lambda tx: tx.due_lanes()):
                    platform = b.platform(key[0])
                    if platform is None:
                        if key not in unserved:  # say it once, then leave the posts queued
                            unserved.add(key)
                            log.error("chat.platform_missing platform=%s channel=%s", *key)
                        continue
                    if key not in lanes:
                        task = asyncio.create_task(_post_lane(b, platform, key), name=key[1])
                        lanes[key] = task
                        task.add_done_callback(functools.partial(_lane_done, b, lanes, key))
            except Exception:
                log.exception("delivery.posts_failed")
                await asyncio.sleep(idle)
    finally:
        for task in lanes.values():
            task.cancel()
        await asyncio.gather(*lanes.values(), return_exceptions=True)


def _lane_done(
    b: Bridge, lanes: dict[tuple[str, str], asyncio.Task[int]], key: tuple[str, str], task: Any
) -> None:
    lanes.pop(key, None)
    if task.cancelled():
        return
    if task.exception() is not None:
        log.error("delivery.lane_failed channel=%s error=%r", key[1], task.exception())
    elif task.result():
        b.wake_posts.set()  # more may have queued in this channel meanwhile


async def recover(b: Bridge, lease: timedelta = LEASE) -> int:
    """Turns claims whose owner died into `unknown`, to be verified then retried."""
    n = await b.store.run(lambda tx: tx.expire_claims(lease))
    if n:
        log.warning("delivery.recovered count=%d", n)
        b.kick()
    return n


# --- chat posts


async def deliver_posts(b: Bridge) -> int:
    """One round over every channel with posts due (the loop above runs lanes apart)."""
    due = await b.store.run(lambda tx: tx.due_lanes())
    lanes = [(p, key) for key in due if (p := b.platform(key[0])) is not None]
    done = await asyncio.gather(*(_post_lane(b, p, key) for p, key in lanes))
    return sum(done)


async def _post_lane(b: Bridge, platform: ChatPlatform, lane: tuple[str, str]) -> int:
    """Drains one channel, oldest first, in order (the adapter paces the posts).

    Each post is claimed right before it is sent, so no claim waits in a paced queue, in
    the same commit that records the previous post as landed: one commit per post. (A
    landing not yet recorded when the process dies is found again by `find`.) A rate
    limit ends the round, leaving the rest for when the limit lifts.
    """
    n = 0
    landed: Landed | None = None

    def due(tx: UnitOfWork) -> list[PendingPost]:
        return tx.due_posts(50, platform=lane[0], channel=lane[1])

    try:
        while posts := await b.store.run(due):
            for post in posts:
                recorded, claimed = await b.store.run(_settle_and_claim, landed, post)
                n += _count(b, landed, recorded)
                landed = None
                if claimed is None:
                    continue  # another instance took it
                outcome = await _post_one(b, platform, claimed)
                if outcome == RATE_LIMITED:
                    return n
                landed = outcome if isinstance(outcome, tuple) else None
    finally:
        if landed is not None:
            settled = await b.store.run(_settle_and_claim, landed, None)
            n += _count(b, landed, settled[0])
    return n


def _settle_and_claim(
    tx: UnitOfWork, landed: Landed | None, post: PendingPost | None
) -> tuple[bool, PendingPost | None]:
    return tx.settle_and_claim(landed, post)


Landed = tuple[PendingPost, MessageId]
RATE_LIMITED = "rate limited"


def _count(b: Bridge, landed: Landed | None, recorded: bool) -> int:
    if landed is None:
        return 0
    post, message_id = landed
    if not recorded:
        log.error("chat.claim_lost key=%s message=%s", post.outgoing.key, message_id)
        return 0
    b.metrics.count(Count.CHAT_POSTS, label=post.platform)
    return 1


async def _post_one(b: Bridge, platform: ChatPlatform, post: PendingPost) -> Landed | str | None:
    """Where it landed; None when it did not; RATE_LIMITED when the channel must wait."""
    out = post.outgoing
    unknown = post.state == PostState.UNKNOWN
    try:
        found = await platform.find(out) if unknown else None
        unknown = False  # looked: whatever happens next starts from a known state
        message_id = found or await platform.post(out)
    except RateLimited as e:
        until, reason = e.until, str(e)
        await b.store.run(lambda tx: tx.post_retry(post, until, reason, unknown=unknown))
        return RATE_LIMITED
    except PlatformRefused as e:
        log.error("chat.post_refused key=%s channel=%s error=%s", out.key, out.channel, e)
        reason = str(e)
        await b.store.run(lambda tx: tx.post_failed(post, reason))
        return None
    except Exception as e:
        log.warning("chat.post_failed key=%s error=%s", out.key, type(e).__name__)
        until, reason = b.clock.now() + BACKOFF, repr(e)
        await b.store.run(lambda tx: tx.post_retry(post, until, reason, unknown=True))
        return None
    return post, message_id


# --- reply tweets


async def deliver_replies(b: Bridge) -> int:
    if _x_blocked(b):
        return 0
    due = await b.store.run(lambda tx: tx.due_parts())
    if not due:
        return 0
    gate = asyncio.Semaphore(REPLY_CONCURRENCY)

    async def one(part: PendingPart) -> int:
        async with gate:  # claim only what is about to be sent, within its lease
            if _x_blocked(b):
                return 0  # X said wait: the rest of this round waits too
            return await _send_part(b, part)

    sent = await asyncio.gather(*(one(part) for part in due))
    return sum(sent)


def _x_blocked(b: Bridge) -> bool:
    until = b.tweets_blocked_until
    return until is not None and b.clock.now() < until


async def _send_part(b: Bridge, due: PendingPart) -> int:
    part = await b.store.run(lambda tx: tx.claim_part(due))
    if part is None:
        return 0
    text = part.text
    unknown = part.state == PartState.UNKNOWN
    if b.tweets_blocked_until is not None and _x_blocked(b):
        # X said wait while this claim was being taken: hand it back untouched.
        until = b.tweets_blocked_until
        await b.store.run(lambda tx: tx.part_retry(part, until, unknown=unknown))
        return 0
    try:
        tweet_id = None
        if unknown:
            ours = await b.store.run(lambda tx: tx.reply_tweet_ids(part.ticket))
            tweet_id = await b.sink.find_own_reply(part.in_reply_to, text, exclude=ours)
            unknown = False
        if tweet_id is None:
            tweet_id = await b.sink.post(text, part.in_reply_to)
    except TweetRefused as e:
        if part.state == PartState.UNKNOWN and _duplicate(e):
            await _not_yet_visible(b, part)
            return 0
        await _refused(b, part, e.reason)
        return 0
    except RateLimited as e:
        b.tweets_blocked_until = until = e.until
        await b.store.run(lambda tx: tx.part_retry(part, until, unknown=unknown))
        log.warning("reply.rate_limited until=%s", e.until.isoformat())
        return 0
    except Exception as e:
        # The tweet may or may not exist now: look before posting again.
        log.warning("reply.post_failed part=%d error=%s", part.id, type(e).__name__)
        until = b.clock.now() + BACKOFF
        await b.store.run(lambda tx: tx.part_retry(part, until, unknown=True))
        return 0
    b.metrics.count(Count.REPLY_TWEETS)
    answered = await b.store.run(_part_sent, b, part, tweet_id)
    b.kick()
    if answered is not None:
        await b.mirror(answered, ThreadMark.ANSWERED)
    return 1


def _part_sent(tx: UnitOfWork, b: Bridge, part: PendingPart, tweet_id: TweetId) -> Ticket | None:
    """Records a part X accepted; once the last one is, the reply is done and the thread
    gets its links. The ticket when it was answered now."""
    if not tx.part_sent(part, tweet_id) or not part.is_last:
        return None
    tx.finish_reply(part.reply, ReplyState.SENT)
    tx.first_response(part.ticket)
    tx.audit(part.ticket, ACTOR_X, Audit.REPLIED, tweet_id)
    info = tx.reply(part.reply)
    ticket = tx.ticket(part.ticket)
    assert info is not None and ticket is not None
    tx.enqueue(
        Outgoing(
            key=sent_key(part.reply),
            channel=ticket.channel,
            body=_confirmation(b, info.tweet_ids),
            ticket=ticket.number,
        ),
        ticket.platform,
        True,
    )
    b.metrics.reply_latency(max(0.0, (tx.now - part.queued_at).total_seconds()))
    return ticket


def _confirmation(b: Bridge, tweet_ids: tuple[TweetId, ...]) -> Rich:
    handle = b.me.username if b.me else "i"
    links = [Link(tweet_url(handle, t), f"reply {i + 1}") for i, t in enumerate(tweet_ids)]
    if len(links) == 1:
        return Rich.of(Text("Tweeted: "), Link(links[0].url, links[0].url))
    body = Rich.of(Text(f"Tweeted as a chain of {len(links)}: "))
    for i, link in enumerate(links):
        body += Rich.of(Text(", " if i else ""), link)
    return body


def _duplicate(e: TweetRefused) -> bool:
    return "duplicate" in e.reason.casefold()


async def _not_yet_visible(b: Bridge, part: PendingPart) -> None:
    """X has this text from us already, so the post whose answer was lost did land; X's
    timeline has not shown it yet. Never post again and never call it refused: look
    again, less and less often, and tell the thread once if it takes long."""
    delay = min(VERIFY_BACKOFF * 2 ** min(part.attempts, 6), MAX_VERIFY_BACKOFF)
    tell = part.attempts >= TELL_AFTER_VERIFIES
    await b.store.run(_still_checking, part, b.clock.now() + delay, tell)
    if tell:
        b.kick()


def _still_checking(tx: UnitOfWork, part: PendingPart, not_before: datetime, tell: bool) -> None:
    tx.part_retry(part, not_before, unknown=True)
    if tell:
        ticket = tx.ticket(part.ticket)
        assert ticket is not None
        tx.enqueue(
            Outgoing(
                key=unverified_key(part.id),
                channel=ticket.channel,
                body=Rich.of(
                    Text("Still checking: ", bold=True),
                    Text(
                        "X says this reply was already tweeted (the answer to the first try "
                        "was lost), but it has not shown up on the account's timeline yet. "
                        "Nothing will be tweeted twice; this thread gets the link once found."
                    ),
                ),
                ticket=ticket.number,
            ),
            ticket.platform,
            True,
        )


async def _refused(b: Bridge, part: PendingPart, reason: str) -> None:
    if not await b.store.run(_record_refusal, part, reason):
        return  # our claim expired meanwhile: another instance owns this part now
    b.metrics.count(Count.REFUSALS)
    log.warning("reply.refused ticket=%d reason=%s", part.ticket, reason)
    b.kick()


def _record_refusal(tx: UnitOfWork, part: PendingPart, reason: str) -> bool:
    """X's refusal, recorded and told in the thread; False if our claim had expired."""
    if not tx.part_refused(part, reason):
        return False
    tx.finish_reply(part.reply, ReplyState.REFUSED, reason)
    tx.audit(part.ticket, ACTOR_X, Audit.REFUSED, reason)
    ticket = tx.ticket(part.ticket)
    assert ticket is not None
    already = f" The first {part.idx} part(s) of the chain did go out." if part.idx else ""
    tx.enqueue(
        Outgoing(
            key=refused_key(part.reply),
            channel=ticket.channel,
            body=Rich.of(
                Text("X refused this reply, so it was not tweeted: ", bold=True),
                Text(reason.rstrip(".") + "." + already),
                Text(" Nothing will be retried automatically."),
            ),
            ticket=ticket.number,
        ),
        ticket.platform,
        True,
    )
    return True
