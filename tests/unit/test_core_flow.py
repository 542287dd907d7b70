"""The core driven through fakes of X and chat: ingest, replies, delivery, recovery."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import event

from bot.domain import (
    Action,
    ChannelId,
    ChatAction,
    ChatMessage,
    ChatUserId,
    Mention,
    MessageId,
    Quote,
)
from handlers import delivery, escalation, ingest, replies
from tests.fakes import ME, FakeChat, tweet


async def ask(b, x, text: str) -> None:
    """A citizen's mention (tweet 10), polled and posted as ticket #1's root."""
    x.mentions_queue = [tweet(10, text)]
    await ingest.poll(b)
    await delivery.deliver(b)


def press(action: Action, user: str, power_level: int | None = None) -> ChatAction:
    """A person pressing a preview's button (Slack), or reacting with its emoji (Matrix)."""
    return ChatAction(
        "slack", ChannelId("C0TRANSPORT"), action.id, action.value, ChatUserId(user), power_level
    )


def thread_msg(chat: FakeChat, key: str, text: str, *, user: str = "U0AGENT1", mid: str = "900.1"):
    root, out = chat.by_key(key)
    return ChatMessage(
        platform="slack",
        channel=ChannelId(out.channel),
        id=MessageId(mid),
        sender=ChatUserId(user),
        text=text,
        thread_root=root,
        event_id="Ev" + mid,
    )


async def test_mention_becomes_one_ticket_root_routed_with_oncall(world):
    b, x, chat, _ = world
    x.mentions_queue = [
        tweet(10, "@SevaHelp need oxygen for my father"),
        tweet(11, "@SevaHelp train late again #Railways", author="ravi", author_id="2001"),
    ]
    assert await ingest.poll(b) == 2
    await delivery.deliver(b)
    assert chat.sent_keys() == ["root:1", "root:2"]
    _, root = chat.by_key("root:1")
    assert root.channel == "C0HEALTH" and root.ticket == 1 and root.tweet_id == "10"
    assert Mention(ChatUserId("U0AGENT1")) in root.body.segments  # on call on day one
    assert Quote("@SevaHelp need oxygen for my father") in root.body.segments
    assert chat.by_key("root:2")[1].channel == "C0TRANSPORT"
    # The same page again, or a restart, takes nothing twice.
    assert await ingest.poll(b) == 0
    assert await b.store.get(ingest.CURSOR) == "11"


async def test_own_tweets_retweets_and_duplicates_are_ignored(world):
    b, x, chat, _ = world
    x.mentions_queue = [
        tweet(10, "@SevaHelp our own post", author="SevaHelp", author_id=ME.id),
        tweet(11, "RT @SevaHelp something", retweet=True),
    ]
    assert await ingest.poll(b) == 0
    await delivery.deliver(b)
    assert chat.posts == []
    assert await b.store.get(ingest.CURSOR) == "11"  # seen, so not read again


