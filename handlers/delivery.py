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
import math
import time
from datetime import datetime, timedelta
from typing import Any

from bot.domain import (
    ACTOR_X,
    Audit,
    Link,
    MessageId,
    Outgoing,
    Platform,
    Rich,
    Text,
    ThreadRef,
    Ticket,
    TweetId,
    tweet_url,
)
from bot.health import State
from bot.media import looks_like
from bot.outbox import (
    PartState,
    PostState,
    ReplyState,
    ThreadMark,
    refused_key,
    sent_key,
    unverified_key,
    waiting_key,
)
from bot.ports import (
    ChatPlatform,
    Count,
    CredentialsRefused,
    PendingPart,
    PendingPost,
    PlatformRefused,
    RateLimited,
    TweetRefused,
    Unavailable,
    UnitOfWork,
)
from handlers.context import Bridge, queue_mark
from handlers.retract import deliver_retractions

log = logging.getLogger("seva." + __name__)

# A claim outlives any call made under it (HTTP timeouts are 10-30 s), so another
# instance only takes over work whose owner is really gone.
LEASE = timedelta(minutes=2)
VERIFY_BACKOFF = timedelta(seconds=30)
MAX_VERIFY_BACKOFF = timedelta(minutes=10)
TELL_AFTER_VERIFIES = 4
REPLY_CONCURRENCY = 20  # tweets one round sends at once
REPLY_ROUNDS = 4  # rounds out at once


async def deliver(b: Bridge) -> None:
    """Drains both outboxes until nothing is due, in one go (tests and tools; the bot
    itself runs `run_forever`, which shares every step but the scheduling)."""
    while True:
        posted = await deliver_posts(b)
        tweeted = await deliver_replies(b)
        retracted = await deliver_retractions(b)
        if not posted and not tweeted and not retracted:
            return


async def run_forever(b: Bridge, idle: float = 1.0) -> None:
    """Delivery, woken by `Bridge.kick` and every `idle` seconds anyway.

    Reply tweets and chat posts run apart, and each channel in its own task, so a
    paced burst of thread roots in one channel never delays a reply or another channel.
    """
    await asyncio.gather(_replies_forever(b, idle), _posts_forever(b, idle))


async def _wait(event: asyncio.Event, idle: float) -> bool:
    """Waits for `event`, `idle` seconds at most; whether it was set."""
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
    # races with the event, and the loop would then never stop.
    woken = False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(idle):
            await event.wait()
            woken = True
    event.clear()
    return woken


