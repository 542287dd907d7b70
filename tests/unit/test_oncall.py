"""On-call overrides through the core: `oncall set` / `oncall clear`, and who a new
ticket's root mentions (fakes of X and chat, a real database)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select

from adapters.db.tables import AuditRow
from bot.domain import ChannelId, ChatUserId, Mention
from bot.ports import CommandContext, PlatformRefused
from handlers import delivery, ingest, oncall
from handlers.commands import run_command
from tests.fakes import FakeUserGroups, tweet

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


# --- the hand-off at each change, and the user group


async def handoffs(world) -> list[str]:
    b, x, chat, _ = world
    await oncall.hand_off(b)
    await delivery.deliver(b)
    return [o.body.plain() for _, o in chat.posts if o.key.startswith("handoff:")]


async def test_one_hand_off_per_shift_change_naming_who_and_the_open_tickets(world):
    b, x, chat, clock = world
    assert await handoffs(world) == []  # the shift began 6.5 hours ago: old news
    x.mentions_queue = [tweet(10, "@SevaHelp oxygen?"), tweet(11, "@SevaHelp hospital?")]
    await ingest.poll(b)
    clock.t = datetime(2021, 5, 5, 3, 30, tzinfo=UTC)  # 09:00 +05:30: U0AGENT2's shift
    (text,) = await handoffs(world)
    assert text.startswith("On call now for Health: U0AGENT2 until 2021-05-06 09:00 +05:30.")
    assert "Open tickets: 2; the oldest is #1, asked 17h 31m ago by @citizen." in text
    clock.advance(minutes=5)
    assert len(await handoffs(world)) == 1  # every later tick: nothing more
    assert chat.by_key("handoff:health:2021-05-05T03:30:00Z")[1].channel == "C0HEALTH"


async def test_another_instance_or_a_restart_never_repeats_a_hand_off(world, tmp_path):
    b, x, chat, clock = world
    clock.t = datetime(2021, 5, 5, 3, 30, tzinfo=UTC)
    assert len(await handoffs(world)) == 1
    second = replace(b, queued_keys=set())  # same database, knows nothing in memory
    assert await oncall.hand_off(second) == 0
    clock.advance(hours=24, minutes=1)  # the bot was down at the next change ...
    fresh = replace(b, queued_keys=set())
    assert await oncall.hand_off(fresh) == 1  # ... and posts it when it comes back
    clock.advance(hours=24 + 6, minutes=1)  # down for more than six hours past a change
    assert await oncall.hand_off(replace(b, queued_keys=set())) == 0


async def test_an_override_and_its_clearing_are_handed_off_too(world):
    b, x, chat, clock = world
    await run_command(b, "oncall set @U0LEAD 2", ctx())
    (text,) = await handoffs(world)
    assert text.startswith("On call now for Health: U0LEAD until 2021-05-04 17:30 +05:30")
    assert "(override by U0AGENT1)" in text and "No open tickets." in text
    clock.advance(minutes=30)
    await run_command(b, "oncall clear", ctx())
    texts = await handoffs(world)
    assert len(texts) == 2 and texts[1].startswith("On call now for Health: U0AGENT1 until")


async def test_the_user_group_follows_whoever_is_on_call(world):
    b, x, chat, clock = world
    groups = FakeUserGroups(members={"S0ONCALL": [ChatUserId("U0SOMEONE")]})
    b.usergroups = groups
    b.config = set_usergroup(b.config, "S0ONCALL")
    assert await oncall.sync_usergroups(b) == 1
    assert groups.members["S0ONCALL"] == [AGENT]
    assert await oncall.sync_usergroups(b) == 0
    assert groups.calls == [("list", "S0ONCALL"), ("update", "S0ONCALL")]  # no call while in step
    await run_command(b, "oncall set @U0LEAD 1", ctx())
    assert await oncall.sync_usergroups(b) == 1 and groups.members["S0ONCALL"] == [LEAD]
    clock.advance(hours=1)  # the override ends: back to the rotation
    assert await oncall.sync_usergroups(b) == 1 and groups.members["S0ONCALL"] == [AGENT]
    groups.members["S0ONCALL"] = [LEAD]  # someone edits the group by hand ...
    clock.advance(minutes=9)
    assert await oncall.sync_usergroups(b) == 0
    clock.advance(minutes=1)  # ... and the next look puts it right
    assert await oncall.sync_usergroups(b) == 1 and groups.members["S0ONCALL"] == [AGENT]


async def test_a_user_group_slack_refuses_is_tried_again_later_not_every_tick(world):
    b, x, chat, clock = world
    groups = FakeUserGroups(fail_next=PlatformRefused("slack usergroups.users.list: missing_scope"))
    b.usergroups = groups
    b.config = set_usergroup(b.config, "S0ONCALL")
    assert await oncall.sync_usergroups(b) == 0
    assert await oncall.sync_usergroups(b) == 0
    assert len(groups.calls) == 1  # waiting, not hammering
    clock.advance(minutes=1)
    assert await oncall.sync_usergroups(b) == 1 and groups.members["S0ONCALL"] == [AGENT]


def set_usergroup(config, group: str):
    health = config.departments[0]
    assert health.oncall is not None
    rotation = health.oncall.model_copy(update={"slack_usergroup": group})
    departments = [health.model_copy(update={"oncall": rotation}), *config.departments[1:]]
    return config.model_copy(update={"departments": departments})
