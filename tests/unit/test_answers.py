"""Saved answers (`save`, `answers`, `forget`), `answer NAME` and `reuse FROM TO…`, driven
through the command grammar against fakes of X and chat."""

from __future__ import annotations

from bot.domain import ChannelId, ChatUserId, MessageId
from bot.outbox import ActionId
from bot.ports import CommandContext
from handlers import delivery, ingest, replies
from handlers.commands import run_command
from tests.fakes import tweet
from tests.unit.test_core_flow import press, thread_msg

LONG = " ".join(f"Counter {i} opens at {i} am for cancelled-train refunds." for i in range(1, 16))


def in_channel(channel: str = "C0HEALTH", user: str = "U0AGENT1") -> CommandContext:
    return CommandContext("slack", ChannelId(channel), ChatUserId(user))


def in_thread(chat, key: str, user: str = "U0AGENT1") -> CommandContext:
    root, out = chat.by_key(key)
    return CommandContext("slack", ChannelId(out.channel), ChatUserId(user), MessageId(root))


async def say(b, ctx: CommandContext, text: str) -> str:
    return (await run_command(b, text, ctx)).plain()


async def tickets(b, x, *texts: str, first: int = 10) -> None:
    """Mentions from different citizens, polled and posted as roots."""
    x.mentions_queue += [
        tweet(first + i, text, author=f"c{first + i}", author_id=str(3000 + first + i))
        for i, text in enumerate(texts)
    ]
    await ingest.poll(b)
    await delivery.deliver(b)


async def test_save_list_replace_and_forget_are_audited_and_per_department(world):
    b, _, _, _ = world
    said = await say(
        b, in_channel(), "save Refund Refunds for cancelled trains are automatic.\nAllow 7 days."
    )
    assert said.startswith("Saved “refund” for Health:\n")
    assert "> Refunds for cancelled trains are automatic.\n> Allow 7 days." in said
    listed = await say(b, in_channel(), "answers")
    assert "Saved answers for Health (1):" in listed
    assert (
        "refund — “Refunds for cancelled trains are automatic. Allow 7 days.” · U0AGENT1" in listed
    )
    assert "No saved answers for Transport" in await say(b, in_channel(), "answers transport")
    # Outside any department's channel, every department's answers.
    elsewhere = CommandContext("slack", ChannelId("D0DM"), ChatUserId("U0AGENT1"))
    assert "health/refund" in await say(b, elsewhere, "answers")
    assert "Saved answers belong to a department" in await say(b, elsewhere, "save x text")

    replaced = await say(b, in_channel(), "save REFUND Refunds take 7 days.")
    assert replaced.startswith("Replaced “refund”")
    assert "Refunds take 7 days." in await say(b, in_channel(), "answers health")
    forgot = await say(b, in_channel(), "forget refund")
    assert forgot.startswith("Forgot “refund” (Health)")
    assert "No saved answers" in await say(b, in_channel(), "answers")
    assert "has no saved answer “refund”" in await say(b, in_channel(), "forget refund")

    trail = await b.store.run(
        lambda tx: tx.s.execute(
            __import__("sqlalchemy").text("SELECT actor, action, detail FROM audit_log ORDER BY id")
        ).all()
    )
    assert [(a, act) for a, act, _ in trail] == [
        ("U0AGENT1", "saved"),
        ("U0AGENT1", "saved"),
        ("U0AGENT1", "forgotten"),
    ]
    assert trail[1][2] == "replaced health/refund: Refunds take 7 days."


async def test_only_the_departments_agents_and_supervisors_change_saved_answers(world):
    b, _, _, _ = world
    refused = await say(b, in_channel(user="U0VISITOR"), "save x Some answer.")
    assert refused == "Only Health's agents and the supervisors can do that, so nothing changed."
    assert "No saved answers" in await say(b, in_channel(user="U0VISITOR"), "answers")
    assert "cannot name an answer" in await say(b, in_channel(), "save a/b text")
    assert "What should it say?" in await say(b, in_channel(), "save lonely")
    # The text is what follows the name, even where it repeats the name's letters.
    assert (await say(b, in_channel(), "save aa a")).startswith("Saved “aa” for Health:\n> a\n")


async def test_save_in_a_thread_keeps_its_last_public_reply(world):
    b, x, chat, _ = world
    await tickets(b, x, "@SevaHelp oxygen refill in Lucknow?")
    ctx = in_thread(chat, "root:1")
    assert "has no public reply yet" in await say(b, ctx, "save oxygen")
    await replies.on_message(b, thread_msg(chat, "root:1", "Aliganj centre, open all night."))
    await delivery.deliver(b)
    assert "Saved “oxygen” for Health:\n> Aliganj centre, open all night." in await say(
        b, ctx, "save oxygen"
    )