async def _replies_forever(b: Bridge, idle: float) -> None:
    """Reply rounds, each woken by a kick (or every `idle` seconds), several out at once:
    answers taken while a round waits for X go out in a round of their own, not after
    it. Rounds never send a part twice: each is claimed before it is sent."""
    rounds: set[asyncio.Task[int]] = set()
    calm_until = -math.inf  # after a round failed: the next waits `idle` seconds

    def ended(task: asyncio.Task[int]) -> None:
        nonlocal calm_until
        rounds.discard(task)
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            log.error("delivery.replies_failed error=%r", error)
            calm_until = time.monotonic() + idle
        elif task.result():
            b.wake_replies.set()  # the next part of a chain may be due now

    retracting: asyncio.Task[None] | None = None
    try:
        while True:
            await _wait(b.wake_replies, idle)
            await asyncio.sleep(max(0.0, calm_until - time.monotonic()))
            if len(rounds) >= REPLY_ROUNDS:
                await asyncio.wait(rounds, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.create_task(deliver_replies(b), name="reply-round")
            rounds.add(task)
            task.add_done_callback(ended)
            if retracting is None or retracting.done():  # X's side too: what `retract` asked
                retracting = asyncio.create_task(_retract(b, idle), name="retractions")
    finally:
        if retracting is not None:
            retracting.cancel()
        for task in rounds:
            task.cancel()
        await asyncio.gather(*rounds, *([retracting] if retracting else []), return_exceptions=True)


async def _retract(b: Bridge, idle: float) -> None:
    """Deletes the tweets `retract` asked to, beside the reply rounds (its look for due
    retractions is bookkeeping, and must not hold up the next round)."""
    try:
        await deliver_retractions(b)
    except Exception:
        log.exception("delivery.retractions_failed")
        await asyncio.sleep(idle)


Lane = tuple[Platform, str]  # a channel's posts go out in order, in their own task


async def _posts_forever(b: Bridge, idle: float) -> None:
    """Runs a lane for each channel with posts due. Woken by a kick, it starts the lanes
    of the channels that just got posts (`TicketStore.queued_lanes`, no query); every
    `idle` seconds it looks at the database for the rest (posts due by time, or queued
    by another instance)."""
    lanes: dict[Lane, asyncio.Task[int]] = {}
    again: set[Lane] = set()  # got posts while its lane was running
    unserved: set[Lane] = set()
    looked = -math.inf
    try:
        while True:
            woken = await _wait(b.wake_posts, idle)
            try:
                due = set(b.store.queued_lanes())
                if not woken or time.monotonic() - looked >= idle:
                    looked = time.monotonic()
                    due |= set(await b.store.run(lambda tx: tx.due_lanes()))
                for key in due | {k for k in again if k not in lanes}:
                    again.discard(key)
                    platform = b.platform(key[0])
                    if platform is None:
                        if key not in unserved:  # say it once, then leave the posts queued
                            unserved.add(key)
                            log.error("chat.platform_missing platform=%s channel=%s", *key)
                        continue
                    if key in lanes:
                        again.add(key)  # looked at again once this round of it ends
                        continue
                    task = asyncio.create_task(_post_lane(b, platform, key), name=key[1])
                    lanes[key] = task
                    task.add_done_callback(functools.partial(_lane_done, b, lanes, again, key))
            except Exception:
                log.exception("delivery.posts_failed")
                await asyncio.sleep(idle)
    finally:
        for task in lanes.values():
            task.cancel()
        await asyncio.gather(*lanes.values(), return_exceptions=True)


def _lane_done(
    b: Bridge,
    lanes: dict[Lane, asyncio.Task[int]],
    again: set[Lane],
    key: Lane,
    task: Any,
) -> None:
    lanes.pop(key, None)
    if task.cancelled():
        return
    if task.exception() is not None:
        log.error("delivery.lane_failed channel=%s error=%r", key[1], task.exception())
    elif task.result() or key in again:
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


Landed = tuple[PendingPost, MessageId]


async def _post_lane(b: Bridge, platform: ChatPlatform, lane: tuple[str, str]) -> int:
    """Drains one channel, oldest first, in order (the adapter paces the posts).

    Posts are claimed a batch at a time (`ChatPlatform.burst`: as many as the platform
    takes without pacing, so no claim waits in a paced queue), in the same commit that
    records the previous batch as landed: a burst of thread roots costs one commit per
    batch, not per post. (A landing not yet recorded when the process dies is found
    again by `find`.) Where several instances share the database, the channel's lane
    is leased to one of them in that same commit, so its posts keep their order. A
    failure that concerns the platform rather than the post (a rate limit, a 5xx, our
    credentials refused) ends the round and closes the platform's gate until it may be
    asked again; the rest of the batch is handed back untouched.
    """
    gate = b.gate(platform.name)
    n = 0
    landed: list[Landed] = []
    untried: list[PendingPost] = []
    lease = f"lane:{lane[0]}:{lane[1]}" if b.shared else None
    try:
        while gate.open(b.clock.now()):
            await _tweets_first(b)
            recorded, claimed = await b.store.run(
                _settle_and_claim, b.instance, lease, landed, untried, lane, platform.burst
            )
            n += _count(b, landed, recorded)
            landed, untried = [], []
            if not claimed:
                break
            stopped = False
            for i, post in enumerate(claimed):
                if i:
                    await _tweets_first(b)
                outcome = await _post_one(b, platform, post)
                if isinstance(outcome, _Stop):
                    untried, stopped = claimed[i + 1 :], True
                    break
                if outcome is not None:
                    landed.append(outcome)
            if stopped:
                break
    finally:
        if landed or untried or lease:
            recorded, _ = await b.store.run(
                _settle_and_claim, b.instance, lease, landed, untried, lane, 0
            )
            n += _count(b, landed, recorded)
    return n


def _settle_and_claim(
    tx: UnitOfWork,
    instance: str,
    lease: str | None,
    landed: list[Landed],
    untried: list[PendingPost],
    lane: tuple[str, str],
    batch: int,
) -> tuple[list[bool], list[PendingPost]]:
    """Records the posts that landed, hands back those never tried, and claims the next
    `batch` due in the lane (none when 0, which also gives the lane's lease back)."""
    recorded = [tx.settle_post(post, message_id) for post, message_id in landed]
    for post in untried:
        tx.unclaim_post(post)
    if batch and (lease is None or tx.hold_lease(lease, instance, LEASE)):
        return recorded, tx.claim_posts(lane[0], lane[1], batch)
    if lease is not None:
        tx.release_lease(lease, instance)
    return recorded, []


def _count(b: Bridge, landed: list[Landed], recorded: list[bool]) -> int:
    n = 0
    for (post, message_id), ok in zip(landed, recorded, strict=True):
        if not ok:
            log.error("chat.claim_lost key=%s message=%s", post.outgoing.key, message_id)
            continue
        b.metrics.count(Count.CHAT_POSTS, label=post.platform)
        n += 1
    return n


class _Stop:
    """The platform must not be called again for now: end the lane's round."""


STOP = _Stop()
RETRY_FIRST, RETRY_CAP = timedelta(seconds=1), timedelta(minutes=1)
PROBE_FIRST, PROBE_CAP = timedelta(seconds=2), timedelta(seconds=30)


async def _post_one(b: Bridge, platform: ChatPlatform, post: PendingPost) -> Landed | _Stop | None:
    """Where it landed; None when it did not (refused for good); STOP when the platform
    must wait (the post is then queued again, to be looked for first if its outcome is
    hidden)."""
    out = post.outgoing
    name = platform.name
    gate = b.gate(name)
    unknown = post.state == PostState.UNKNOWN and out.mark is None
    try:
        if out.mark is not None:
            assert out.thread_root is not None  # a mark is due once its root exists
            thread = ThreadRef(platform.name, out.channel, out.thread_root)
            await platform.mark(thread, out.mark)
            message_id = out.thread_root
        else:
            found = await platform.find(out) if unknown else None
            unknown = False  # looked: whatever happens next starts from a known state
            message_id = found or await platform.post(out)
    except RateLimited as e:
        now = b.clock.now()
        until = e.until_capped(now)
        gate.wait_until(until)
        reason = f"rate limited until {until.isoformat()}"
        b.health.retrying(name, reason)
        await b.store.run(lambda tx: tx.post_retry(post, until, reason, unknown=unknown))
        return STOP
    except CredentialsRefused as e:
        until = gate.failed(b.clock.now(), PROBE_FIRST, PROBE_CAP)
        reason = f"credentials refused: {e}"
        b.health.paused(name, reason)
        log.error("chat.paused platform=%s error=%s ask_again=%s", name, e, until.isoformat())
        await b.store.run(lambda tx: tx.post_retry(post, until, reason, unknown=unknown))
        return STOP
    except PlatformRefused as e:
        reason = str(e)
        log.error("chat.post_refused key=%s channel=%s error=%s", out.key, out.channel, reason)
        await b.store.run(lambda tx: tx.post_failed(post, reason))
        b.metrics.count(Count.CHAT_REFUSALS, label=name)
        b.refusals[name] = (out.key, out.channel, reason, b.clock.now())
        return None
    except Exception as e:
        # A 5xx, a timeout, a transient ok:false: the post may have landed. Looked for
        # before it is sent again, once the platform may be asked again.
        why = str(e) if isinstance(e, Unavailable) else type(e).__name__
        until = gate.failed(b.clock.now(), RETRY_FIRST, RETRY_CAP)
        b.health.retrying(name, why)
        log.warning("chat.post_failed key=%s error=%s retry=%s", out.key, why, until.isoformat())
        await b.store.run(lambda tx: tx.post_retry(post, until, why, unknown=out.mark is None))
        return STOP
    gate.succeeded()
    b.health.ok(name)
    return post, message_id


# --- reply tweets

POSTING = "x.posting"  # X posting, as a gate and a part of the health


def may_claim(b: Bridge) -> bool:
    """Whether X may be asked to post now (the posting gate is open): only then is an
    answer's first tweet claimed in the unit that takes it (`hand_over`)."""
    return b.gate(POSTING).open(b.clock.now())


def hand_over(b: Bridge, parts: list[PendingPart]) -> None:
    """Parts claimed where their answers were taken (handlers/replies.py): the next
    round sends them first, without looking for them or claiming them again."""
    if parts:
        b.handed.extend(parts)
        b.wake_replies.set()


async def hand_back(b: Bridge) -> None:
    """Parts handed over for a round that never ran (the bridge is stopping) are pending
    again, never tried: the next start sends them at once, without waiting out their
    claim and looking for them on X."""
    parts, b.handed = b.handed, []
    if parts:
        now = b.clock.now()
        await b.store.run(_parts_retry, parts, now)


async def deliver_replies(b: Bridge) -> int:
    gate = b.gate(POSTING)
    handed, b.handed = b.handed, []
    if not gate.open(b.clock.now()):
        # X said wait: parts claimed for this round go back untouched (`_send_claimed`).
        await asyncio.gather(*(_send_claimed(b, part) for part in handed))
        if b.health[POSTING].state is State.PAUSED:
            await _tell_waiting(b)
        return 0
    slots = asyncio.Semaphore(REPLY_CONCURRENCY)

    async def one(part: PendingPart, claimed: bool) -> int:
        async with slots:  # claim only what is about to be sent, within its lease
            if not claimed and not gate.open(b.clock.now()):
                return 0  # X said wait: the rest of this round waits too
            return await (_send_claimed(b, part) if claimed else _send_part(b, part))

    b.tweeting += 1  # from the look for due parts on: the chat lanes wait meanwhile
    try:
        if handed:  # the rest is looked for by the round that follows a landed tweet
            sent = await asyncio.gather(*(one(part, True) for part in handed))
        else:
            due = await b.store.run_first(lambda tx: tx.due_parts())
            sent = await asyncio.gather(*(one(part, False) for part in due))
    finally:
        b.tweeting -= 1
    return sum(sent)


async def _tweets_first(b: Bridge) -> None:
    """Public replies go first: while agents' answers are being taken or tweeted, a chat
    lane waits before each post (a quarter of a second at most), so that a burst of
    answers reaches X sooner and the threads' confirmations and marks follow right
    after."""
    for _ in range(25):
        if not (b.answering or b.tweeting):
            return
        await asyncio.sleep(0.01)


async def _send_part(b: Bridge, due: PendingPart) -> int:
    part = await b.claiming.add(due, functools.partial(_claim_parts, b))
    if part is None:
        return 0
    return await _send_claimed(b, part)


async def _send_claimed(b: Bridge, part: PendingPart) -> int:
    gate = b.gate(POSTING)
    text = part.text
    unknown = part.state == PartState.UNKNOWN
    if not gate.open(b.clock.now()):
        # X said wait while this claim was being taken: hand it back untouched.
        until = gate.next_try
        assert until is not None
        await b.store.run(_part_retry, part, until, unknown)
        return 0
    try:
        tweet_id = None
        if unknown:
            ours = await b.store.run(lambda tx: tx.reply_tweet_ids(part.ticket))
            tweet_id = await b.sink.find_own_reply(part.in_reply_to, text, exclude=ours)
            unknown = False
        if tweet_id is None:
            media_ids = await _upload_media(b, part) if part.media else ()
            tweet_id = await b.sink.post(text, part.in_reply_to, media_ids)
    except _MediaRefused as e:
        await _refused(b, part, str(e), "Its image cannot go out")
        return 0
    except TweetRefused as e:
        gate.succeeded()
        b.health.ok(POSTING)
        if part.state == PartState.UNKNOWN and _duplicate(e):
            await _not_yet_visible(b, part)
            return 0
        await _refused(b, part, e.reason)
        return 0
    except RateLimited as e:
        until = e.until_capped(b.clock.now())
        gate.wait_until(until)
        b.health.retrying(POSTING, f"rate limited until {until.isoformat()}")
        await b.store.run(_part_retry, part, until, unknown)
        log.warning("reply.rate_limited until=%s", until.isoformat())
        return 0
    except CredentialsRefused as e:
        until = gate.failed(b.clock.now(), PROBE_FIRST, PROBE_CAP)
        b.health.paused(POSTING, f"X refused the posting credentials: {e}")
        log.error("reply.paused error=%s ask_again=%s", e, until.isoformat())
        await b.store.run(_part_retry, part, until, unknown)
        await _tell_waiting(b)
        return 0
    except Exception as e:
        # The tweet may or may not exist now: look before posting again.
        why = str(e) if isinstance(e, Unavailable) else type(e).__name__
        until = gate.failed(b.clock.now(), RETRY_FIRST, RETRY_CAP)
        b.health.retrying(POSTING, why)
        log.warning("reply.post_failed part=%d error=%s", part.id, why)
        await b.store.run(_part_retry, part, until, True)
        return 0
    gate.succeeded()
    b.health.ok(POSTING)
    b.metrics.count(Count.REPLY_TWEETS)
    await b.landed.add((part, tweet_id), functools.partial(_record_landed, b))
    b.kick()
    return 1


async def _claim_parts(b: Bridge, due: list[PendingPart]) -> list[PendingPart | None]:
    """Claims the parts about to be sent, those waiting together in one unit of work
    (each compare-and-set on its own: None for one another instance took first)."""
    return await b.store.run_first(lambda tx: [tx.claim_part(part) for part in due])


async def _record_landed(b: Bridge, landed: list[tuple[PendingPart, TweetId]]) -> list[None]:
    """Records parts X accepted, those that landed together in one unit of work, behind
    the units the next tweets wait on (`run`, not `run_first`): a burst of answers
    reaches X first, and its bookkeeping follows. Until it is recorded a part stays
    claimed, so a crash meanwhile leaves it to be verified on X, never sent again."""
    await b.store.run(_parts_sent, b, landed)
    return [None] * len(landed)


def _parts_sent(tx: UnitOfWork, b: Bridge, landed: list[tuple[PendingPart, TweetId]]) -> None:
    for part, tweet_id in landed:
        _part_sent(tx, b, part, tweet_id)


async def _tell_waiting(b: Bridge) -> None:
    """Says in each waiting reply's thread, once, that X refuses the bot's posting
    credentials and the reply goes out when it accepts them again."""
    if await b.store.run(_queue_waiting_notices):
        b.kick()


def _queue_waiting_notices(tx: UnitOfWork) -> int:
    told = 0
    for reply, ticket in tx.waiting_replies():
        told += tx.enqueue(
            Outgoing(
                key=waiting_key(reply),
                channel=ticket.channel,
                body=Rich.of(
                    Text("Waiting: ", bold=True),
                    Text(
                        "X is refusing the bot's posting credentials, so this reply has not "
                        "been tweeted yet. It goes out by itself once X accepts them again; "
                        "nothing needs to be sent twice."
                    ),
                ),
                ticket=ticket.number,
            ),
            ticket.platform,
            True,
        )
    return told


def _part_retry(tx: UnitOfWork, part: PendingPart, not_before: datetime, unknown: bool) -> None:
    tx.part_retry(part, not_before, unknown=unknown)


def _parts_retry(tx: UnitOfWork, parts: list[PendingPart], not_before: datetime) -> None:
    for part in parts:
        tx.part_retry(part, not_before, unknown=False)


class _MediaRefused(Exception):
    """An image the agent attached cannot go out: nothing was tweeted."""


async def _upload_media(b: Bridge, part: PendingPart) -> list[str]:
    """Each attached image fetched from the chat platform and uploaded to X, just before
    the tweet (an upload that no tweet uses expires on X's side: nothing public)."""
    ticket = await b.store.run(lambda tx: tx.ticket(part.ticket))
    platform = b.platform(ticket.platform) if ticket is not None else None
    if platform is None:
        raise _MediaRefused("the images could not be fetched: their chat platform is not running")
    ids = []
    for image in part.media:
        try:
            data = await platform.fetch_file(image)
        except PlatformRefused as e:
            raise _MediaRefused(f"the image {image.name} could not be fetched ({e})") from e
        if not looks_like(data, image.mimetype):
            raise _MediaRefused(f"{image.name} is not the {image.mimetype} image it claims to be")
        try:
            ids.append(await b.sink.upload_media(data, image.mimetype))
        except TweetRefused as e:
            raise _MediaRefused(f"X would not take the image {image.name}: {e.reason}") from e
    log.info("reply.media_uploaded part=%d count=%d", part.id, len(ids))
    return ids


def _part_sent(tx: UnitOfWork, b: Bridge, part: PendingPart, tweet_id: TweetId) -> Ticket | None:
    """Records a part X accepted; once the last one is, the reply is done and the thread
    gets its links. The ticket when it was answered now."""
    if not tx.part_sent(part, tweet_id) or not part.is_last:
        return None
    tx.finish_reply(part.reply, ReplyState.SENT)
    first = tx.first_response(part.ticket)
    tx.audit(part.ticket, ACTOR_X, Audit.REPLIED, tweet_id)
    if part.idx == 0:  # a single tweet: its id is the reply's only one
        tweet_ids: tuple[TweetId, ...] = (tweet_id,)
    else:
        info = tx.reply(part.reply)
        assert info is not None
        tweet_ids = info.tweet_ids
    ticket = tx.ticket(part.ticket)
    assert ticket is not None
    tx.enqueue(
        Outgoing(
            key=sent_key(part.reply),
            channel=ticket.channel,
            body=_confirmation(b, tweet_ids),
            ticket=ticket.number,
        ),
        ticket.platform,
        True,
    )
    queue_mark(tx, ticket, ThreadMark.ANSWERED)
    b.metrics.reply_latency(max(0.0, (tx.now - part.queued_at).total_seconds()))
    if first:  # the ticket's first public response: how long the citizen waited
        b.metrics.first_response(
            ticket.department, max(0.0, (tx.now - ticket.created_at).total_seconds())
        )
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


async def _refused(
    b: Bridge, part: PendingPart, reason: str, who: str = "X refused this reply"
) -> None:
    if not await b.store.run(_record_refusal, part, reason, who):
        return  # our claim expired meanwhile: another instance owns this part now
    b.metrics.count(Count.REFUSALS)
    log.warning("reply.refused ticket=%d reason=%s", part.ticket, reason)
    b.kick()


def _record_refusal(
    tx: UnitOfWork, part: PendingPart, reason: str, who: str = "X refused this reply"
) -> bool:
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
                Text(f"{who}, so it was not tweeted: ", bold=True),
                Text(reason.rstrip(".") + "." + already),
                Text(" Nothing will be retried automatically."),
            ),
            ticket=ticket.number,
        ),
        ticket.platform,
        True,
    )
    return True
