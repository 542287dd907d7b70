"""Oversight figures: first response and resolution per ticket, `stats`, the daily
digest and /metrics (pure maths, then through the core with fakes of X and chat)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bot.config import DigestConfig
from bot.domain import ChannelId, ChatMessage, ChatUserId, MessageId
from bot.figures import Figures, digest_day, percentile, span
from bot.ports import CommandContext
from handlers import delivery, figures, ingest, replies
from handlers.commands import run_command
from tests.fakes import tweet

# --- pure


def test_percentiles_are_values_that_occurred():
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert percentile(values, 50) == 5.0
    assert percentile(values, 90) == 9.0
    assert percentile(values, 100) == 10.0


def test_spans_read_as_people_say_them():
    assert [span(timedelta(seconds=s)) for s in (59, 600, 3660, 47 * 3600, 49 * 3600)] == [
        "0m",
        "10m",
        "1h 1m",
        "47h 0m",
        "2d 1h",
    ]


def test_figures_add_up_across_departments():
    a = Figures(1, 2, 3, 4, 5, (10.0, 30.0))
    b = Figures(10, 20, 30, 40, 50, (20.0,))
    assert a + b == Figures(11, 22, 33, 44, 55, (10.0, 20.0, 30.0))


def test_the_digest_covers_the_local_day_before_it_daylight_saving_included():
    kolkata = ZoneInfo("Asia/Kolkata")
    at = time(18, 0)
    before = datetime(2026, 12, 1, 12, 29, tzinfo=UTC)  # 17:59 IST: yesterday's is the latest
    day, since, until = digest_day(at, kolkata, before)
    assert day == date(2026, 11, 30) and until == datetime(2026, 11, 30, 12, 30, tzinfo=UTC)
    day, since, until = digest_day(at, kolkata, before + timedelta(minutes=1))
    assert day == date(2026, 12, 1) and until - since == timedelta(hours=24)
    london = ZoneInfo("Europe/London")  # the day the clocks go forward has 23 hours
    day, since, until = digest_day(at, london, datetime(2026, 3, 29, 17, 0, tzinfo=UTC))
    assert day == date(2026, 3, 29) and until - since == timedelta(hours=23)


# --- through the core

AGENT = ChatUserId("U0AGENT1")
ROOT = Path(__file__).resolve().parents[2]


def ctx() -> CommandContext:
    return CommandContext("slack", ChannelId("C0HEALTH"), AGENT)


async def answer(b, chat, ticket_key: str, text: str, mid: str) -> None:
    root, out = chat.by_key(ticket_key)
    msg = ChatMessage("slack", ChannelId(out.channel), MessageId(mid), AGENT, text, root)
    await replies.on_message(b, msg)
    await delivery.deliver(b)


async def a_day_of_tickets(world) -> None:
    """Three questions a minute before T0: #1 answered in 10 minutes and closed 2 hours
    in, #2 answered in an hour (past the 30-minute target), #3 never answered."""
    b, x, chat, clock = world
    x.mentions_queue = [tweet(10 + i, f"@SevaHelp oxygen {i}?", author=f"c{i}") for i in range(3)]
    await ingest.poll(b)
    await delivery.deliver(b)
    clock.advance(minutes=9)
    await answer(b, chat, "root:1", "Ward 3 has cylinders.", "9.1")
    clock.advance(minutes=50)
    await answer(b, chat, "root:2", "Call 1075.", "9.2")
    clock.advance(minutes=61)  # T0 + 2h
    await run_command(b, "close 1 resolved", ctx())


async def test_status_shows_first_response_and_resolution_times(world):
    b, x, chat, clock = world
    await a_day_of_tickets(world)
    text = (await run_command(b, "status 1", ctx())).plain()
    assert "first response: 10m · resolved in 2h 1m" in text
    assert "first response: 1h 0m\n" in (await run_command(b, "status 2", ctx())).plain()


