"""Which earlier tickets asked the same thing, on SQLite (FTS5) and PostgreSQL (tsvector):
the labelled set in tests/unit/corpus/similar.yaml, scored and printed, and the words
of India's scripts kept whole in both indexes."""

from __future__ import annotations

from datetime import datetime
from itertools import count
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from adapters.db import uow
from adapters.db.store import Store
from bot.domain import ChannelId, ChatUserId, DepartmentId
from bot.ports import NewTicket
from bot.similarity import terms
from entrypoints import migrate
from handlers.similar import find_similar
from tests.conftest import migrated_store
from tests.fakes import FakeClock, tweet

CORPUS = yaml.safe_load((Path(__file__).parents[1] / "unit/corpus/similar.yaml").read_text())


@pytest.fixture
def store(db_url):
    s = migrated_store(db_url, FakeClock())
    yield s
    s.dispose()


_ids = count(100)


def open_tickets(store: Store, texts: list[str], *, answered: bool) -> list[int]:
    """Tickets as ingest opens them (indexed in the same transaction), answered or not."""
    with store.tx() as tx:
        opened = tx.create_tickets(
            [
                NewTicket(
                    tweet(next(_ids), text, author_id=str(next(_ids))),
                    DepartmentId("health"),
                    "slack",
                    ChannelId("C1"),
                    ChatUserId("U1"),
                )
                for text in texts
            ]
        )
        tx.index_tickets([(t.number, terms(t.text)) for t in opened])
        if answered:
            for t in opened:
                tx.first_response(t.number)
    return [t.number for t in opened]


def test_the_labelled_set_precision_and_recall_of_the_top_three(store, db_url, capsys):
    """Every mention of the set is stored as an answered ticket, then looked up as if it
    had just come in; its top three are scored against the labels."""
    docs: list[tuple[str | None, str]] = [
        (g["id"], text) for g in CORPUS["groups"] for text in g["asked"]
    ] + [(None, text) for text in CORPUS["alone"]]
    numbers = open_tickets(store, [text for _, text in docs], answered=True)
    group = dict(zip(numbers, (g for g, _ in docs), strict=True))
    right = wrong = expected = 0
    mistakes: list[str] = []
    with store.tx() as tx:
        for number, (g, text) in zip(numbers, docs, strict=True):
            partners = {n for n, h in group.items() if g is not None and h == g and n != number}
            expected += len(partners)
            found = find_similar(tx, terms(text), answered=True, exclude={number})
            for match in found:
                if match.ticket in partners:
                    right += 1
                else:
                    wrong += 1
                    mistakes.append(f"  wrong {match.score:.2f}: {text!r} ~ #{match.ticket}")
            for missed in partners - {m.ticket for m in found}:
                mistakes.append(f"  missed: {text!r} ~ #{missed}")
    precision = right / (right + wrong)
    recall = right / expected
    languages = {"Latin", "Devanagari", "Tamil", "Bengali", "Telugu"}
    with capsys.disabled():
        dialect = db_url.split(":", 1)[0].split("+", 1)[0]
        print(
            f"\nsimilar ({dialect}): {len(docs)} mentions, {expected} same-question pairs, "
            f"{len(languages)} scripts: precision {precision:.2f}, recall {recall:.2f} "
            f"(top three, {right} right, {wrong} wrong)"
        )
        print("\n".join(mistakes))
    assert precision >= 0.9
    assert recall >= 0.75


def test_vowel_signs_and_viramas_stay_inside_their_word(store):
    """FTS5's default tokenizer would cut ट्रेन at its virama and vowel sign into ट, र, न:
    then a search for the single letters would find it, and `ट्रेनिंग` would share them."""
    (train,) = open_tickets(store, ["ट्रेन कब आएगी"], answered=True)
    open_tickets(store, ["ट्रेनिंग सेंटर कहाँ है"], answered=True)
    with store.tx() as tx:
        assert [n for n, _ in tx.search({"ट्रेन": 1.0}, answered=True, limit=5)] == [train]
        assert tx.search({"ट": 1.0}, answered=True, limit=5) == []
        assert tx.search({"न": 1.0}, answered=False, limit=5) == []
        assert tx.term_counts(["ट्रेन", "ट"]) == {"ट्रेन": 1}


def test_only_answered_tickets_are_suggested_and_open_ones_are_found_by_similar(store):
    (answered,) = open_tickets(store, ["@SevaHelp is train 12951 cancelled today?"], answered=True)
    (waiting,) = open_tickets(store, ["@SevaHelp train 12951 cancelled today??"], answered=False)
    query = terms("@SevaHelp train 12951 cancelled or running?")
    with store.tx() as tx:
        assert [m.ticket for m in find_similar(tx, query, answered=True)] == [answered]
        both = {m.ticket for m in find_similar(tx, query, answered=False)}
    assert both == {answered, waiting}


def test_only_the_newest_tickets_are_searched_so_a_lookup_never_grows(store, monkeypatch):
    """A lookup ranks only the newest SEARCH_WINDOW tickets (100,000 in production: two
    weeks of a busy desk); an answer older than that is not suggested."""
    monkeypatch.setattr(uow, "SEARCH_WINDOW", 3)
    (old,) = open_tickets(store, ["@SevaHelp oxygen cylinder refill in Agra?"], answered=True)
    (recent,) = open_tickets(store, ["@SevaHelp oxygen cylinder refill, Agra"], answered=True)
    open_tickets(store, ["@SevaHelp bus 12 late", "@SevaHelp water supply cut"], answered=False)
    with store.tx() as tx:
        found = [m.ticket for m in find_similar(tx, terms("oxygen refill Agra"), answered=True)]
    assert found == [recent] and old not in found


def test_forgetting_a_ticket_takes_it_out_of_the_index(store):
    (gone,) = open_tickets(store, ["@SevaHelp oxygen cylinder refill in Lucknow?"], answered=True)
    with store.tx() as tx:
        tx.forget_search(gone)
    with store.tx() as tx:
        query = terms("@SevaHelp Lucknow oxygen cylinder refill")
        assert find_similar(tx, query, answered=True) == []
        assert find_similar(tx, query, answered=False) == []
        assert tx.term_counts(query) == {}


def test_tickets_stored_before_the_index_existed_are_indexed_by_the_migration(db_url):
    store = Store(db_url, clock=FakeClock())
    migrate.upgrade(store.engine, "0002")
    with store.engine.begin() as conn:
        for number, text, answered in (
            (1, "@SevaHelp is train 12951 cancelled today?", True),
            (2, "@SevaHelp train 12951 cancelled today??", False),
        ):
            conn.execute(
                sa.text(
                    "INSERT INTO tickets (number, tweet_id, department, state, author_id, "
                    "author_username, text, created_at, platform, channel, reply_to, "
                    "first_response_at) VALUES (:n, :tid, 'health', 'open', '2000', 'c', :text, "
                    ":at, 'slack', 'C1', :tid, :answered_at)"
                ),
                {
                    "n": number,
                    "tid": str(100 + number),
                    "text": text,
                    "at": datetime(2021, 5, 4),
                    "answered_at": datetime(2021, 5, 4, 1) if answered else None,
                },
            )
    migrate.upgrade(store.engine)
    query = terms("@SevaHelp is 12951 cancelled?")
    with store.tx() as tx:
        assert [m.ticket for m in find_similar(tx, query, answered=True)] == [1]
        assert {m.ticket for m in find_similar(tx, query, answered=False)} == {1, 2}
        assert tx.term_counts(["12951"]) == {"12951": 2}
    store.dispose()
