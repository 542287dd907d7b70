"""On-call overrides through the core: `oncall set` / `oncall clear`, and who a new
ticket's root mentions (fakes of X and chat, a real database)."""

from __future__ import annotations

from sqlalchemy import select

from adapters.db.tables import AuditRow
from bot.domain import ChannelId, ChatUserId, Mention
from bot.ports import CommandContext
from handlers import delivery, ingest
from handlers.commands import run_command
from tests.fakes import tweet

AGENT, OTHER, LEAD = ChatUserId("U0AGENT1"), ChatUserId("U0AGENT2"), ChatUserId("U0LEAD")


def ctx(user: ChatUserId = AGENT, channel: str = "C0HEALTH") -> CommandContext:
    return CommandContext("slack", ChannelId(channel), user)


def mentions(rich) -> list[str]:
    return [s.user for s in rich.segments if isinstance(s, Mention)]


async def root_mention(world, tid: int) -> str:
    b, x, chat, _ = world
    x.mentions_queue.append(tweet(tid, f"@SevaHelp oxygen {tid}?"))
    await ingest.poll(b)
    await delivery.deliver(b)
    _, root = next((m, o) for m, o in chat.posts if o.tweet_id == str(tid) and o.is_root)
    (who,) = [s.user for s in root.body.segments if isinstance(s, Mention)]
    return who


async def test_an_override_changes_who_a_new_ticket_mentions_until_it_ends(world):
    b, x, chat, clock = world
    assert await root_mention(world, 10) == AGENT  # the rotation's first shift
    answer = await run_command(b, "oncall set @U0LEAD 2", ctx())
    assert mentions(answer)[0] == LEAD and "until 2021-05-04 17:30" in answer.plain()
    assert await root_mention(world, 11) == LEAD
    now = await run_command(b, "oncall health", ctx())
    assert mentions(now) == [LEAD, AGENT, AGENT]  # on call, set by, then the rotation again
    clock.advance(hours=2)  # the override ran out: the rotation decides again
    assert await root_mention(world, 12) == AGENT
    assert await _audit_actions(b) == [
        ("U0AGENT1", "oncall_set", "health: U0LEAD until 2021-05-04T12:00:00+00:00")
    ]


async def test_without_hours_an_override_lasts_until_the_shift_ends(world):
    b, x, chat, clock = world
    answer = await run_command(b, "oncall set U0LEAD health", ctx())
    assert "until 2021-05-05 09:00 +05:30" in answer.plain()  # the shift's end, its zone
    clock.advance(hours=17, minutes=29)
    assert await root_mention(world, 10) == LEAD
    clock.advance(minutes=1)  # the next shift: U0AGENT2, not the override
    assert await root_mention(world, 11) == OTHER


async def test_clear_hands_back_to_the_rotation_and_is_audited(world):
    b, *_ = world
    await run_command(b, "oncall set @U0LEAD 8", ctx())
    cleared = await run_command(b, "oncall clear", ctx())  # in health's channel: health
    assert "Override cleared for Health" in cleared.plain() and mentions(cleared) == [AGENT]
    assert await root_mention(world, 10) == AGENT
    again = await run_command(b, "oncall clear health", ctx())
    assert "no override to clear" in again.plain()
    assert await _audit_actions(b) == [
        ("U0AGENT1", "oncall_set", "health: U0LEAD until 2021-05-04T18:00:00+00:00"),
        ("U0AGENT1", "oncall_cleared", "health: U0LEAD"),
    ]


async def test_only_the_departments_agents_and_supervisors_set_overrides(world):
    b, *_ = world
    refused = await run_command(b, "oncall set @U0VISITOR 4 health", ctx(ChatUserId("U0VISITOR")))
    assert "Only Health's agents and the supervisors" in refused.plain()
    assert await root_mention(world, 10) == AGENT  # nothing changed
    assert await _audit_actions(b) == []


async def test_mistakes_are_answered_with_the_usage(world):
    b, *_ = world
    for text, says in [
        ("oncall set", "Whom to put on call?"),
        ("oncall set @U0LEAD 0", "HOURS must be more than 0"),
        ("oncall set @U0LEAD 9999", "HOURS must be more than 0"),
        ("oncall set @U0LEAD 4 nowhere", "There is no department 'nowhere'"),
        ("oncall set @U0LEAD transport", "Transport has no rotation, so say for how many hours"),
        ("oncall clear", "Which department?"),  # asked outside any department's channel
    ]:
        answer = (await run_command(b, text, ctx(channel="C0ELSEWHERE"))).plain()
        assert says in answer, (text, answer)
    assert await _audit_actions(b) == []


async def test_a_department_without_a_rotation_can_have_someone_on_call_for_a_while(world):
    b, *_ = world
    b.config.supervisors.append(LEAD)
    answer = await run_command(b, "oncall set @U0TRANSPORT 3 transport", ctx(LEAD))
    assert mentions(answer) == ["U0TRANSPORT", LEAD]
    shown = await run_command(b, "oncall transport", ctx())
    assert mentions(shown) == ["U0TRANSPORT", LEAD] and "then" not in shown.plain()


async def _audit_actions(b) -> list[tuple[str, str, str]]:
    """The audit entries of no ticket (on-call changes), oldest first."""

    def read(tx) -> list[tuple[str, str, str]]:
        rows = tx.s.scalars(select(AuditRow).where(AuditRow.ticket.is_(None)).order_by(AuditRow.id))
        return [(r.actor, r.action, r.detail) for r in rows]

    return await b.store.run(read)
