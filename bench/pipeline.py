"""Benchmark: the bridge's own pipeline, replies, acks under a burst, and history.

    .venv/bin/python bench/pipeline.py [--tickets 800] [--database URL] [--instances 1]
                                       [--history 1000000]

The stand-ins run in a child process (on the other core), the bridge in this one,
pinned to a single core, with Slack pacing off. Figures:
- ingest: poll pages -> stored tickets -> posted thread roots: tickets per second, CPU
  per ticket (this process: the bridge and its database threads), and commits per
  ticket (transactions that wrote; all of them in brackets), for every instance
  together (`--instances 3` runs three bridges on one PostgreSQL database);
- reply: an agent's thread message -> the reply tweet on X, one at a time and 20 at
  once, measured on the stand-ins' clock (Slack's ts to X's created_at); the agents
  post from a process on the other core, as Slack's clients are elsewhere, and their
  CPU is not the bridge's;
- burst: 500 signed events on 50 connections: every ack's time, and /healthz's
  answers sampled meanwhile;
- history (`--history N`, seeded by bench/seed.py first): `list` and `list all`,
  /metrics, the idle process's CPU, and reply latency, with N tickets stored.

It drives the bridge only through its HTTP endpoints, its command entry point and
its database, so it measures an older version of the code just as well.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import create_engine, event, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.config import Env, parse_config  # noqa: E402
from bot.ports import CommandContext  # noqa: E402
from entrypoints.bootstrap import App  # noqa: E402
from handlers import commands, ingest  # noqa: E402
from sandbox.harness import CONFIG, TOKENS  # noqa: E402

CHILD = r"""
import asyncio, sys
from sandbox.harness import Stand
s = Stand().start()
s.x.limits = {k: 10**9 for k in s.x.limits}
# X and Slack run elsewhere: their stand-ins' own pauses are not the bridge's. A full
# collection over the stand-ins' growing state stalled them 20-35 ms now and then, the
# bridge's answers waiting meanwhile; this short-lived process frees by refcount alone.
import gc
gc.disable()
print(s.url, flush=True)
sys.stdin.read()
s.stop()
"""


BURST = r"""
import asyncio, hashlib, hmac, json, sys, time
import aiohttp

events_url, health_url, n, connections, root_ts, secret = sys.argv[1:]
n, connections = int(n), int(connections)


def signed(body):
    ts = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256)
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": "v0=" + mac.hexdigest()}


async def main():
    tag = time.monotonic_ns()
    bodies = [json.dumps({
        "type": "event_callback", "team_id": "T0SEVA", "event_id": f"EvBENCH{tag}{i}",
        "event_time": int(time.time()),
        "event": {"type": "message", "channel": "C0HEALTH", "user": "U0AGENT2",
                  "text": f"note: burst {i}", "ts": f"{int(time.time())}.{i:06d}",
                  "thread_ts": root_ts}}).encode() for i in range(n)]
    acks, statuses, health = [], [], []
    done = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:
        slots = asyncio.Semaphore(connections)

        async def send(body):
            # Timed from when a connection is free to send it, as Slack times its own
            # requests: not the wait in this client's queue of 500.
            async with slots:
                headers = signed(body)
                started = time.perf_counter()
                async with s.post(events_url, data=body, headers=headers) as r:
                    await r.read()
                    statuses.append(r.status)
                acks.append(time.perf_counter() - started)

        async def sample():
            async with aiohttp.ClientSession() as h:
                while not done.is_set():
                    started = time.perf_counter()
                    async with h.get(health_url) as r:
                        await r.read()
                    health.append(time.perf_counter() - started)
                    await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(send(b) for b in bodies))
        done.set()
        await sampler
    print(json.dumps({"acks": acks, "statuses": statuses, "health": health}))


asyncio.run(main())
"""


AGENTS = r"""
import asyncio, json, sys
import aiohttp

url = sys.argv[1]


async def post(s, message):
    async with s.post(url + "/slack/sandbox/messages", json=message) as r:
        r.raise_for_status()
        return (await r.json())["ts"]


async def created(s, texts):
    async with s.get(url + "/x/sandbox/state") as r:
        r.raise_for_status()
        tweets = (await r.json())["tweets"]
    return {t["text"]: t["created_at"] for t in tweets if t["text"] in texts}


async def main():
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as s:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            ask = json.loads(line)
            if "messages" in ask:
                got = await asyncio.gather(*(post(s, m) for m in ask["messages"]))
            else:
                got = await created(s, set(ask["texts"]))
            print(json.dumps(got), flush=True)


