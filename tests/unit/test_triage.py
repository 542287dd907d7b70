"""Triage through the core: ignored accounts, urgent tickets (SPEC section 5)."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from bot.config import parse_config
from bot.domain import ChannelId, ChatUserId, Mention, MessageId
from bot.ports import CommandContext
from handlers import delivery, escalation, ingest
from handlers.commands import run_command
from handlers.context import Bridge
from tests.fakes import T0, tweet
from tests.unit.conftest import CONFIG

TRIAGED = copy.deepcopy(CONFIG)
TRIAGED["triage"] = {"urgent": ["ambulance", "एम्बुलेंस", "no oxygen"], "ignore": ["@Spam_Bot"]}


@pytest.fixture
def world(world):
    """The unit tests' world (conftest.py), with the triage settings."""
    world[0].config = parse_config(TRIAGED, "test.yaml")
    return world


def metric(b: Bridge, line: str) -> float:
    """The value of one sample of /metrics, 0 when it is absent."""
    text = b.metrics.render().decode()  # type: ignore[attr-defined]
    for row in text.splitlines():
        if row.startswith(line + " "):
            return float(row.rsplit(" ", 1)[1])
    return 0.0


async def test_ignored_accounts_make_no_ticket_and_no_followup_but_are_counted(world):
    b, x, chat, _ = world
    x.mentions_queue = [
        tweet(10, "@SevaHelp oxygen needed"),
        tweet(11, "@SevaHelp buy followers now", author="spam_bot", author_id="66"),
        tweet(12, "@SevaHelp me too", author="SPAM_BOT", author_id="66", replied_to="10"),
    ]
    assert await ingest.poll(b) == 1
    await delivery.deliver(b)
    assert chat.sent_keys() == ["root:1"]  # no ticket, no follow-up in #1's thread
    assert await b.store.get(ingest.CURSOR) == "12"  # read past, never read again
    assert metric(b, "seva_ignored_mentions_total") == 2
    assert await ingest.poll(b) == 0
    assert metric(b, "seva_ignored_mentions_total") == 2


def slack_ctx(user: str = "U0AGENT1", thread: str | None = None) -> CommandContext:
    return CommandContext(
        "slack", ChannelId("C0HEALTH"), ChatUserId(user), MessageId(thread) if thread else None
    )


async def test_urgent_root_says_so_and_pings_escalate_to_with_the_oncall_member(world):
    b, x, chat, _ = world
    x.mentions_queue = [
        tweet(10, "@SevaHelp oxygen cylinder refill?"),
        tweet(11, "@SevaHelp एम्बुलेंस नहीं आई, father collapsed", author="ravi"),
        tweet(12, "@SevaHelp train late #Railways"),
    ]
    await ingest.poll(b)
    await delivery.deliver(b)
    calm = chat.by_key("root:1")[1].body
    urgent = chat.by_key("root:2")[1].body
    assert "URGENT" not in calm.plain() and Mention(ChatUserId("U0LEAD")) not in calm.segments
    assert "matched: oxygen" in calm.plain()
    first_line = urgent.plain().splitlines()[0]
    assert first_line == "Ticket #2 · Health · URGENT (एम्बुलेंस)"
    assert Mention(ChatUserId("U0AGENT1")) in urgent.segments  # on call
    assert Mention(ChatUserId("U0LEAD")) in urgent.segments  # escalate_to, at once
    assert "matched" not in urgent.plain()  # nothing matched: the default department
    assert "matched: #railways" in chat.by_key("root:3")[1].body.plain()
    assert metric(b, 'seva_urgent_tickets_total{department="health"}') == 1
    tickets = await b.store.run(lambda tx: [tx.ticket(n) for n in (1, 2)])
    assert [t.urgent for t in tickets] == [False, True]


async def test_urgent_escalates_after_its_own_limit_and_the_rest_after_theirs(world):
    b, x, chat, clock = world
    x.mentions_queue = [
        tweet(10, "@SevaHelp oxygen refill?", created_at=T0),
        tweet(11, "@SevaHelp need an AMBULANCE now", created_at=T0),
    ]
    await ingest.poll(b)
    await delivery.deliver(b)
    clock.advance(minutes=4)
    assert await escalation.escalate(b) == 0
    clock.advance(minutes=1)
    assert await escalation.escalate(b) == 1
    await delivery.deliver(b)
    body = chat.by_key("escalate:2")[1].body.plain()
    assert "urgent ticket #2 has had no public reply for 5 minutes" in body
    clock.advance(minutes=24)
    assert await escalation.escalate(b) == 0
    clock.advance(minutes=1)
    assert await escalation.escalate(b) == 1
    await delivery.deliver(b)
    assert "ticket #1 has had no public reply for 30 minutes" in (
        chat.by_key("escalate:1")[1].body.plain()
    )


async def test_list_shows_urgent_open_tickets_first(world):
    b, x, chat, clock = world
    x.mentions_queue = [
        tweet(10, "@SevaHelp oxygen?", created_at=T0),
        tweet(11, "@SevaHelp hospital beds?", created_at=T0 + timedelta(minutes=1)),
        tweet(12, "@SevaHelp ambulance please", created_at=T0 + timedelta(minutes=2)),
    ]
    await ingest.poll(b)
    await delivery.deliver(b)
    await run_command(b, "close 1", slack_ctx())
    open_ = (await run_command(b, "list", slack_ctx())).plain().splitlines()
    assert [line.split(" · ")[0] for line in open_[1:]] == ["#3", "#2"]
    assert "#3 · open · URGENT · health" in open_[1]
    every = (await run_command(b, "list all", slack_ctx())).plain().splitlines()
    assert [line.split(" · ")[0] for line in every[1:]] == ["#3", "#2", "#1"]
    assert "URGENT" in (await run_command(b, "status 3", slack_ctx())).plain()


async def test_a_followup_with_an_urgent_word_makes_the_ticket_urgent_once(world):
    b, x, chat, clock = world
    x.mentions_queue = [tweet(10, "@SevaHelp oxygen refill?", created_at=T0)]
    await ingest.poll(b)
    await delivery.deliver(b)
    x.mentions_queue.append(
        tweet(11, "@SevaHelp no oxygen left, he can't breathe", replied_to="10")
    )
    x.mentions_queue.append(tweet(12, "@SevaHelp please send an ambulance", replied_to="10"))
    await ingest.poll(b)
    await delivery.deliver(b)
    alarm = chat.by_key("followup:11")[1].body
    assert "Now URGENT (no oxygen)" in alarm.plain()
    assert Mention(ChatUserId("U0LEAD")) in alarm.segments
    assert Mention(ChatUserId("U0AGENT1")) in alarm.segments
    assert "URGENT" not in chat.by_key("followup:12")[1].body.plain()  # said once
    log = await b.store.run(lambda tx: [(e.actor, e.action, e.detail) for e in tx.audit_log(1)])
    assert ("x", "urgent", "no oxygen") in log
    assert metric(b, 'seva_urgent_tickets_total{department="health"}') == 1
    clock.advance(minutes=5)
    assert await escalation.escalate(b) == 1  # on the urgent limit from now on
