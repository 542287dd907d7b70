"""`move N DEPT` through the core, with fakes of X, Slack and Matrix (SPEC section 5)."""

from __future__ import annotations

import pytest

from adapters.metrics import PrometheusMetrics
from bot.config import parse_config
from bot.domain import ChannelId, ChatMessage, ChatUserId, Link, Mention, MessageId, Outgoing
from bot.ports import CommandContext
from handlers import delivery, ingest, replies
from handlers.commands import run_command
from handlers.context import Bridge
from tests.conftest import migrated_store
from tests.fakes import FakeChat, FakeClock, FakeX, tweet

ROOM = "!police:example.org"
CONFIG = {
    "supervisors": ["U0LEAD"],
    "departments": [
        {
            "id": "health",
            "name": "Health",
            "slack_channel": "C0HEALTH",
            "keywords": ["oxygen"],
            "agents": ["U0AGENT1"],
            "oncall": {
                "members": ["U0AGENT1"],
                "shift_hours": 24,
                "starts": "2021-05-04T09:00:00+05:30",
            },
        },
        {
            "id": "transport",
            "name": "Transport",
            "slack_channel": "C0TRANSPORT",
            "keywords": ["train"],
            "agents": ["U0TRANSPORT"],
            "oncall": {
                "members": ["U0TRANSPORT"],
                "shift_hours": 24,
                "starts": "2021-05-04T09:00:00+05:30",
            },
            "escalate_to": ["U0RAIL"],
        },
        {
            "id": "police",
            "name": "Police",
            "matrix_room": ROOM,
            "keywords": ["theft"],
            "reply_mode": "confirm",
        },
    ],
    "default_department": "health",
    "triage": {"urgent": ["ambulance"]},
}


@pytest.fixture
def world(tmp_path):
    clock = FakeClock()
    store = migrated_store(f"sqlite:///{tmp_path / 'move.db'}", clock)
    x = FakeX(clock=clock)
    slack = FakeChat(clock=clock)
    matrix = FakeChat(clock=clock, name="matrix", private_responses=False)
    b = Bridge(
        config=parse_config(CONFIG, "test.yaml"),
        store=store,
        source=x,
        sink=x,
        platforms={"slack": slack, "matrix": matrix},
        metrics=PrometheusMetrics(),
        clock=clock,
    )
    yield b, x, slack, matrix
    store.dispose()


async def asked(b, x, text: str = "@SevaHelp oxygen for the train journey?", *, deliver=True):
    x.mentions_queue.append(tweet(10 + len(x.mentions_queue), text))
    await ingest.poll(b)
    if deliver:
        await delivery.deliver(b)


def ctx(user: str, channel: str = "C0HEALTH", thread: str | None = None, **kw) -> CommandContext:
    platform = "matrix" if channel.startswith("!") else "slack"
    root = MessageId(thread) if thread else None
    return CommandContext(platform, ChannelId(channel), ChatUserId(user), root, **kw)


def said(chat: FakeChat, channel: str, root: str, text: str, user: str, n: int = 1, **kw):
    return ChatMessage(
        chat.name,  # type: ignore[arg-type]
        ChannelId(channel),
        MessageId(f"70{n}.1"),
        ChatUserId(user),
        text,
        thread_root=MessageId(root),
        event_id=f"Ev{n}",
        **kw,
    )


async def ticket(b, number: int = 1):
    return await b.store.run(lambda tx: tx.ticket(number))


async def test_slack_to_slack_new_root_old_thread_told_and_audited(world):
    b, x, slack, _ = world
    await asked(b, x)
    old_root = slack.by_key("root:1")[0]
    answer = await run_command(b, "move 1 transport", ctx("U0AGENT1", thread=old_root))
    assert "moved to Transport" in answer.plain()
    await delivery.deliver(b)

    new_root, post = slack.by_key("moved:1:1")
    assert post.channel == "C0TRANSPORT" and post.is_root and post.thread_root is None
    text = post.body.plain()
    assert text.startswith("Ticket #1 · Transport\nMoved here from Health by U0AGENT1")
    assert "oxygen for the train journey?" in text  # the question
    assert Link(f"https://chat.example/C0HEALTH/{old_root}", "earlier thread") in post.body.segments
    assert Mention(ChatUserId("U0TRANSPORT")) in post.body.segments  # their on-call member

    _, away = slack.by_key("moved-away:1:1")
    assert away.channel == "C0HEALTH" and away.thread_root == old_root
    assert "Moved to Transport" in away.body.plain()
    assert "no longer tweeted" in away.body.plain()

    t = await ticket(b)
    assert (t.department, t.channel, t.root, t.moves) == ("transport", "C0TRANSPORT", new_root, 1)
    log = await b.store.run(lambda tx: [(e.actor, e.action, e.detail) for e in tx.audit_log(1)])
    assert ("U0AGENT1", "moved", "health → transport") in log


