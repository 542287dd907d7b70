"""Who may do what (SPEC section 5): the rule in bot/permissions.py, and its wiring into
commands, thread replies and button presses through the core with fakes.

Transport lists no agents, so "any member" decides there: a member of its channel,
never anyone anywhere. People from another Slack workspace (Slack Connect) never tweet
and never change a ticket, whatever list they are on.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.config import parse_config
from bot.domain import ChannelId, ChatAction, ChatUserId, DepartmentId
from bot.permissions import may_answer, may_change
from bot.ports import CommandContext, Standing
from handlers import delivery, replies
from handlers.commands import run_command
from tests.unit.conftest import CONFIG
from tests.unit.test_core_flow import ask, thread_msg

SUPERVISED = parse_config({**CONFIG, "supervisors": ["U0LEAD"]}, "test.yaml")
HEALTH = SUPERVISED.department(DepartmentId("health"))
TRANSPORT = SUPERVISED.department(DepartmentId("transport"))
MEMBER, ELSEWHERE, AWAY = Standing(True), Standing(False), Standing(True, external=True)


@pytest.mark.parametrize(
    ("dept", "user", "standing", "answer", "change"),
    [
        (HEALTH, "U0AGENT1", MEMBER, True, True),  # a listed agent
        (HEALTH, "U0AGENT1", ELSEWHERE, True, True),  # listed: the list decides
        (HEALTH, "U0VISITOR", MEMBER, False, False),  # in the channel, not listed
        (HEALTH, "U0LEAD", ELSEWHERE, False, True),  # a supervisor changes, never tweets
        (TRANSPORT, "U0X", MEMBER, True, True),  # no list: a member of the channel
        (TRANSPORT, "U0INTERN", ELSEWHERE, False, False),  # not anyone anywhere
        (TRANSPORT, "U0X", AWAY, False, False),  # Slack Connect
        (HEALTH, "U0AGENT1", Standing(True, external=True), False, False),
        (HEALTH, "U0LEAD", AWAY, False, False),  # not even on the supervisors' list
        (TRANSPORT, "@mod:hs", Standing(True, power_level=50), True, True),
        (TRANSPORT, "@guest:hs", Standing(True, power_level=0), False, False),
        (HEALTH, "U0AGENT1", Standing(True, power_level=0), False, False),
    ],
)
def test_the_rule(dept, user, standing, answer, change):
    assert dept is not None and HEALTH is not None
    assert may_answer(SUPERVISED, dept, ChatUserId(user), standing) is answer
    assert may_change(SUPERVISED, dept, ChatUserId(user), standing) is change


async def transport_ticket(world):
    b, x, chat, clock = world
    b.config = SUPERVISED
    chat.members = {"C0TRANSPORT": {"U0X"}, "C0HEALTH": {"U0AGENT1", "U0VISITOR"}}
    await ask(b, x, "@SevaHelp train late #railways")  # ticket #1, transport
    return b, x, chat, clock


async def test_an_intern_elsewhere_cannot_close_a_ticket_of_a_department_without_agents(world):
    b, x, chat, _ = await transport_ticket(world)
    intern = CommandContext("slack", ChannelId("C0RANDOM"), ChatUserId("U0INTERN"))
    answer = (await run_command(b, "close 1 spam", intern)).plain()
    assert answer == "Only Transport's agents and the supervisors can do that, so nothing changed."
    assert ("C0TRANSPORT", "U0INTERN") in chat.standing_asked  # asked, not assumed
    # A member of the channel may, even from a DM with the bot.
    member = CommandContext("slack", ChannelId("D0DM"), ChatUserId("U0X"))
    assert (await run_command(b, "close 1", member)).plain() == "Ticket #1 closed."


async def test_a_command_in_the_departments_channel_needs_no_lookup(world):
    b, x, chat, _ = await transport_ticket(world)
    chat.members = {}  # the platform would say nobody: the event itself proves membership
    here = CommandContext("slack", ChannelId("C0TRANSPORT"), ChatUserId("U0NEW"))
    assert (await run_command(b, "claim 1", here)).plain() == "You now have ticket #1."
    assert chat.standing_asked == []


async def test_slack_connect_never_changes_a_ticket_nor_tweets(world):
    b, x, chat, _ = await transport_ticket(world)
    guest = CommandContext(
        "slack", ChannelId("C0TRANSPORT"), ChatUserId("U0LEAD"), external=True
    )  # even a supervisor's id, from another workspace
    answer = (await run_command(b, "close 1", guest)).plain()
    assert answer == "People from another workspace cannot change tickets here."
    msg = thread_msg(chat, "root:1", "The bus is at 6.", user="U0X")
    await replies.on_message(b, replace(msg, external=True))
    await delivery.deliver(b)
    assert x.posted == []
    assert chat.responses[-1][1].plain() == (
        "People from another workspace cannot answer in public here, so this stayed internal."
    )


async def test_a_button_press_is_checked_against_the_channel_not_assumed(world):
    b, x, chat, _ = await transport_ticket(world)
    await replies.on_message(b, thread_msg(chat, "root:1", "The bus is at 6.", user="U0X"))
    await delivery.deliver(b)
    send, _ = chat.by_key("preview:1")[1].actions

    def press(user: str, external: bool = False) -> ChatAction:
        return ChatAction(
            "slack",
            ChannelId("C0TRANSPORT"),
            send.id,
            send.value,
            ChatUserId(user),
            external=external,
        )

    await replies.on_action(b, press("U0INTERN"))  # sees the channel, is not in it
    await replies.on_action(b, press("U0X", external=True))
    await delivery.deliver(b)
    assert x.posted == []
    told = [body.plain() for ctx, body in chat.responses]
    assert "Only Transport's agents can send or cancel its replies. Nothing changed." in told
    assert "People from another workspace cannot send or cancel its replies here." in " ".join(told)
    await replies.on_action(b, press("U0LEAD"))  # a supervisor may approve a held reply
    await delivery.deliver(b)
    assert [t for _, t, _ in x.posted] == ["The bus is at 6."]
