"""`retract` (SPEC section 5): a ticket's last public reply, every part of its chain,
deleted from X once; the thread says so; the audit log records who asked."""

from __future__ import annotations

from bot.domain import ChannelId, ChatUserId, MessageId
from bot.ports import CommandContext
from handlers import delivery, replies
from handlers.commands import run_command
from tests.unit.test_core_flow import ask, thread_msg


def in_thread(chat, user: str = "U0AGENT1") -> CommandContext:
    root, _ = chat.by_key("root:1")
    return CommandContext("slack", ChannelId("C0HEALTH"), ChatUserId(user), MessageId(root))


async def answered(world, text: str) -> list[str]:
    """Ticket #1 in health, answered in public; the ids of the reply's tweets."""
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    await replies.on_message(b, thread_msg(chat, "root:1", text))
    await delivery.deliver(b)
    return [tid for tid, _, _ in x.posted]


async def test_retract_deletes_every_part_once_and_says_so(world):
    b, x, chat, _ = world
    chain = await answered(world, " ".join(f"Bed {i} is free in ward {i}." for i in range(30)))
    assert len(chain) == 3
    answer = (await run_command(b, "retract", in_thread(chat))).plain()
    assert answer == (
        "Deleting ticket #1's last reply (its 3 tweets) from X; this thread will say when "
        "it is gone."
    )
    await delivery.deliver(b)
    assert x.deleted == chain[::-1]  # last part first
    told = chat.by_key("retracted:1")[1]
    assert told.thread_root == chat.by_key("root:1")[0]
    assert told.body.plain().startswith("Retracted: ticket #1's reply was deleted from X")
    again = (await run_command(b, "retract", in_thread(chat))).plain()
    assert again == "Ticket #1's last reply was retracted already."
    await delivery.deliver(b)
    assert x.delete_calls == 3
    audit = await b.store.run(lambda tx: [(e.actor, e.action) for e in tx.audit_log(1)])
    assert audit[-2:] == [("U0AGENT1", "retracted"), ("x", "retracted")]
    info = await b.store.run(lambda tx: tx.reply(1))
    assert info is not None and info.state == "retracted"


async def test_a_delete_whose_answer_was_lost_is_asked_again_and_counts(world):
    b, x, chat, clock = world
    (tweet,) = await answered(world, "Yes, 24x7.")
    x.fail_after_delete = 1  # X deletes it, the connection drops before we hear so
    await run_command(b, "retract", in_thread(chat))
    await delivery.deliver(b)
    assert "retracted:1" not in chat.sent_keys()
    clock.advance(seconds=10)
    await delivery.deliver(b)  # X: already gone, which counts as deleted
    assert x.deleted == [tweet] and x.delete_calls == 2
    assert chat.sent_keys().count("retracted:1") == 1


async def test_x_refusing_the_delete_is_told_not_retried(world):
    b, x, chat, clock = world
    await answered(world, "Yes, 24x7.")
    x.refuse_delete = "You are not allowed to delete a Tweet that you did not create."
    await run_command(b, "retract", in_thread(chat))
    await delivery.deliver(b)
    clock.advance(minutes=20)
    await delivery.deliver(b)
    assert x.delete_calls == 1
    body = chat.by_key("retracted:1")[1].body.plain()
    assert body.startswith("X refused to delete the reply, so it is still public")


async def test_nothing_to_retract_and_not_for_everyone(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    answer = (await run_command(b, "retract", in_thread(chat))).plain()
    assert answer == "Ticket #1 has no public reply to retract."
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes."))
    await delivery.deliver(b)
    refused = (await run_command(b, "retract", in_thread(chat, "U0VISITOR"))).plain()
    assert refused.startswith("Only Health's agents and the supervisors")
    await delivery.deliver(b)
    assert x.deleted == []


async def test_a_reply_still_going_out_is_not_retracted_midway(world):
    b, x, chat, clock = world
    await ask(b, x, "@SevaHelp oxygen?")
    x.rate_limit_next = 1  # X says wait: the reply stays queued
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes."))
    await delivery.deliver(b)
    answer = (await run_command(b, "retract", in_thread(chat))).plain()
    assert "still being tweeted" in answer
    clock.advance(minutes=16)
    await delivery.deliver(b)
    assert len(x.posted) == 1 and x.deleted == []