async def test_old_thread_tweets_nothing_new_thread_does_and_followups_follow(world):
    b, x, slack, _ = world
    await asked(b, x)
    old_root = slack.by_key("root:1")[0]
    await run_command(b, "move 1 transport", ctx("U0AGENT1", thread=old_root))
    await delivery.deliver(b)
    new_root = slack.by_key("moved:1:1")[0]

    await replies.on_message(b, said(slack, "C0HEALTH", old_root, "Carry a form.", "U0AGENT1"))
    await delivery.deliver(b)
    assert x.posted == []
    ((told_ctx, told),) = slack.responses  # privately, in the old thread
    assert told_ctx.user == "U0AGENT1" and told_ctx.thread_root == old_root
    assert "moved to Transport" in told.plain() and "stayed internal" in told.plain()
    assert f"https://chat.example/C0TRANSPORT/{new_root}" in told.plain()

    msg = said(slack, "C0TRANSPORT", new_root, "Yes, with a form.", "U0TRANSPORT", n=2)
    await replies.on_message(b, msg)
    await delivery.deliver(b)
    assert [(text, to) for _, text, to in x.posted] == [("Yes, with a form.", "10")]
    assert slack.by_key("sent:1")[1].thread_root == new_root

    x.mentions_queue.append(tweet(30, "@SevaHelp thanks, and the return trip?", replied_to="10"))
    await ingest.poll(b)
    await delivery.deliver(b)
    follow = slack.by_key("followup:30")[1]
    assert (follow.channel, follow.thread_root) == ("C0TRANSPORT", new_root)


async def test_commands_in_the_old_thread_find_the_ticket_and_rights_follow_it(world):
    b, x, slack, _ = world
    await asked(b, x)
    old_root = slack.by_key("root:1")[0]
    refused = await run_command(b, "move 1 transport", ctx("U0TRANSPORT", "C0TRANSPORT"))
    assert "Only Health's agents" in refused.plain()
    await run_command(b, "move 1 transport", ctx("U0AGENT1", thread=old_root))
    status = await run_command(b, "status", ctx("U0AGENT1", thread=old_root))
    assert "Ticket #1 · open · Transport" in status.plain()
    back = await run_command(b, "move health", ctx("U0AGENT1", thread=old_root))
    assert "Only Transport's agents" in back.plain()  # checked where the ticket is now
    again = await run_command(b, "move 1 transport", ctx("U0LEAD", "C0TRANSPORT"))
    assert "in Transport already" in again.plain()
    bad = await run_command(b, "move 1 nowhere", ctx("U0LEAD"))
    assert "not a department" in bad.plain()
    assert (await ticket(b)).moves == 1


async def test_a_crash_between_queueing_and_landing_loses_nothing_and_doubles_nothing(world):
    b, x, slack, _ = world
    await asked(b, x)
    old_root = slack.by_key("root:1")[0]
    await run_command(b, "move 1 transport", ctx("U0AGENT1", thread=old_root))
    # The citizen writes while the new root is still on its way: it waits for the thread.
    x.mentions_queue.append(tweet(30, "@SevaHelp any news?", replied_to="10"))
    await ingest.poll(b)
    t = await ticket(b)
    assert t.channel == "C0TRANSPORT" and t.root is None  # not the new thread until it lands
    slack.fail_next = 1  # the new root lands, but its answer is lost
    await delivery.deliver(b)
    assert (await ticket(b)).root is None
    b.clock.advance(seconds=10)  # type: ignore[attr-defined]
    await delivery.deliver(b)  # looked for before being posted again: found
    assert slack.sent_keys().count("moved:1:1") == 1
    new_root = slack.by_key("moved:1:1")[0]
    assert (await ticket(b)).root == new_root
    assert slack.by_key("followup:30")[1].thread_root == new_root
    assert slack.sent_keys().count("moved-away:1:1") == 1


