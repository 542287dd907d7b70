"""Similar tickets: the terms a query is compared by, the "Similar answered" line of a new
root, and `similar N`. (The labelled set's precision and recall, on both databases, are in
tests/contract/test_similar.py.)"""

from __future__ import annotations

from bot.domain import ChannelId, ChatUserId
from bot.ports import CommandContext
from bot.similarity import similarity, terms
from handlers import delivery, ingest, replies
from handlers.commands import run_command
from tests.fakes import tweet
from tests.unit.test_core_flow import thread_msg

# --- terms


def test_indic_words_stay_whole_and_meet_their_inflections():
    assert terms("@SevaHelp ट्रेन रद्द") == ("ट्रेन", "रद्द")
    assert terms("ट्रेनें")[0] == terms("ट्रेनों")[0] == "ट्रेन"
    assert terms("trains cancelled") == terms("train cancel")
    # ZWJ/ZWNJ and the decomposed nukta are spellings, not words of their own.
    assert terms("क्\u200dया पढ़ाई") == terms("क्या पढ़ाई")


def test_mentions_links_everyday_words_and_short_numbers_are_left_out():
    assert terms("@SevaHelp @IRCTC is the train https://t.co/abc late by 2 hours?") == (
        "train",
        "late",
        "hour",
    )
    assert terms("क्या है कब") == ()


def test_digits_of_every_script_are_the_same_number():
    assert terms("१२९५१ रद्द") == ("12951", "रद्द")
    assert terms("12951 cancelled")[0] == "12951"


def test_a_rare_shared_word_weighs_more_than_a_common_one():
    df = {"train": 900, "late": 300, "12951": 3, "12625": 4}
    same_train = similarity(["train", "12951"], ["12951", "late"], df, 1000)
    other_train = similarity(["train", "12951"], ["train", "12625"], df, 1000)
    assert same_train > 0.5 > other_train


# --- the root and the command


async def answered_ticket(b, x, chat, tid: int, text: str, answer: str) -> str:
    """A mention that becomes a ticket whose public answer goes out; returns its root key."""
    x.mentions_queue.append(tweet(tid, text, author=f"citizen{tid}", author_id=str(tid)))
    await ingest.poll(b)
    await delivery.deliver(b)
    key = f"root:{len([k for k in chat.sent_keys() if k.startswith('root:')])}"
    await replies.on_message(b, thread_msg(chat, key, answer, mid=f"{tid}.5"))
    await delivery.deliver(b)
    return key


async def test_a_new_root_lists_earlier_answered_tickets_with_their_answer(world):
    b, x, chat, _ = world
    await answered_ticket(
        b,
        x,
        chat,
        10,
        "@SevaHelp oxygen cylinder refill in Lucknow tonight?",
        "Yes: the Aliganj refill centre is open all night, call 1075 first.",
    )
    await answered_ticket(b, x, chat, 11, "@SevaHelp hospital visiting hours?", "4pm to 7pm.")
    x.mentions_queue.append(tweet(12, "@SevaHelp where is an oxygen cylinder refill in Lucknow?"))
    await ingest.poll(b)
    await delivery.deliver(b)
    _, root = chat.by_key("root:3")
    plain = root.body.plain()
    assert "Similar answered: #1\n" in plain
    assert "#1: “Yes: the Aliganj refill centre is open all night, call 1075 first.”" in plain
    assert "#2" not in plain
    # The section sits above the on-call line, which the root still ends with.
    assert plain.index("Similar answered") < plain.index("On call: U0AGENT1")


async def test_no_similar_line_when_nothing_alike_was_answered(world):
    b, x, chat, _ = world
    x.mentions_queue = [
        tweet(10, "@SevaHelp oxygen cylinder refill in Lucknow?"),
        tweet(11, "@SevaHelp oxygen cylinder refill in Lucknow? urgent", author_id="2001"),
    ]
    await ingest.poll(b)
    await delivery.deliver(b)
    # #1 is alike but not answered: the root of #2 suggests nothing.
    assert "Similar answered" not in chat.by_key("root:2")[1].body.plain()
    assert "\nOn call: U0AGENT1" in chat.by_key("root:2")[1].body.plain()


async def test_similar_lists_open_and_answered_tickets_like_this_one(world):
    b, x, chat, _ = world
    await answered_ticket(
        b,
        x,
        chat,
        10,
        "@SevaHelp is train 12951 cancelled today?",
        "Yes, 12951 is cancelled today because of the strike; refunds are automatic.",
    )
    x.mentions_queue += [
        tweet(11, "@SevaHelp train 12951 cancelled today??", author_id="2001"),
        tweet(12, "@SevaHelp hospital visiting hours?", author_id="2002"),
        tweet(13, "@SevaHelp train 12951 cancelled? no announcement", author_id="2003"),
    ]
    await ingest.poll(b)
    await delivery.deliver(b)
    root, _ = chat.by_key("root:4")
    ctx = CommandContext("slack", ChannelId("C0HEALTH"), ChatUserId("U0AGENT1"), root)
    answer = (await run_command(b, "similar", ctx)).plain()
    assert answer.startswith("Tickets like #4, most alike first:")
    lines = answer.splitlines()[1:-1]
    assert sorted(line.split(" · ")[0] for line in lines) == ["#1", "#2"]
    assert "#1 · open, answered · health · answer: “Yes, 12951 is cancelled today" in answer
    assert "#2 · open, waiting · health · @citizen: “@SevaHelp train 12951" in answer
    assert "reuse N" in answer
    # Outside a thread the number is needed; a ticket with nothing like it says so.
    elsewhere = CommandContext("slack", ChannelId("C0HEALTH"), ChatUserId("U0AGENT1"))
    assert "Which ticket?" in (await run_command(b, "similar", elsewhere)).plain()
    nothing = (await run_command(b, "similar 3", elsewhere)).plain()
    assert nothing == "No open or answered ticket asks what #3 asks."
