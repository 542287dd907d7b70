"""Ticket commands through the core, with fakes of X and chat."""

from __future__ import annotations

from bot.domain import ChannelId, ChatUserId, Mention, MessageId
from bot.ports import CommandContext
from handlers import delivery, ingest
from handlers.commands import COMMANDS, run_command
from tests.fakes import tweet

ASKER = ChatUserId("U0AGENT1")  # one of health's agents


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
    await delivery.deliver(b)  # marks go out through the chat outbox
    assert chat.marks[-1][1] == "closed"
    assert "already closed" in (await run_command(b, "close", ctx(root))).plain()
    assert "reopened" in (await run_command(b, "reopen #1", ctx())).plain()
    await delivery.deliver(b)
    assert chat.marks[-1][1] == "open"
    log = await b.store.run(lambda tx: [(e.actor, e.action, e.detail) for e in tx.audit_log(1)])
    assert ("U0AGENT1", "closed", "resolved by phone") in log
    assert ("U0AGENT1", "reopened", "") in log


async def test_claim_and_assign_and_list_mine(world):
    b, x, chat, _ = await opened(world, 3)
    await run_command(b, "claim 2", ctx())
    # As the Slack adapter hands a mention on: @U…
    answer = await run_command(b, "assign 3 @U0AGENT2", ctx())
    assert Mention(ChatUserId("U0AGENT2")) in answer.segments
    # ... or a name the platform knows (typed without the client's autocomplete).
    chat.people["vikram rao"] = ChatUserId("U0AGENT2")
    answer = await run_command(b, "assign 1 @Vikram Rao", ctx())
    assert Mention(ChatUserId("U0AGENT2")) in answer.segments
    mine = (await run_command(b, "list mine", ctx())).plain()
    assert "#2" in mine and "#3" not in mine and "#1" not in mine
    everything = (await run_command(b, "list all health", ctx())).plain()
    assert everything.index("#1") < everything.index("#2") < everything.index("#3")


async def test_mistakes_are_answered_and_change_nothing(world):
    b, *_ = await opened(world)
    assert "no ticket #99" in (await run_command(b, "close 99", ctx())).plain()
    assert "Which ticket?" in (await run_command(b, "close", ctx())).plain()
    assert "Unknown command 'frobnicate'" in (await run_command(b, "frobnicate", ctx())).plain()
    assert (
        "No one (or more than one person) is called 'bob'"
        in (await run_command(b, "assign 1 bob", ctx())).plain()
    )
    t = await b.store.run(lambda tx: tx.ticket(1))
    assert t is not None and t.state.value == "open" and t.assignee is None


async def test_oncall_now_and_next(world):
    b, *_ = world
    text = await run_command(b, "oncall health", ctx())
    mentions = [s.user for s in text.segments if isinstance(s, Mention)]
    assert mentions == ["U0AGENT1", "U0AGENT2"]
    assert "no rotation configured" in (await run_command(b, "oncall", ctx())).plain()


async def test_only_agents_and_supervisors_change_a_ticket(world):
    """An intern in another channel cannot close or reassign a department's ticket; the
    refusal says so and changes nothing (SPEC section 5: the permission rule)."""
    b, x, chat, _ = await opened(world)
    intern = CommandContext("slack", ChannelId("C0RANDOM"), ChatUserId("U0INTERN"))
    for text in ("close 1 spam", "claim 1", "assign 1 U0INTERN", "reopen 1"):
        answer = (await run_command(b, text, intern)).plain()
        assert "Only Health's agents and the supervisors" in answer, text
    ticket, log = await b.store.run(lambda tx: (tx.ticket(1), [e.action for e in tx.audit_log(1)]))
    assert ticket is not None and ticket.state.value == "open" and ticket.assignee is None
    assert log == ["created"]
    assert "status" not in [c for c in COMMANDS if COMMANDS[c].changes]  # reading is for all

    lead = CommandContext("slack", ChannelId("C0RANDOM"), ChatUserId("U0LEAD"))
    b.config = b.config.model_copy(update={"supervisors": [ChatUserId("U0LEAD")]})
    assert "closed" in (await run_command(b, "close 1", lead)).plain()


async def test_on_matrix_the_power_level_decides_who_changes_a_ticket(world):
    b, x, chat, _ = await opened(world)
    b.config.departments[0].agents.clear()  # any member with enough power
    low = CommandContext("slack", ChannelId("C0HEALTH"), ChatUserId("@guest:hs"), power_level=0)
    assert "Only Health's agents" in (await run_command(b, "close 1", low)).plain()
    high = CommandContext("slack", ChannelId("C0HEALTH"), ChatUserId("@mod:hs"), power_level=50)
    assert "closed" in (await run_command(b, "close 1", high)).plain()