async def test_stats_counts_and_times_the_window(world):
    b, x, chat, clock = world
    await a_day_of_tickets(world)
    text = (await run_command(b, "stats health", ctx())).plain()
    assert "Last 7 day(s)" in text
    assert "new 3 · answered 2 · closed 1 · open now 2" in text
    # median (nearest rank) of 10m and 1h: 10m; 90th percentile: 1h. Past the target:
    # #2 (answered after an hour) and #3 (waiting two hours).
    assert "first response: median 10m · 90th percentile 1h 0m · 2 past target" in text
    everyone = (await run_command(b, "stats", ctx())).plain()
    assert "Transport: new 0 · answered 0" in everyone
    assert "All departments: new 3 · answered 2 · closed 1 · open now 2" in everyone
    clock.advance(days=2)
    one_day = (await run_command(b, "stats 1 health", ctx())).plain()
    assert "new 0 · answered 0 · closed 0 · open now 2" in one_day
    assert "median – · 90th percentile – · 1 past target" in one_day
    for bad, says in [("stats 0", "DAYS must be"), ("stats 91", "DAYS must be"), ("stats x", "x")]:
        assert says in (await run_command(b, bad, ctx())).plain()


async def test_the_digest_goes_out_once_a_day_with_the_days_figures(world):
    b, x, chat, clock = world
    b.config = b.config.model_copy(update={"digest": DigestConfig(at=time(18), timezone="UTC")})
    await a_day_of_tickets(world)  # T0 is 10:00 UTC on 4 May 2021; now 12:00
    assert await figures.post_digests(b) == 0  # yesterday's 18:00 is old news by now
    clock.t = datetime(2021, 5, 4, 18, 0, tzinfo=UTC)
    assert await figures.post_digests(b) == 2  # health and transport
    assert await figures.post_digests(b) == 0
    assert await figures.post_digests(replace(b, queued_keys=set())) == 0  # another instance
    await delivery.deliver(b)
    digest = chat.by_key("digest:health:2021-05-04")[1]
    text = digest.body.plain()
    assert text.startswith("Daily digest for Health, the 24 hours to 2021-05-04 18:00 UTC:")
    assert "new 3 · answered 2 · closed 1 · still open 2" in text
    assert "first response: median 10m · 90th percentile 1h 0m · 2 past target" in text
    assert "Oldest open (2 of 2):" in text
    assert re.search(r"#2 \(https://x.com/c1/status/11\) · 8h 1m · @c1: @SevaHelp oxygen 1\?", text)
    assert chat.by_key("digest:transport:2021-05-04")[1].body.plain().endswith("No open tickets.")
    clock.advance(days=1, hours=7)  # the next day's, slept through for more than six hours
    assert await figures.post_digests(replace(b, queued_keys=set())) == 0


async def test_metrics_time_first_responses_and_count_open_tickets_by_department(world):
    b, x, chat, clock = world
    await a_day_of_tickets(world)
    text = b.metrics.render().decode()
    assert 'seva_first_response_seconds_count{department="health"} 2.0' in text
    assert 'seva_first_response_seconds_sum{department="health"} 4200.0' in text
    assert 'seva_first_response_seconds_bucket{department="health",le="600.0"} 1.0' in text
    assert await b.store.run(lambda tx: tx.open_by_department()) == {"health": 2}


def test_the_grafana_dashboard_reads_only_metrics_the_bot_exports():
    from adapters.metrics import PrometheusMetrics

    dashboard = json.loads((ROOT / "ops/grafana/seva-bridge.json").read_text())
    exported = {m.name for m in PrometheusMetrics().registry.collect()}
    exported |= {f"{n}{suffix}" for n in exported for suffix in ("_total", "_bucket", "_count")}
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    assert queries
    used = {name for q in queries for name in re.findall(r"\bseva_[a-z_]+", q)}
    assert used <= exported, used - exported
    assert {"seva_first_response_seconds_bucket", "seva_open_tickets"} <= used
