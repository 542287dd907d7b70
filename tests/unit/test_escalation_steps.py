"""Escalation that climbs: the second step (`escalate_again_after_minutes`,
`escalate_again_to`), each step once, through the core with fakes of X and chat."""

from __future__ import annotations

from dataclasses import replace

from bot.config import ConfigError, parse_config
from bot.domain import ChannelId, ChatMessage, ChatUserId, Mention, MessageId
from handlers import delivery, escalation, ingest, replies
from tests.fakes import tweet

HEAD = ChatUserId("U0HEAD")


def climbing(b):
    health = b.config.departments[0].model_copy(
        update={"escalate_again_after_minutes": 60, "escalate_again_to": [HEAD]}
    )
    return b.config.model_copy(update={"departments": [health, *b.config.departments[1:]]})


async def opened(world, text: str = "@SevaHelp oxygen?"):
    b, x, chat, clock = world
    b.config = climbing(b)
    x.mentions_queue.append(tweet(10 + len(x.mentions_queue), text))
    await ingest.poll(b)
    await delivery.deliver(b)


def mentioned(chat, key: str) -> list[str]:
    return [s.user for s in chat.by_key(key)[1].body.segments if isinstance(s, Mention)]


async def test_each_step_once_in_the_thread_naming_whom_it_should(world):
    b, x, chat, clock = world
    await opened(world)
    clock.advance(minutes=30)  # 31 minutes since the citizen asked
    assert await escalation.escalate(b) == 1
    assert await escalation.escalate_again(b) == 0  # not yet due
    clock.advance(minutes=28)
    assert await escalation.escalate_again(b) == 0  # 59 minutes
    clock.advance(minutes=1)
    assert await escalation.escalate_again(b) == 1
    assert await escalation.escalate_again(b) == 0
    assert await escalation.escalate_again(replace(b)) == 0  # another instance: nothing
    await delivery.deliver(b)
    first, second = chat.by_key("escalate:1")[1], chat.by_key("escalate2:1")[1]
    assert mentioned(chat, "escalate:1") == ["U0LEAD", "U0AGENT1"]  # + whoever is on call
    assert mentioned(chat, "escalate2:1") == [HEAD, "U0AGENT1"]
    assert second.body.plain().startswith(
        "Escalation, second step: ticket #1 still has no public reply after 60 minutes."
    )
    assert first.thread_root == second.thread_root == chat.by_key("root:1")[0]
    log = await b.store.run(lambda tx: [(e.actor, e.action, e.detail) for e in tx.audit_log(1)])
    assert ("seva", "escalated", "") in log and ("seva", "escalated", "second step") in log


async def test_a_public_reply_in_between_stops_the_climb(world):
    b, x, chat, clock = world
    await opened(world)
    clock.advance(minutes=31)
    assert await escalation.escalate(b) == 1
    root = chat.by_key("root:1")[0]
    await replies.on_message(
        b,
        ChatMessage(
            "slack",
            ChannelId("C0HEALTH"),
            MessageId("9.1"),
            ChatUserId("U0AGENT1"),
            "Refills at gate 2.",
            thread_root=root,
        ),
    )
    await delivery.deliver(b)
    clock.advance(hours=3)
    assert await escalation.escalate_again(b) == 0


async def test_the_second_step_follows_the_first(world):
    b, x, chat, clock = world
    await opened(world)
    clock.advance(hours=2)  # the first step never ran (say, it is switched off)
    assert await escalation.escalate_again(b) == 0
    assert await escalation.escalate(b) == 1
    assert await escalation.escalate_again(b) == 1  # long overdue: right after the first


def test_the_second_step_must_come_after_the_first():
    config = {
        "departments": [
            {
                "id": "health",
                "name": "H",
                "slack_channel": "C1",
                "escalate_after_minutes": 30,
                "escalate_again_after_minutes": 20,
                "escalate_again_to": ["U0HEAD"],
            }
        ],
        "default_department": "health",
    }
    try:
        parse_config(config, "seva.yaml")
    except ConfigError as e:
        (p,) = e.problems
    assert p == (
        "seva.yaml: departments[0].escalate_again_after_minutes: 20 is not after "
        "escalate_after_minutes (30); the second step comes after the first"
    )
