"""The retention purge (SPEC section 5), driven by the fake clock: closed tickets older
than `safety.retention_days` lose the citizen's text and name; ids and figures stay."""

from __future__ import annotations

import json

from sqlalchemy import select

from adapters.db.tables import AuditRow, OutboxRow, ReplyPartRow, ReplyRow
from bot.config import parse_config
from bot.domain import TicketState
from bot.similarity import terms
from handlers import delivery, ingest, replies, retention
from handlers.commands import run_command
from handlers.similar import find_similar
from tests.fakes import tweet
from tests.unit.conftest import CONFIG
from tests.unit.test_core_flow import thread_msg
from tests.unit.test_retract import in_thread

QUESTION = "@SevaHelp oxygen cylinder refill near AIIMS? call me on 98765 43210"


def stored(b, number: int):
    """What the database keeps about ticket `number` and its chat posts and replies."""

    def read(tx):
        s = tx.s
        return (
            tx.ticket(number),
            [
                json.dumps(r.body)
                for r in s.scalars(select(OutboxRow).where(OutboxRow.ticket == number))
            ],
            [r.text for r in s.scalars(select(ReplyRow).where(ReplyRow.ticket == number))],
            [
                p.text
                for p in s.scalars(
                    select(ReplyPartRow)
                    .join(ReplyRow, ReplyPartRow.reply == ReplyRow.id)
                    .where(ReplyRow.ticket == number)
                )
            ],
            [
                (a.actor, a.action, a.detail)
                for a in s.scalars(select(AuditRow).where(AuditRow.ticket == number))
            ],
        )

    return b.store.run(read)


async def test_closed_tickets_past_the_period_lose_the_citizens_words_and_name(world):
    b, x, chat, clock = world
    b.config = parse_config({**CONFIG, "safety": {"retention_days": 30}}, "test.yaml")
    x.mentions_queue = [tweet(10, QUESTION), tweet(11, "@SevaHelp oxygen at the hospital?")]
    await ingest.poll(b)
    await delivery.deliver(b)
    await replies.on_message(b, thread_msg(chat, "root:1", "Refills at counter 2, citizen."))
    await delivery.deliver(b)
    await run_command(b, "close 1", in_thread(chat))
    await delivery.deliver(b)  # the closed mark on the root goes out too
    before, *_ = await stored(b, 1)

    async def found_by_its_words() -> list[int]:
        words = terms(QUESTION)
        matches = await b.store.run(lambda tx: find_similar(tx, words, answered=False, limit=5))
        return [m.ticket for m in matches]

    assert 1 in await found_by_its_words()
    clock.advance(days=29)
    assert await retention.purge(b) == 0  # not yet
    clock.advance(days=2)
    assert await retention.purge(b) == 1

    ticket, posts, reply_texts, part_texts, audit = await stored(b, 1)
    assert ticket is not None and ticket.text == "" and ticket.author_username == ""
    assert "98765" not in " ".join(posts) and "citizen" not in " ".join(posts)
    assert all("removed after the retention period" in p for p in posts)
    assert reply_texts == [""] and part_texts == [""]
    assert not any("@citizen" in detail for *_, detail in audit)
    assert audit[-1] == ("seva", "purged", "closed over 30 days ago")
    # Ids and figures stay: the tweet, the citizen's X id, the times, the department.
    assert (ticket.tweet_id, ticket.author_id, ticket.department) == ("10", "2000", "health")
    assert ticket.created_at == before.created_at and ticket.first_response_at is not None
    assert ticket.url.startswith("https://x.com/i/status/10")
    # Nothing finds it by its words any more; the open ticket keeps everything.
    assert 1 not in await found_by_its_words()
    other, *_ = await stored(b, 2)
    assert other is not None and other.text == "@SevaHelp oxygen at the hospital?"
    status = (await run_command(b, "status 1", in_thread(chat))).plain()
    assert "From (name removed)" in status
    assert await retention.purge(b) == 0  # once


async def test_a_reopened_ticket_is_purged_again_once_closed_long_enough(world):
    b, x, chat, clock = world
    b.config = parse_config({**CONFIG, "safety": {"retention_days": 30}}, "test.yaml")
    x.mentions_queue = [tweet(10, QUESTION)]
    await ingest.poll(b)
    await delivery.deliver(b)
    await run_command(b, "close 1", in_thread(chat))
    await delivery.deliver(b)  # the closed mark on the root goes out too
    clock.advance(days=31)
    assert await retention.purge(b) == 1
    x.mentions_queue.append(tweet(20, "@SevaHelp still no refill, 98765 43210", replied_to="10"))
    await ingest.poll(b)  # the follow-up reopens it
    await delivery.deliver(b)
    ticket, posts, *_ = await stored(b, 1)
    assert ticket is not None and ticket.state is TicketState.OPEN
    assert any("still no refill" in p for p in posts)
    await run_command(b, "close 1", in_thread(chat))
    await delivery.deliver(b)  # the closed mark on the root goes out too
    clock.advance(days=31)
    assert await retention.purge(b) == 1
    _, posts, *_ = await stored(b, 1)
    assert not any("still no refill" in p for p in posts)


async def test_without_retention_days_nothing_is_purged(world):
    b, x, chat, clock = world
    x.mentions_queue = [tweet(10, QUESTION)]
    await ingest.poll(b)
    await delivery.deliver(b)
    await run_command(b, "close 1", in_thread(chat))
    await delivery.deliver(b)  # the closed mark on the root goes out too
    clock.advance(days=3650)
    assert await retention.purge(b) == 0
    ticket, *_ = await stored(b, 1)
    assert ticket is not None and ticket.text == QUESTION
