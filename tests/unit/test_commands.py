"""Ticket commands through the core, with fakes of X and chat."""

from __future__ import annotations

from bot.domain import ChannelId, ChatUserId, Mention, MessageId
from bot.ports import CommandContext
from handlers import delivery, ingest
from handlers.commands import COMMANDS, run_command
from tests.fakes import tweet

ASKER = ChatUserId("U0AGENT2")


def ctx(thread: str | None = None) -> CommandContext:
    return CommandContext(
        "slack", ChannelId("C0HEALTH"), ASKER, MessageId(thread) if thread else None
    )


async def opened(world, n: int = 1):
    b, x, chat, clock = world
    x.mentions_queue = [tweet(10 + i, f"@SevaHelp oxygen {i}?") for i in range(n)]
    await ingest.poll(b)
    await delivery.deliver(b)
    return b, x, chat, clock


async def test_help_lists_every_command(world):
    b, *_ = world
    text = (await run_command(b, "help", ctx())).plain()
    for name in COMMANDS:
        assert COMMANDS[name].usage in text


async def test_status_shows_state_department_assignee_age_and_link(world):
    b, x, chat, clock = await opened(world)
    clock.advance(minutes=90)
    text = (await run_command(b, "status 1", ctx())).plain()
    assert "Ticket #1 · open · Health" in text
    assert "Assignee: nobody" in text
    assert "Age: 1h 31m" in text and "first response: none yet" in text
    assert "https://x.com/citizen/status/10" in text


async def test_thread_gives_the_default_ticket_and_state_changes_are_mirrored(world):
    b, x, chat, _ = await opened(world)
    root = chat.by_key("root:1")[0]
    assert "closed" in (await run_command(b, "close resolved by phone", ctx(root))).plain()
    assert chat.marks[-1][1] == "closed"
    assert "already closed" in (await run_command(b, "close", ctx(root))).plain()
    assert "reopened" in (await run_command(b, "reopen #1", ctx())).plain()
    assert chat.marks[-1][1] == "open"
    with b.store.tx() as tx:
        log = [(e.actor, e.action, e.detail) for e in tx.audit_log(1)]
    assert ("U0AGENT2", "closed", "resolved by phone") in log
    assert ("U0AGENT2", "reopened", "") in log


async def test_claim_and_assign_and_list_mine(world):
    b, x, chat, _ = await opened(world, 3)
    await run_command(b, "claim 2", ctx())
    # As the Slack adapter hands a mention on: @U…
    answer = await run_command(b, "assign 3 @U0AGENT1", ctx())
    assert Mention(ChatUserId("U0AGENT1")) in answer.segments
    mine = (await run_command(b, "list mine", ctx())).plain()
    assert "#2" in mine and "#3" not in mine and "#1" not in mine
    everything = (await run_command(b, "list all health", ctx())).plain()
    assert everything.index("#1") < everything.index("#2") < everything.index("#3")


async def test_mistakes_are_answered_and_change_nothing(world):
    b, *_ = await opened(world)
    assert "no ticket #99" in (await run_command(b, "close 99", ctx())).plain()
    assert "Which ticket?" in (await run_command(b, "close", ctx())).plain()
    assert "Unknown command 'frobnicate'" in (await run_command(b, "frobnicate", ctx())).plain()
    assert "not a user" in (await run_command(b, "assign 1 bob", ctx())).plain()
    with b.store.tx() as tx:
        t = tx.ticket(1)
        assert t is not None and t.state.value == "open" and t.assignee is None


async def test_oncall_now_and_next(world):
    b, *_ = world
    text = await run_command(b, "oncall health", ctx())
    mentions = [s.user for s in text.segments if isinstance(s, Mention)]
    assert mentions == ["U0AGENT1", "U0AGENT2"]
    assert "no rotation configured" in (await run_command(b, "oncall", ctx())).plain()