async def test_answer_tweets_a_saved_answer_once_with_the_ticket_number(world):
    b, x, chat, _ = world
    await say(b, in_channel(), "save refund Refunds for cancelled trains are automatic.")
    await tickets(b, x, "@SevaHelp refund for my cancelled train?", "@SevaHelp refund please")
    said = await say(b, in_thread(chat, "root:1"), "answer refund")
    assert said == "Saved answer “refund”, #1: tweeting."
    await delivery.deliver(b)
    assert await say(b, in_channel(), "answer refund 2") == "Saved answer “refund”, #2: tweeting."
    again = await say(b, in_thread(chat, "root:1"), "answer refund")
    assert again == "Saved answer “refund”, #1: had it already (sent), nothing new."
    await delivery.deliver(b)
    assert [(t, to) for _, t, to in x.posted] == [
        ("Refunds for cancelled trains are automatic. (ref #1)", "10"),
        ("Refunds for cancelled trains are automatic. (ref #2)", "11"),
    ]
    assert "no saved answer “nope”" in await say(b, in_thread(chat, "root:1"), "answer nope")
    assert "Which ticket?" in await say(b, in_channel(), "answer refund")


async def test_answer_in_confirm_mode_waits_for_send_and_cancel_frees_it(world):
    b, x, chat, _ = world
    await say(b, in_channel("C0TRANSPORT", "U0T"), "save late " + LONG)
    await tickets(b, x, "@SevaHelp train late #railways")
    ctx = in_thread(chat, "root:1", "U0T")
    said = await say(b, ctx, "answer late")
    assert said.startswith("Saved answer “late”, #1: waits for Send in its thread as ")
    await delivery.deliver(b)
    _, preview = chat.by_key("preview:1")
    assert x.posted == []
    cancel = next(a for a in preview.actions if a.id == ActionId.CANCEL)
    await replies.on_action(b, press(cancel, "U0T"))
    # Cancelled: the same saved answer may be queued again, and this time it is sent.
    assert "waits for Send" in await say(b, ctx, "answer late")
    await delivery.deliver(b)
    _, preview = chat.by_key("preview:2")
    await replies.on_action(
        b, press(next(a for a in preview.actions if a.id == ActionId.SEND), "U0T")
    )
    await delivery.deliver(b)
    parts = [t for _, t, _ in x.posted]
    assert len(parts) > 1 and all(
        p.endswith(f"(ref #1, {i}/{len(parts)})") for i, p in enumerate(parts, 1)
    )
    # The updated preview quotes what was tweeted, reference and all.
    assert any("(ref #1, 1/" in body.plain() for _, body in chat.updates)


async def test_reuse_sends_one_answer_to_many_tickets_each_once_and_distinct(world):
    b, x, chat, _ = world
    await tickets(
        b,
        x,
        "@SevaHelp is the hospital open on Sunday?",
        "@SevaHelp hospital open sunday?",
        "@SevaHelp sunday OPD timings at the hospital?",
        "@SevaHelp any hospital open this sunday",
    )
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes, OPD runs 9 to 1 on Sundays."))
    await delivery.deliver(b)
    said = await say(b, in_channel(), "reuse 1 2 3 #4")
    assert said.splitlines()[1:] == ["#2: tweeting", "#3: tweeting", "#4: tweeting"]
    await delivery.deliver(b)
    repeated = await say(b, in_thread(chat, "root:2"), "reuse 1")
    assert repeated.splitlines()[1:] == ["#2: had it already (sent), nothing new"]
    await delivery.deliver(b)
    assert [(t, to) for _, t, to in x.posted] == [
        ("Yes, OPD runs 9 to 1 on Sundays.", "10"),
        ("Yes, OPD runs 9 to 1 on Sundays. (ref #2)", "11"),
        ("Yes, OPD runs 9 to 1 on Sundays. (ref #3)", "12"),
        ("Yes, OPD runs 9 to 1 on Sundays. (ref #4)", "13"),
    ]
    assert "Tweeted: " in chat.by_key("sent:2")[1].body.plain()  # each thread is told
    # A reused answer can itself be reused: without the first ticket's reference.
    await tickets(b, x, "@SevaHelp hospital open sunday??", first=20)
    await say(b, in_channel(), "reuse 4 5")
    await delivery.deliver(b)
    assert x.posted[-1][1] == "Yes, OPD runs 9 to 1 on Sundays. (ref #5)"


async def test_reuse_checks_everything_before_it_changes_anything(world):
    b, x, chat, _ = world
    await tickets(
        b, x, "@SevaHelp hospital open?", "@SevaHelp train late #railways", "@SevaHelp open?"
    )
    assert "has no public answer yet" in await say(b, in_channel(), "reuse 1 2")
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes, all day."))
    await delivery.deliver(b)
    # Transport lists no agents (any member may answer it), Health does: a visitor may
    # reuse for #2 but not for #3, so nothing is queued for either.
    refused = await say(b, in_channel(user="U0VISITOR"), "reuse 1 2 3")
    assert refused == "Only Health's agents and the supervisors can do that, so nothing changed."
    assert "There is no ticket #9" in await say(b, in_channel(), "reuse 1 2 9")
    assert "'x' is not a ticket number" in await say(b, in_channel(), "reuse 1 x")
    assert "Which ticket?" in await say(b, in_channel(), "reuse 1")
    await delivery.deliver(b)
    assert len(x.posted) == 1
    assert not [k for k in chat.sent_keys() if k.startswith("preview:")]
