"""Seeds a database with a help desk's history, so the benchmarks measure at scale.

    .venv/bin/python bench/seed.py --database sqlite:///big.db --tickets 1000000

A year and a half of Indian Railways' volume: tickets spread over 540 days, each with
its query tweet, thread root (a landed outbox post), audit entries and, for the ones
answered, the public reply (reply, part, tweet) and its confirmation; 98% closed; of
the open ones most answered, the newest few hundred waiting. The similar-tickets
indexes (bot/similarity terms, FTS5 or tsvector) are filled as ingest fills them.
Rows go in with bulk INSERTs, 10,000 at a time; the schema is migrated first.

The departments and channels are those of sandbox/harness.py's CONFIG, so a bridge
started with that config serves this history.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.db.store import make_engine
from adapters.db.tables import (
    AuditRow,
    OutboxRow,
    ReplyPartRow,
    ReplyRow,
    TicketRow,
    TicketTweetRow,
)
from bot.similarity import terms
from entrypoints import migrate

BATCH = 10_000
DAYS = 540
QUESTIONS = [
    "@SevaHelp my train {n} is late by three hours, when will it reach?",
    "@SevaHelp need oxygen cylinder urgently for my father in ward {n}",
    "@SevaHelp refund for cancelled ticket PNR 45{n} not received yet",
    "@SevaHelp hospital bed availability near sector {n}?",
    "@SevaHelp bus route {n} is not running today, any update?",
    "@SevaHelp मेरी ट्रेन {n} कब आएगी? बहुत देर हो गई है",
    "@SevaHelp vaccine slot at the district hospital for {n} people?",
    "@SevaHelp coach {n} has no water since morning #railways",
]
DEPARTMENTS = [("health", "C0HEALTH"), ("transport", "C0TRANSPORT")]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--database", required=True, help="SQLAlchemy URL")
    p.add_argument("--tickets", type=int, default=1_000_000)
    p.add_argument("--open", type=float, default=0.02, help="share of tickets still open")
    p.add_argument("--waiting", type=int, default=300, help="open tickets nobody answered")
    args = p.parse_args()
    seed(args.database, args.tickets, args.open, args.waiting)


def seed(url: str, tickets: int, open_share: float = 0.02, waiting: int = 300) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    postgres = engine.dialect.name == "postgresql"
    now = datetime.now(UTC)
    first = now - timedelta(days=DAYS)
    opened = max(int(tickets * open_share), waiting)
    terms_of: dict[str, tuple[str, ...]] = {}
    df: Counter[str] = Counter()
    started = time.monotonic()
    with engine.begin() as conn:
        start = conn.execute(text("SELECT COALESCE(MAX(number), 0) FROM tickets")).scalar()
        start = int(start or 0)
    number = start
    reply_id = _max(engine, "replies")
    while number < start + tickets:
        n = min(BATCH, start + tickets - number)
        rows: dict[str, list[dict[str, Any]]] = {
            "tickets": [],
            "tweets": [],
            "outbox": [],
            "replies": [],
            "parts": [],
            "audit": [],
            "search": [],
            "answered": [],
        }
        for _ in range(n):
            number += 1
            i = number - start  # 1..tickets, oldest first
            created = first + (now - first) * (i / (tickets + 1))
            still_open = i > tickets - opened
            unanswered = i > tickets - waiting
            dept, channel = DEPARTMENTS[i % len(DEPARTMENTS)]
            question = QUESTIONS[i % len(QUESTIONS)].format(n=i % 997)
            tweet = str(10**17 + number * 2)
            answered_at = None if unanswered else created + timedelta(minutes=12)
            rows["tickets"].append(
                {
                    "number": number,
                    "tweet_id": tweet,
                    "conversation_id": tweet,
                    "department": dept,
                    "state": "open" if still_open else "closed",
                    "author_id": str(3000 + i % 50_000),
                    "author_username": f"citizen{i % 50_000}",
                    "text": question,
                    "created_at": created,
                    "platform": "slack",
                    "channel": channel,
                    "root": f"{int(created.timestamp())}.{number % 1_000_000:06d}",
                    "assignee": "U0AGENT1" if i % 3 == 0 else None,
                    "oncall": "U0AGENT1",
                    "reply_to": tweet,
                    "first_response_at": answered_at,
                    "closed_at": None if still_open else created + timedelta(hours=2),
                    "escalated_at": None,
                    "urgent": i % 50 == 0,
                }
            )
            rows["tweets"].append(
                {"tweet_id": tweet, "ticket": number, "kind": "query", "created_at": created}
            )
            rows["outbox"].append(_root_post(number, channel, tweet, created))
            rows["audit"].append(_audit(number, created, "x", "created", f"→ {dept}"))
            found = terms_of.get(question)
            if found is None:
                found = terms_of[question] = terms(question)
            df.update(set(found))
            rows["search"].append({"t": number, "terms": " ".join(found), "a": list(found)})
            if answered_at is None:
                continue
            reply_id += 1
            reply_tweet = str(10**17 + number * 2 + 1)
            rows["replies"].append(
                {
                    "id": reply_id,
                    "ticket": number,
                    "platform": "slack",
                    "channel": channel,
                    "message_id": f"{int(answered_at.timestamp())}.{number % 1_000_000:06d}",
                    "author": "U0AGENT1",
                    "text": "Please call 139 (railways) or 1075 (health); we have passed it on.",
                    "in_reply_to": tweet,
                    "state": "sent",
                    "created_at": answered_at,
                }
            )
            rows["parts"].append(
                {
                    "reply": reply_id,
                    "idx": 0,
                    "text": "Please call 139 (railways) or 1075 (health); we have passed it on.",
                    "state": "sent",
                    "tweet_id": reply_tweet,
                    "attempts": 1,
                }
            )
            rows["tweets"].append(
                {"tweet_id": reply_tweet, "ticket": number, "kind": "reply", "created_at": created}
            )
            rows["audit"].append(_audit(number, answered_at, "x", "replied", reply_tweet))
            rows["answered"].append({"t": number, "terms": " ".join(found)})
        _insert(engine, rows, postgres)
        done = number - start
        rate = done / (time.monotonic() - started)
        print(f"\r{done:,} tickets ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    _finish(engine, postgres, df)
    engine.dispose()


def _root_post(number: int, channel: str, tweet: str, at: datetime) -> dict[str, Any]:
    return {
        "key": f"root:{number}",
        "ticket": number,
        "platform": "slack",
        "channel": channel,
        "in_thread": False,
        "is_root": True,
        "mark": None,
        "body": [{"t": "text", "text": f"Ticket #{number}"}],
        "actions": [],
        "tweet_id": tweet,
        "state": "done",
        "message_id": f"{int(at.timestamp())}.{number % 1_000_000:06d}",
        "attempts": 1,
        "created_at": at,
    }


def _audit(number: int, at: datetime, actor: str, action: str, detail: str) -> dict[str, Any]:
    return {"ticket": number, "at": at, "actor": actor, "action": action, "detail": detail}


def _insert(engine: Any, rows: dict[str, list[dict[str, Any]]], postgres: bool) -> None:
    with engine.begin() as conn:
        conn.execute(TicketRow.__table__.insert(), rows["tickets"])
        conn.execute(TicketTweetRow.__table__.insert(), rows["tweets"])
        conn.execute(OutboxRow.__table__.insert(), rows["outbox"])
        if rows["replies"]:
            conn.execute(ReplyRow.__table__.insert(), rows["replies"])
            conn.execute(ReplyPartRow.__table__.insert(), rows["parts"])
        conn.execute(AuditRow.__table__.insert(), rows["audit"])
        answered = {r["t"] for r in rows["answered"]}
        if postgres:
            conn.execute(
                text(
                    "INSERT INTO ticket_search (ticket, terms, lexemes, answered) VALUES "
                    "(:t, :terms, array_to_tsvector(CAST(:a AS text[])), :answered)"
                ),
                [{**r, "answered": r["t"] in answered} for r in rows["search"]],
            )
        else:
            conn.execute(
                text("INSERT INTO ticket_search (rowid, terms) VALUES (:t, :terms)"),
                [{"t": r["t"], "terms": r["terms"]} for r in rows["search"]],
            )
            if rows["answered"]:
                conn.execute(
                    text("INSERT INTO answered_search (rowid, terms) VALUES (:t, :terms)"),
                    rows["answered"],
                )


def _finish(engine: Any, postgres: bool, df: Counter[str]) -> None:
    """The terms' document frequencies, and fresh planner statistics."""
    with engine.begin() as conn:
        for term, count in df.items():
            conn.execute(  # the statement ingest uses (adapters/db/uow.py)
                text(
                    "INSERT INTO search_terms (term, df) VALUES (:term, :n) "
                    "ON CONFLICT (term) DO UPDATE SET df = search_terms.df + :n"
                ),
                {"term": term, "n": count},
            )
        if postgres:  # rows went in with their keys: the sequences start after them
            for table, key in (("tickets", "number"), ("replies", "id")):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', '{key}'), "
                        f"(SELECT MAX({key}) FROM {table}))"
                    )
                )
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("ANALYZE"))


def _max(engine: Any, table: str) -> int:
    with engine.begin() as conn:
        return int(conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {table}")).scalar() or 0)


if __name__ == "__main__":
    main()