asyncio.run(main())
"""


WARM_UP = 20  # mentions polled and posted before the ingest figures are taken
LAST_POST = "SELECT COALESCE(MAX(id), 0) FROM outbox"


def cpu() -> float:
    """CPU seconds this process has used (every thread: the bridge's database ones too)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _letters(n: int) -> str:
    """A number written in letters: a tag in a reply text that no safety check reads as
    a phone, Aadhaar or account number (which would hold the reply for confirmation)."""
    out = ""
    while n:
        n, r = divmod(n, 26)
        out += chr(ord("a") + r)
    return out or "a"


class Commits:
    """Counts committed transactions on the bridges' engines, and those that wrote."""

    def __init__(self) -> None:
        self.all = 0
        self.wrote = 0

    def watch(self, engine: Any) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _write(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
            if sql.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
                conn.info["wrote"] = True

        @event.listens_for(engine, "commit")
        def _commit(conn: Any) -> None:
            self.all += 1
            if conn.info.pop("wrote", False):
                self.wrote += 1

        @event.listens_for(engine, "rollback")
        def _rollback(conn: Any) -> None:
            conn.info.pop("wrote", None)


async def _json(s: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with s.request(method, url, **kw) as r:
        r.raise_for_status()
        return await r.json()


def _signed(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(
        TOKENS["SLACK_SIGNING_SECRET"].encode(), f"v0:{ts}:".encode() + body, hashlib.sha256
    )
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
    }


class Bench:
    def __init__(self, args: argparse.Namespace, url: str, db: str) -> None:
        self.args, self.url, self.db = args, url, db
        self.apps: list[App] = []
        self.commits = Commits()
        self.agent: Any = None  # the agents' process: see agents()
        self.probe = create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))

    def count(self, sql: str) -> int:
        with self.probe.connect() as conn:
            return int(conn.execute(text(sql)).scalar() or 0)

    async def sql(self, sql: str) -> int:
        return await asyncio.to_thread(self.count, sql)

    async def start_apps(self, n: int) -> None:
        config = dict(CONFIG)
        config["x"] = {"poll_seconds": 3600}  # polls are driven by hand below
        cfg = parse_config(config, "bench")
        for _ in range(n):
            env = Env(  # type: ignore[call-arg]
                _env_file=None,
                SEVA_DATABASE_URL=self.db,
                SEVA_HTTP_PORT=0,
                X_API_BASE_URL=self.url + "/x",
                SLACK_API_BASE_URL=self.url + "/slack/api/",
                **TOKENS,
            )
            app = App(env, cfg)
            await app.start()
            assert app.store is not None
            self.commits.watch(app.store.engine)
            self.apps.append(app)
        assert self.apps[0].http is not None
        self.events_url = f"http://127.0.0.1:{self.apps[0].http.port}/slack/events"
        self.base = f"http://127.0.0.1:{self.apps[0].http.port}"

    async def stop_apps(self) -> None:
        for app in self.apps:
            await app.stop()
        self.apps.clear()

    # --- ingest

    async def roots_landed(self, after: int, n: int) -> int:
        """Waits until `n` thread roots queued after outbox id `after` have landed (60 s
        at most); how many did. Only those are counted (through the key), so the probe
        costs nothing however much history is stored: it runs on the bridge's core."""
        landed = f"SELECT COUNT(*) FROM outbox WHERE id > {after} AND is_root AND state = 'done'"
        done = 0
        for _ in range(1200):
            done = await self.sql(landed)
            if done >= n:
                break
            await asyncio.sleep(0.05)
        return done

    async def ingest(self, s: aiohttp.ClientSession) -> None:
        n = self.args.tickets
        # The bridges start before the mentions exist, and the jobs they run once at
        # start (the escalation scan, hand-offs, user groups, digests, housekeeping)
        # end before the clock starts: they are no cost of a ticket. So does a first
        # poll of a few mentions, which compiles each statement once (SQLAlchemy's
        # cache) and configures the ORM, as any running bridge has long done.
        await self.start_apps(self.args.instances)
        await asyncio.sleep(2)
        sem = asyncio.Semaphore(32)

        async def tweet(i: int) -> None:
            async with sem:
                await _json(
                    s,
                    "POST",
                    self.url + "/x/sandbox/tweets",
                    json={"username": f"c{i % 500}", "text": f"@SevaHelp oxygen need {i}"},
                )

        warm = await self.sql(LAST_POST)
        await asyncio.gather(*(tweet(-1 - i) for i in range(WARM_UP)))
        await asyncio.gather(*(ingest.poll(app.bridge) for app in self.apps if app.bridge))
        await self.roots_landed(warm, WARM_UP)
        t0 = time.perf_counter()
        await asyncio.gather(*(tweet(i) for i in range(n)))
        print(f"seeded {n} mentions in {time.perf_counter() - t0:.1f}s")
        last = await self.sql(LAST_POST)
        started, cpu0 = time.perf_counter(), cpu()
        all0, wrote0 = self.commits.all, self.commits.wrote
        polls = [  # the poll the scheduler would run next (one instance holds the lease)
            asyncio.ensure_future(ingest.poll(app.bridge)) for app in self.apps if app.bridge
        ]
        posted = await self.roots_landed(last, n)
        elapsed, used = time.perf_counter() - started, cpu() - cpu0
        await asyncio.gather(*polls)
        print(
            f"ingest: {posted} tickets polled, stored and posted as thread roots in "
            f"{elapsed:.2f}s = {posted / elapsed:.0f} tickets/s "
            f"({self.args.instances} instance(s), one core, pacing off)"
        )
        print(
            f"ingest: CPU {used / posted * 1000:.2f} ms per ticket; "
            f"{(self.commits.wrote - wrote0) / posted:.2f} commits per ticket that wrote "
            f"({(self.commits.all - all0) / posted:.2f} with read-only ones)"
        )

    # --- replies

    async def roots(self, s: aiohttp.ClientSession) -> list[dict[str, Any]]:
        state = await _json(s, "GET", self.url + "/slack/sandbox/state")
        return [
            m
            for c in state["channels"]
            if c["id"] == "C0HEALTH"
            for m in c["messages"]
            if (m.get("metadata") or {}).get("event_type") == "seva_ticket"
        ]

    async def agents(self) -> None:
        """The agents' side (Slack's clients and a look at X), in a process of its own on
        the other core, as it would be elsewhere: its work is not the bridge's."""
        self.agent = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            AGENTS,
            self.url,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        if hasattr(os, "sched_setaffinity"):
            other = {1} if (os.cpu_count() or 1) > 1 else {0}
            os.sched_setaffinity(self.agent.pid, other)

    async def ask(self, what: dict[str, Any]) -> Any:
        assert self.agent.stdin is not None and self.agent.stdout is not None
        self.agent.stdin.write(json.dumps(what).encode() + b"\n")
        await self.agent.stdin.drain()
        return json.loads(await self.agent.stdout.readline())

    async def replies(self, roots: list[dict[str, Any]], at_once: int, label: str) -> list[float]:
        """Answers each root's thread, `at_once` at a time; each latency, on the stand-ins'
        clock: the agent's message (Slack ts) to the tweet on X (its created_at)."""
        latencies: list[float] = []
        cpu0 = cpu()
        for start in range(0, len(roots), at_once):
            group = roots[start : start + at_once]
            tag = _letters(time.monotonic_ns())
            last = await self.sql("SELECT COALESCE(MAX(id), 0) FROM replies")
            messages = [
                {
                    "user": "U0AGENT1",
                    "channel": "C0HEALTH",
                    "text": f"Answer {tag}-{i}: call 1075.",
                    "thread_ts": root["ts"],
                }
                for i, root in enumerate(group)
            ]
            posted = await self.ask({"messages": messages})
            texts = {m["text"]: float(ts) for m, ts in zip(messages, posted, strict=True)}
            sent = (  # through the key: a cheap look whatever the history
                f"SELECT COUNT(*) FROM replies WHERE id > {last} AND state = 'sent' "
                f"AND text LIKE 'Answer {tag}-%'"
            )
            for _ in range(1500):  # 30 s at most; a look at the bridge's database is cheap
                if await self.sql(sent) >= len(texts):
                    break
                await asyncio.sleep(0.02)
            found = await self.ask({"texts": list(texts)})
            for body, created in found.items():
                at = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
                latencies.append(max(0.0, at - texts[body]))
            # The confirmations and marks that follow each tweet (and Slack's echoes of
            # them) are done before the next round: each round is a burst of its own.
            await asyncio.sleep(self.args.gap)
        await asyncio.sleep(0.5)
        used = (cpu() - cpu0) / max(1, len(latencies))
        print(
            f"reply {label}: thread message -> tweet on X, n={len(latencies)}: "
            f"median {ms(statistics.median(latencies))}, p95 {ms(pct(latencies, 95))}, "
            f"max {ms(max(latencies))}; CPU {used * 1000:.1f} ms a reply"
        )
        return latencies

    # --- a burst of events

    async def burst(self, s: aiohttp.ClientSession, root: dict[str, Any]) -> None:
        """500 signed events on 50 connections, sent from another process on the other
        core (as Slack's would arrive from elsewhere), /healthz sampled meanwhile."""
        n, connections = self.args.burst, 50
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            BURST,
            self.events_url,
            self.base + "/healthz",
            str(n),
            str(connections),
            root["ts"],
            TOKENS["SLACK_SIGNING_SECRET"],
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        if hasattr(os, "sched_setaffinity"):
            other = {1} if (os.cpu_count() or 1) > 1 else {0}
            os.sched_setaffinity(proc.pid, other)
        out, _ = await proc.communicate()
        got = json.loads(out)
        acks, health, statuses = got["acks"], got["health"], got["statuses"]
        print(
            f"burst: {n} signed events on {connections} connections: acks p50 "
            f"{ms(pct(acks, 50))}, p99 {ms(pct(acks, 99))}, max {ms(max(acks))}, "
            f"statuses {sorted(set(statuses))}; /healthz max {ms(max(health))} "
            f"over {len(health)} samples"
        )

    # --- history

    async def timed(self, what: str, call: Callable[[], Awaitable[Any]], n: int) -> None:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            await call()
            times.append(time.perf_counter() - started)
        print(
            f"{what}: p50 {ms(pct(times, 50))}, p95 {ms(pct(times, 95))}, "
            f"max {ms(max(times))} (n={n})"
        )

    async def history(self, s: aiohttp.ClientSession) -> None:
        stored = await self.sql("SELECT COUNT(*) FROM tickets")
        print(f"history: {stored:,} tickets stored")
        b = self.apps[0].bridge
        assert b is not None
        ctx = CommandContext("slack", "C0HEALTH", "U0AGENT1")  # type: ignore[arg-type]
        for words in ("list", "list all", "list health", "list all transport"):
            await self.timed(
                f"`{words}` at {stored:,}", lambda w=words: commands.run_command(b, w, ctx), 100
            )

        async def metrics() -> None:
            async with s.get(self.base + "/metrics") as r:
                await r.read()

        await self.timed(f"/metrics at {stored:,}", metrics, 100)
        seconds = self.args.idle
        await asyncio.sleep(2)  # let the last replies settle
        cpu0, started = cpu(), time.perf_counter()
        await asyncio.sleep(seconds)
        share = (cpu() - cpu0) / (time.perf_counter() - started)
        print(f"idle at {stored:,}: {share * 100:.2f}% of a core over {seconds:.0f}s")


async def run(args: argparse.Namespace, url: str) -> None:
    if args.database:
        await measure(args, url, args.database)
        return
    with tempfile.TemporaryDirectory() as scratch:  # a fresh SQLite file, removed after
        await measure(args, url, f"sqlite:///{Path(scratch) / 'bench.db'}")


async def measure(args: argparse.Namespace, url: str, db: str) -> None:
    if args.history:
        from bench.seed import seed

        have = 0
        try:
            have = Bench(args, url, db).count("SELECT COUNT(*) FROM tickets")
        except Exception:
            have = 0
        if have < args.history:
            t0 = time.perf_counter()
            seed(db, args.history - have)
            print(f"seeded {args.history - have:,} tickets in {time.perf_counter() - t0:.0f}s")
    from adapters.db.store import make_engine
    from entrypoints import migrate

    engine = make_engine(db)
    migrate.upgrade(engine)  # `seva migrate`, as an operator would before starting
    engine.dispose()
    bench = Bench(args, url, db)
    async with aiohttp.ClientSession() as s:
        await bench.ingest(s)
        await _json(s, "POST", url + "/slack/sandbox/config", json={"events_url": bench.events_url})
        roots = await bench.roots(s)
        await bench.agents()
        await bench.replies(roots[: args.replies], 1, "one at a time")
        rest = roots[args.replies : args.replies + args.rounds * args.concurrent]
        await bench.replies(rest, args.concurrent, f"{args.concurrent} at once")
        if args.burst:
            await bench.burst(s, roots[-1])
        if args.history:
            await bench.history(s)
    await bench.stop_apps()
    if bench.agent.stdin is not None:
        bench.agent.stdin.close()
    await bench.agent.wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tickets", type=int, default=800, help="at most 800: X serves no more")
    p.add_argument("--replies", type=int, default=30)
    p.add_argument("--concurrent", type=int, default=20)
    p.add_argument("--rounds", type=int, default=5, help="of concurrent replies")
    p.add_argument("--gap", type=float, default=0.3, help="seconds between reply rounds")
    p.add_argument("--burst", type=int, default=500)
    p.add_argument("--instances", type=int, default=1, help="bridges on one database")
    p.add_argument("--history", type=int, default=0, help="seed this many tickets first")
    p.add_argument("--idle", type=float, default=30, help="seconds of idle CPU to measure")
    p.add_argument("--profile", action="store_true", help="print where the time goes")
    p.add_argument("--sort", default="cumulative")
    p.add_argument("--database", help="SQLAlchemy URL (default: a fresh SQLite file)")
    args = p.parse_args()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {0})
            other = {1} if (os.cpu_count() or 1) > 1 else {0}
            os.sched_setaffinity(child.pid, other)
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(asyncio.run, run(args, url))
            pstats.Stats(prof).sort_stats(args.sort).print_stats(40)
        else:
            asyncio.run(run(args, url))
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(10)


if __name__ == "__main__":
    main()
