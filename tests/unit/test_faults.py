"""Faults met by the core (SPEC section 5): each kind of failure is retried, paused or
refused as it deserves, nothing is lost or doubled, and the health says so."""

from __future__ import annotations

from datetime import timedelta

from bot.health import State
from bot.ports import CredentialsRefused, PlatformRefused, RateLimited, Unavailable
from handlers import delivery, ingest, replies
from tests.fakes import tweet
from tests.unit.test_core_flow import ask, thread_msg


async def open_tickets(b, x, n: int) -> None:
    x.mentions_queue = [tweet(100 + i, f"@SevaHelp oxygen {i}?") for i in range(n)]
    await ingest.poll(b)


async def test_a_retryable_refusal_of_a_root_is_looked_for_then_retried_never_dropped(world):
    b, x, chat, clock = world
    chat.errors = [Unavailable("slack chat.postMessage: internal_error")]
    await open_tickets(b, x, 3)
    await delivery.deliver(b)
    assert chat.sent_keys() == []  # the round ended: the platform may be in trouble
    assert b.health["slack"].state is State.RETRYING
    assert "internal_error" in str(b.health["slack"].why)
    clock.advance(seconds=2)
    await delivery.deliver(b)
    assert chat.sent_keys() == ["root:1", "root:2", "root:3"]  # in order, once each
    assert b.health["slack"].ok


async def test_refused_credentials_pause_the_platform_until_a_call_succeeds(world):
    b, x, chat, clock = world
    chat.refusing = CredentialsRefused("slack chat.postMessage: token_revoked")
    await open_tickets(b, x, 3)
    await delivery.deliver(b)
    assert chat.post_calls == 1  # one try, then nothing is sent there
    condition = b.health["slack"]
    assert condition.state is State.PAUSED and "token_revoked" in str(condition.why)
    assert condition.since == clock.now()
    await delivery.deliver(b)
    assert chat.post_calls == 1  # still paused: not asked again before its time
    clock.advance(seconds=3)
    await delivery.deliver(b)
    assert chat.post_calls == 2  # asked again (the probe), still refused
    chat.refusing = None  # the token is restored
    clock.advance(seconds=10)
    await delivery.deliver(b)
    assert chat.sent_keys() == ["root:1", "root:2", "root:3"]
    assert b.health["slack"].ok


async def test_a_refusal_no_retry_can_cure_fails_that_post_only(world):
    b, x, chat, _ = world
    chat.errors = [PlatformRefused("slack chat.postMessage: is_archived")]
    await open_tickets(b, x, 2)
    await delivery.deliver(b)
    assert chat.sent_keys() == ["root:2"]  # the next one went on
    key, _, error, _ = b.refusals["slack"]
    assert key == "root:1" and "is_archived" in error
    assert b.health["slack"].ok  # the platform works; one post was refused
    metrics = b.metrics.render().decode()  # type: ignore[attr-defined]
    assert 'seva_chat_refusals_total{platform="slack"} 1.0' in metrics


async def test_a_reaction_a_fault_refused_is_tried_again_not_lost(world):
    b, x, chat, clock = world
    await ask(b, x, "@SevaHelp oxygen?")
    await replies.on_message(b, thread_msg(chat, "root:1", "Call 1075."))
    chat.errors = [Unavailable("slack reactions.add: service_unavailable")]
    await delivery.deliver(b)
    assert x.posted and chat.marks == []
    clock.advance(seconds=2)
    await delivery.deliver(b)
    assert [state for _, state in chat.marks] == ["answered"]


async def test_refused_posting_credentials_tell_each_waiting_thread_once(world):
    b, x, chat, clock = world
    await open_tickets(b, x, 2)
    await delivery.deliver(b)
    x.credentials_refused = True
    await replies.on_message(b, thread_msg(chat, "root:1", "Call 1075.", mid="901"))
    await replies.on_message(b, thread_msg(chat, "root:2", "Call 108.", mid="902"))
    await delivery.deliver(b)
    posting = b.health[delivery.POSTING]
    assert posting.state is State.PAUSED and "posting credentials" in str(posting.why)
    for _ in range(3):  # asked again now and then; each thread is told once
        clock.advance(seconds=40)
        await delivery.deliver(b)
    told = [k for k in chat.sent_keys() if k.startswith("waiting:")]
    assert sorted(told) == ["waiting:1", "waiting:2"]
    assert x.posted == []
    x.credentials_refused = False
    clock.advance(seconds=40)
    await delivery.deliver(b)
    assert sorted(text for _, text, _ in x.posted) == ["Call 1075.", "Call 108."]
    assert {"sent:1", "sent:2"} <= set(chat.sent_keys())
    assert b.health[delivery.POSTING].ok


async def test_a_rate_limit_reset_far_ahead_is_asked_again_within_15_minutes(world):
    b, x, chat, clock = world
    await ask(b, x, "@SevaHelp oxygen?")
    x.rate_limit_next, x.rate_limit_for = 1, timedelta(days=10)
    await replies.on_message(b, thread_msg(chat, "root:1", "Call 1075."))
    await delivery.deliver(b)
    assert x.posted == []
    clock.advance(minutes=15)
    await delivery.deliver(b)
    assert [text for _, text, _ in x.posted] == ["Call 1075."]


async def test_a_mentions_rate_limit_far_ahead_is_asked_again_within_15_minutes(world):
    b, x, chat, clock = world

    async def limited(since_id):
        raise RateLimited(clock.now() + timedelta(days=10), "mentions")

    real = x.mentions
    x.mentions = limited  # type: ignore[method-assign]
    assert await ingest.poll(b) == 0
    assert b.mentions.blocked_until == clock.now() + timedelta(minutes=15)
    assert b.health["x.mentions"].state is State.RETRYING
    x.mentions = real  # type: ignore[method-assign]
    x.mentions_queue = [tweet(10, "@SevaHelp oxygen?")]
    clock.advance(minutes=15)
    assert await ingest.poll(b) == 1
    assert b.health["x.mentions"].ok