async def test_agent_reply_goes_out_once_and_is_confirmed(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    msg = thread_msg(chat, "root:1", "Yes, call 1075.")
    await replies.on_message(b, msg)
    await replies.on_message(b, msg)  # Slack retried the event
    await delivery.deliver(b)
    assert [(t, to) for _, t, to in x.posted] == [("Yes, call 1075.", "10")]
    confirm = chat.by_key("sent:1")[1]
    assert confirm.thread_root is not None
    assert f"x.com/SevaHelp/status/{x.posted[0][0]}" in confirm.body.plain()
    t = await b.store.run(lambda tx: tx.ticket(1))
    assert t is not None and t.first_response_at is not None


@pytest.mark.parametrize(
    "text,user",
    [
        ("note: checking with the desk", "U0AGENT1"),
        ("PRIVATE: do not tweet this", "U0AGENT1"),
        ("I am not an agent", "U0VISITOR"),
    ],
)
async def test_notes_and_non_agents_never_tweet(world, text, user):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    await replies.on_message(b, thread_msg(chat, "root:1", text, user=user))
    await delivery.deliver(b)
    assert x.posted == []
    told = [body.plain() for ctx, body in chat.responses if ctx.user == user]
    if user == "U0VISITOR":  # told privately why nothing was tweeted
        assert told == ["Only Health's agents can answer in public, so this stayed internal."]
    else:
        assert told == []


async def test_long_reply_becomes_a_numbered_chain(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp hospital beds?")
    answer = " ".join(f"word{i}" for i in range(120))
    await replies.on_message(b, thread_msg(chat, "root:1", answer))
    await delivery.deliver(b)
    assert len(x.posted) >= 2
    n = len(x.posted)
    for i, (_, text, to) in enumerate(x.posted):
        assert text.endswith(f"({i + 1}/{n})")
        assert to == ("10" if i == 0 else x.posted[i - 1][0])
    assert "chain" in chat.by_key("sent:1")[1].body.plain()


async def test_refusal_is_explained_and_not_retried(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    x.refuse = "You attempted to reply to a Tweet that is deleted or not visible to you."
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes."))
    await delivery.deliver(b)
    await delivery.deliver(b)
    assert x.posted == []
    body = chat.by_key("refused:1")[1].body.plain()
    assert "deleted or not visible" in body and "not tweeted" in body


async def test_lost_answer_from_x_is_verified_not_doubled(world):
    b, x, chat, clock = world
    await ask(b, x, "@SevaHelp oxygen?")
    x.fail_after_post = 1  # X accepts, the connection drops before we hear it
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes, call 1075."))
    await delivery.deliver(b)
    clock.advance(seconds=10)
    await delivery.deliver(b)
    assert len(x.posted) == 1
    assert "sent:1" in chat.sent_keys()


async def test_crash_between_claim_and_post_recovers_without_double(world):
    """A claim left behind by a dead process is verified against X before retrying."""
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    await replies.on_message(b, thread_msg(chat, "root:1", "Answer"))
    [part] = b.handed  # claimed in the unit that took the answer...
    b.handed.clear()
    assert await b.store.run(lambda tx: tx.due_parts()) == []  # ...so no one else sends it
    await x.post(part.text, part.in_reply_to)  # ...posted, and then the process died
    assert await delivery.recover(b, lease=timedelta(0)) == 1
    await delivery.deliver(b)
    assert len(x.posted) == 1
    assert "sent:1" in chat.sent_keys()


async def test_lost_chat_post_is_found_not_reposted(world):
    b, x, chat, clock = world
    chat.fail_next = 1
    await ask(b, x, "@SevaHelp oxygen?")
    clock.advance(seconds=10)
    await delivery.deliver(b)
    assert chat.sent_keys() == ["root:1"]
    t = await b.store.run(lambda tx: tx.ticket(1))
    assert t is not None and t.root == chat.posts[0][0]


async def test_followup_lands_in_the_thread_and_reopens(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes."))
    await delivery.deliver(b)
    from bot.domain import TicketState

    await b.store.run(lambda tx: tx.set_state(1, TicketState.CLOSED))
    bot_tweet = x.posted[0][0]
    x.mentions_queue.append(tweet(20, "@SevaHelp thanks! and after 9pm?", replied_to=bot_tweet))
    assert await ingest.poll(b) == 1
    await delivery.deliver(b)
    follow = chat.by_key("followup:20")
    assert follow[1].thread_root == chat.by_key("root:1")[0]
    assert "reopened" in follow[1].body.plain()
    t = await b.store.run(lambda tx: tx.ticket(1))
    assert t is not None and t.state.value == "open" and t.reply_to == "20"
    # The next agent answer replies to the citizen's latest tweet.
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes, 24x7.", mid="901.1"))
    await delivery.deliver(b)
    assert x.posted[-1][2] == "20"


async def test_same_conversation_is_a_followup(world):
    b, x, chat, _ = world
    x.mentions_queue = [
        tweet(10, "@SevaHelp oxygen?"),
        tweet(12, "@SevaHelp also need a bed", conversation_id="10", replied_to="11"),
    ]
    assert await ingest.poll(b) == 2
    await delivery.deliver(b)
    assert chat.sent_keys() == ["root:1", "followup:12"]


async def test_confirm_mode_waits_for_send(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp train late #railways")
    await replies.on_message(b, thread_msg(chat, "root:1", "Sorry, 10 min delay.", user="U0X"))
    await delivery.deliver(b)
    assert x.posted == []
    preview = chat.by_key("preview:1")[1]
    assert "Sorry, 10 min delay." in preview.body.plain()
    send = preview.actions[0]
    await replies.on_action(b, press(send, "U0X"))
    await replies.on_action(b, press(send, "U0X"))  # double click
    await delivery.deliver(b)
    assert [t for _, t, _ in x.posted] == ["Sorry, 10 min delay."]
    ((where, body),) = chat.updates  # the preview says who sent it, without buttons
    assert where == chat.by_key("preview:1")[0]
    assert body.plain().startswith("Sent by U0X")


async def test_escalation_once_after_the_deadline(world):
    b, x, chat, clock = world
    await ask(b, x, "@SevaHelp oxygen?")
    clock.advance(minutes=28)  # the tweet is a minute older than the clock: 29 minutes
    assert await escalation.escalate(b) == 0
    clock.advance(minutes=2)
    assert await escalation.escalate(b) == 1
    assert await escalation.escalate(b) == 0
    await delivery.deliver(b)
    esc = chat.by_key("escalate:1")[1]
    assert Mention(ChatUserId("U0LEAD")) in esc.body.segments
    assert esc.thread_root == chat.by_key("root:1")[0]


async def test_answered_ticket_is_not_escalated(world):
    b, x, chat, clock = world
    await ask(b, x, "@SevaHelp oxygen?")
    await replies.on_message(b, thread_msg(chat, "root:1", "On it."))
    await delivery.deliver(b)
    clock.advance(hours=2)
    assert await escalation.escalate(b) == 0


async def test_search_query_adds_tickets_once(world):
    b, x, chat, _ = world
    b.config = b.config.model_copy(
        update={"x": b.config.x.model_copy(update={"search_query": "oxygen"})}
    )
    x.mentions_queue = [tweet(10, "@SevaHelp oxygen please")]
    x.search_pool = [tweet(10, "@SevaHelp oxygen please"), tweet(11, "no oxygen in ward 4")]
    assert await ingest.poll(b) == 2  # the mention, and the search hit not addressed to us
    assert await ingest.poll(b) == 0
    await delivery.deliver(b)
    assert chat.sent_keys() == ["root:1", "root:2"]
    assert await b.store.get(ingest.SEARCH_CURSOR) == "11"


async def test_answer_is_mirrored_on_the_root(world):
    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes."))
    await delivery.deliver(b)
    assert [state for _, state in chat.marks] == ["answered"]


async def test_a_failing_search_never_holds_up_mentions(world):
    from bot.ports import RateLimited

    b, x, chat, clock = world
    b.config = b.config.model_copy(
        update={"x": b.config.x.model_copy(update={"search_query": "oxygen"})}
    )
    x.search_fails = RateLimited(clock.now() + timedelta(minutes=15), "search/recent")
    x.mentions_queue = [tweet(10, "@SevaHelp oxygen please")]
    assert await ingest.poll(b) == 1
    x.mentions_queue.append(tweet(11, "@SevaHelp and a bed?"))
    assert await ingest.poll(b) == 1  # the search is blocked, the mentions are not
    assert b.mentions.error is None and b.search.error == "rate limited"


async def test_a_followup_reopening_a_ticket_is_mirrored_on_the_root(world):
    from bot.domain import TicketState

    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    await b.store.run(lambda tx: tx.set_state(1, TicketState.CLOSED))
    x.mentions_queue.append(tweet(12, "@SevaHelp still waiting", replied_to="10"))
    await ingest.poll(b)
    await delivery.deliver(b)
    assert [state for _, state in chat.marks] == ["open"]


async def open_tickets(b, x, chat, n: int) -> None:
    x.mentions_queue = [tweet(100 + i, f"@SevaHelp oxygen {i}?") for i in range(n)]
    await ingest.poll(b)
    await delivery.deliver(b)


async def test_a_429_from_x_pauses_every_reply_not_just_one(world):
    b, x, chat, clock = world
    await open_tickets(b, x, chat, 5)
    for i in range(5):
        await replies.on_message(b, thread_msg(chat, f"root:{i + 1}", f"Answer {i}", mid=f"9{i}.1"))
    x.rate_limit_next = 1
    await delivery.deliver(b)
    assert x.post_calls == 1 and x.posted == []  # the rest of the round waited
    clock.advance(minutes=16)
    await delivery.deliver(b)
    assert sorted(t for _, t, _ in x.posted) == [f"Answer {i}" for i in range(5)]


async def test_answers_arriving_together_are_taken_and_claimed_in_one_unit(world):
    """Five agents answering at once: one unit of work takes the five answers and claims
    their tweets, which the next round sends without looking for them again."""
    b, x, chat, _ = world
    await open_tickets(b, x, chat, 5)
    commits = []
    event.listen(b.store.engine, "commit", lambda conn: commits.append(1))
    await asyncio.gather(
        *(
            replies.on_message(b, thread_msg(chat, f"root:{i + 1}", f"Answer {i}", mid=f"9{i}.1"))
            for i in range(5)
        )
    )
    assert len(commits) == 1
    assert sorted(p.text for p in b.handed) == [f"Answer {i}" for i in range(5)]
    assert await b.store.run(lambda tx: tx.due_parts()) == []  # claimed: no one else sends them
    await delivery.deliver(b)
    assert sorted(t for _, t, _ in x.posted) == [f"Answer {i}" for i in range(5)]
    assert b.handed == []


async def test_parts_handed_over_for_a_round_that_never_ran_are_handed_back(world):
    """The bridge stops between taking an answer and its round: the part is pending
    again (not left claimed until its lease runs out), and goes out once."""
    b, x, chat, _ = world
    await open_tickets(b, x, chat, 1)
    await replies.on_message(b, thread_msg(chat, "root:1", "Answer 0", mid="90.1"))
    assert len(b.handed) == 1
    await delivery.hand_back(b)
    assert b.handed == []
    assert [p.text for p in await b.store.run(lambda tx: tx.due_parts())] == ["Answer 0"]
    await delivery.deliver(b)
    assert [t for _, t, _ in x.posted] == ["Answer 0"]


async def test_one_bad_answer_among_those_taken_together_fails_alone(world):
    """The unit of the group fails: each is taken again on its own, and only the message
    at fault fails (here one that is no thread message at all, a bug)."""
    b, x, chat, _ = world
    await open_tickets(b, x, chat, 2)
    good = thread_msg(chat, "root:1", "Yes, call 1075.", mid="91.1")
    bad = replace(thread_msg(chat, "root:2", "No.", mid="92.1"), thread_root=None)
    take = functools.partial(replies._take_replies, b)
    got = await asyncio.gather(
        b.taking.add((good, good.text), take),
        b.taking.add((bad, bad.text), take),
        return_exceptions=True,
    )
    assert isinstance(got[0], replies.QueuedReply) and isinstance(got[1], AssertionError)
    await delivery.deliver(b)
    assert [t for _, t, _ in x.posted] == ["Yes, call 1075."]


async def test_an_answer_taken_while_x_says_wait_is_not_claimed(world):
    b, x, chat, clock = world
    await open_tickets(b, x, chat, 2)
    x.rate_limit_next = 1
    await replies.on_message(b, thread_msg(chat, "root:1", "Answer 0", mid="90.1"))
    await delivery.deliver(b)  # 429: X posting waits 15 minutes
    await replies.on_message(b, thread_msg(chat, "root:2", "Answer 1", mid="91.1"))
    assert b.handed == []  # left queued for when X takes posts again
    due = await b.store.run(lambda tx: tx.due_parts())
    assert [p.text for p in due] == ["Answer 1"]  # pending (the first waits for X's reset)
    clock.advance(minutes=16)
    await delivery.deliver(b)
    assert sorted(t for _, t, _ in x.posted) == ["Answer 0", "Answer 1"]


async def test_a_lost_post_that_x_calls_duplicate_is_never_refused_or_repeated(world):
    b, x, chat, clock = world
    await ask(b, x, "@SevaHelp oxygen?")
    x.fail_after_post = 1  # X takes it, we never hear back ...
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes, call 1075."))
    await delivery.deliver(b)
    x.hidden = {x.posted[0][0]}  # ... and its timeline does not show it yet
    for _ in range(6):
        clock.advance(minutes=11)
        await delivery.deliver(b)
    assert len(x.posted) == 1
    assert not any(k.startswith("refused:") for k in chat.sent_keys())
    assert "unverified:1" in chat.sent_keys()  # the thread was told it is still checking
    x.hidden = set()  # the timeline catches up
    clock.advance(minutes=11)
    await delivery.deliver(b)
    assert len(x.posted) == 1 and "sent:1" in chat.sent_keys()


async def test_a_chat_rate_limit_ends_the_channel_round(world):
    b, x, chat, clock = world
    chat.rate_limit_next = 1
    x.mentions_queue = [tweet(100 + i, f"@SevaHelp oxygen {i}?") for i in range(5)]
    await ingest.poll(b)
    await delivery.deliver(b)
    assert chat.post_calls == 1 and chat.posts == []
    clock.advance(seconds=31)
    await delivery.deliver(b)
    assert chat.sent_keys() == [f"root:{i}" for i in range(1, 6)]  # in order, once each


async def test_cancel_after_send_changes_nothing(world):
    b, x, chat, _ = world
    x.mentions_queue = [tweet(10, "@SevaHelp train late #railways")]
    await ingest.poll(b)
    await delivery.deliver(b)
    await replies.on_message(b, thread_msg(chat, "root:1", "10 min delay.", user="U0X"))
    await delivery.deliver(b)
    send, cancel = chat.by_key("preview:1")[1].actions
    await replies.on_action(b, press(send, "U0X"))
    await replies.on_action(b, press(cancel, "U0X"))
    await delivery.deliver(b)
    assert [t for _, t, _ in x.posted] == ["10 min delay."]
    assert [body.plain().split(";")[0] for _, body in chat.updates] == ["Sent by U0X"]


async def test_posts_for_a_platform_not_served_wait_without_spinning(world, caplog):
    import asyncio

    b, x, chat, _ = world
    await ask(b, x, "@SevaHelp oxygen?")
    from bot.domain import Outgoing, Rich

    orphan = Outgoing("orphan:1", ChannelId("!room:hs"), Rich.of("x"))
    # a thread on a platform this deployment no longer runs
    await b.store.run(lambda tx: tx.enqueue(orphan, "matrix", False))
    runner = asyncio.create_task(delivery.run_forever(b, idle=0.05))
    await replies.on_message(b, thread_msg(chat, "root:1", "Yes."))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if "sent:1" in chat.sent_keys():
            break
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    assert "sent:1" in chat.sent_keys()
    missing = [r for r in caplog.records if "chat.platform_missing" in r.getMessage()]
    assert len(missing) == 1


async def test_every_change_is_in_the_audit_log_with_who_made_it(world):
    b, x, chat, clock = world
    await ask(b, x, "@SevaHelp oxygen?")
    clock.advance(minutes=31)
    assert await escalation.escalate(b) == 1
    await replies.on_message(b, thread_msg(chat, "root:1", "Call 1075."))
    await delivery.deliver(b)
    x.mentions_queue = [tweet(11, "@SevaHelp #railways train late")]
    await ingest.poll(b)
    await delivery.deliver(b)
    await replies.on_message(b, thread_msg(chat, "root:2", "Delayed.", user="U0X", mid="901"))
    await replies.on_message(b, thread_msg(chat, "root:2", "Sorry.", user="U0X", mid="902"))
    await delivery.deliver(b)
    send, _ = chat.by_key("preview:2")[1].actions  # reply 1 went out on ticket #1
    _, cancel = chat.by_key("preview:3")[1].actions
    await replies.on_action(b, press(send, "U0X"))
    await replies.on_action(b, press(cancel, "U0X"))
    x.refuse = "You attempted to reply to a Tweet that is deleted or not visible to you."
    await delivery.deliver(b)
    first, second, ticket = await b.store.run(
        lambda tx: (
            [(e.actor, e.action, e.detail) for e in tx.audit_log(1)],
            [(e.actor, e.action, e.detail) for e in tx.audit_log(2)],
            tx.ticket(1),
        )
    )
    assert first == [
        ("x", "created", "@citizen → health"),
        ("seva", "escalated", ""),
        ("U0AGENT1", "reply", "queued"),
        ("x", "replied", x.posted[0][0]),
    ]
    assert ticket is not None and ticket.first_response_at == clock.now()
    assert second == [
        ("x", "created", "@citizen → transport"),
        ("U0X", "reply", "awaiting confirmation"),
        ("U0X", "reply", "awaiting confirmation"),
        ("U0X", "reply", "confirmed"),
        ("U0X", "reply", "cancelled"),
        ("x", "refused", x.refuse),
    ]


async def test_only_members_at_the_power_level_may_confirm_where_there_are_levels(world):
    """One rule (bot.permissions) for replies, Send buttons and confirming reactions; a
    press's power level is the presser's in the department's room, asked of the platform."""
    b, x, chat, _ = world
    chat.levels = {"@member:hs": 0, "@agent:hs": 50}
    await ask(b, x, "@SevaHelp train late #railways")  # transport: no agents listed
    await replies.on_message(b, thread_msg(chat, "root:1", "Delayed 10 min.", user="U0X"))
    await delivery.deliver(b)
    send, _ = chat.by_key("preview:1")[1].actions
    await replies.on_action(b, press(send, "@member:hs", power_level=0))
    await delivery.deliver(b)
    assert x.posted == [] and chat.updates == []
    await replies.on_action(b, press(send, "@agent:hs", power_level=50))
    await delivery.deliver(b)
    assert [t for _, t, _ in x.posted] == ["Delayed 10 min."]