async def test_a_ticket_moved_before_its_root_went_out_opens_only_the_new_thread(world):
    b, x, slack, _ = world
    await asked(b, x, deliver=False)
    x.mentions_queue.append(tweet(30, "@SevaHelp hello?", replied_to="10"))
    await ingest.poll(b)
    answer = await run_command(b, "move 1 transport", ctx("U0LEAD"))
    assert "moved to Transport" in answer.plain()
    await delivery.deliver(b)
    assert slack.sent_keys() == ["moved:1:1", "followup:30"]
    post = slack.by_key("moved:1:1")[1]
    assert "earlier thread" not in post.body.plain()
    assert slack.by_key("followup:30")[1].thread_root == slack.by_key("moved:1:1")[0]


async def test_a_reply_awaiting_send_in_the_old_thread_is_cancelled(world):
    b, x, slack, matrix = world
    await asked(b, x, "@SevaHelp theft: my phone was stolen at the station")
    root = matrix.by_key("root:1")[0]
    await replies.on_message(
        b, said(matrix, ROOM, root, "File an FIR online.", "@cop:example.org", power_level=50)
    )
    await delivery.deliver(b)
    preview = matrix.by_key("preview:1")[1]
    await run_command(b, "move 1 transport", ctx("U0LEAD", "C0TRANSPORT"))
    await delivery.deliver(b)
    from tests.unit.test_core_flow import press

    await replies.on_action(b, press(preview.actions[0], "@cop:example.org"))
    await delivery.deliver(b)
    assert x.posted == []
    away = matrix.by_key("moved-away:1:1")[1].body.plain()
    assert "A reply waiting for Send was cancelled" in away
    info = await b.store.run(lambda tx: tx.reply(1))
    assert info is not None and info.state == "cancelled"


async def test_matrix_to_slack_and_back_each_thread_keeps_its_posts(world):
    b, x, slack, matrix = world
    await asked(b, x, "@SevaHelp theft at the station, need an ambulance")
    room_root = matrix.by_key("root:1")[0]
    await run_command(
        b, "move 1 transport", ctx("@cop:example.org", ROOM, room_root, power_level=50)
    )
    await delivery.deliver(b)
    moved = slack.by_key("moved:1:1")[1]
    assert moved.body.plain().startswith("Ticket #1 · Transport · URGENT")
    assert Mention(ChatUserId("U0RAIL")) in moved.body.segments  # urgent: escalate_to at once
    expected = f"https://chat.example/{ROOM}/{room_root}"
    assert Link(expected, "earlier thread") in moved.body.segments
    assert matrix.by_key("moved-away:1:1")[1].thread_root == room_root

    # In the room only someone who could have answered is told (everyone would see it).
    visitor = said(matrix, ROOM, room_root, "chat", "@visitor:example.org", power_level=0)
    await replies.on_message(b, visitor)
    await replies.on_message(
        b, said(matrix, ROOM, room_root, "Go to desk 4", "@cop:example.org", 2, power_level=50)
    )
    assert [c.user for c, _ in matrix.responses] == ["@cop:example.org"]

    slack_root = slack.by_key("moved:1:1")[0]
    await run_command(b, "move police", ctx("U0TRANSPORT", "C0TRANSPORT", slack_root))
    await delivery.deliver(b)
    back_root, back = matrix.by_key("moved:1:2")
    assert back.channel == ROOM and (await ticket(b)).root == back_root
    assert slack.by_key("moved-away:1:2")[1].thread_root == slack_root
    assert x.posted == []


async def test_a_post_queued_for_the_old_thread_after_a_concurrent_move_stays_there(world):
    """A unit of work that read the ticket before a move committed queues its post for
    the old channel: it goes to the thread the move left there, never to a thread of
    another channel."""
    b, x, slack, _ = world
    await asked(b, x)
    old_root = slack.by_key("root:1")[0]
    await run_command(b, "move 1 transport", ctx("U0AGENT1", thread=old_root))
    late = Outgoing("late:1", ChannelId("C0HEALTH"), ingest.Rich.of("late"), ticket=1)
    await b.store.run(lambda tx: tx.enqueue(late, "slack", True))
    await delivery.deliver(b)
    assert slack.by_key("late:1")[1].thread_root == old_root
