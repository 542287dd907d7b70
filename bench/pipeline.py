"""Benchmark: the bridge's own pipeline, and how fast a thread reply reaches X.

    .venv/bin/python bench/pipeline.py [--tickets 800] [--replies 30] [--database URL]

The stand-ins run in a child process (on the other core), the bridge in this one,
pinned to a single core, with Slack pacing off. Figures:
- ingest: poll pages -> stored tickets -> posted thread roots, tickets per second;
- reply: an agent's thread message (as Slack delivers it) -> reply tweet on X, latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.config import Env, parse_config  # noqa: E402
from entrypoints.bootstrap import App  # noqa: E402
from sandbox.harness import CONFIG, TOKENS  # noqa: E402

CHILD = r"""
import asyncio, sys
from sandbox.harness import Stand
s = Stand().start()
s.x.limits = {k: 10**9 for k in s.x.limits}
print(s.url, flush=True)
sys.stdin.read()
s.stop()
"""


async def _json(session: aiohttp.ClientSession, method: str, url: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    async with session.request(method, url, **kw) as r:
        r.raise_for_status()
        return await r.json()


async def bench(args: argparse.Namespace, url: str) -> None:
    config = dict(CONFIG)
    config["x"] = {"poll_seconds": 3600}  # polls are driven by hand below
    cfg = parse_config(config, "bench")
    db = Path(tempfile.mkdtemp()) / "bench.db"
    env = Env(  # type: ignore[call-arg]
        _env_file=None,
        SEVA_DATABASE_URL=args.database or f"sqlite:///{db}",
        SEVA_HTTP_PORT=0,
        X_API_BASE_URL=url + "/x",
        SLACK_API_BASE_URL=url + "/slack/api/",
        **TOKENS,
    )
    async with aiohttp.ClientSession() as s:
        # Seed the mentions before the bridge starts, so the first poll pages through all.
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(32)

        async def tweet(i: int) -> None:
            async with sem:
                await _json(
                    s,
                    "POST",
                    url + "/x/sandbox/tweets",
                    json={"username": f"c{i % 500}", "text": f"@SevaHelp oxygen need {i}"},
                )

        await asyncio.gather(*(tweet(i) for i in range(args.tickets)))
        print(f"seeded {args.tickets} mentions in {time.perf_counter() - t0:.1f}s")

        app = App(env, cfg)
        await app.start()  # the first poll runs at once
        assert app.bridge is not None and app.http is not None
        await _json(
            s,
            "POST",
            url + "/slack/sandbox/config",
            json={"events_url": f"http://127.0.0.1:{app.http.port}/slack/events"},
        )
        start = time.perf_counter()
        while True:
            counts = await app.bridge.store.run(lambda tx: tx.counts())
            if counts["outbox_pending"] == 0 and app.bridge.mentions.last_ok is not None:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        tickets = await app.bridge.store.run(lambda tx: tx.tickets(open_only=False, limit=10**6))
        posted = sum(1 for t in tickets if t.root)
        print(
            f"ingest: {posted} tickets polled, stored and posted as thread roots "
            f"in {elapsed:.2f}s = {posted / elapsed:.0f} tickets/s (one core, pacing off)"
        )

        # Reply latency: one ticket per reply, answered in its thread.
        state = await _json(s, "GET", url + "/slack/sandbox/state")
        roots = [
            m
            for c in state["channels"]
            for m in c["messages"]
            if (m.get("metadata") or {}).get("event_type") == "seva_ticket"
        ][: args.replies]
        latencies = []
        for i, root in enumerate(roots):
            before = time.perf_counter()
            await _json(
                s,
                "POST",
                url + "/slack/sandbox/messages",
                json={
                    "user": "U0AGENT1",
                    "channel": "C0HEALTH",
                    "text": f"Answer {i}: call 1075.",
                    "thread_ts": root["ts"],
                },
            )
            while True:
                x = await _json(s, "GET", url + "/x/sandbox/state")
                if any(t["text"] == f"Answer {i}: call 1075." for t in x["tweets"][-5:]):
                    break
                await asyncio.sleep(0.002)
            latencies.append(time.perf_counter() - before)
        latencies.sort()
        p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
        print(
            f"reply: thread message -> tweet on X, n={len(latencies)}: "
            f"median {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms"
        )
        await app.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tickets", type=int, default=800, help="at most 800: X serves no more")
    p.add_argument("--replies", type=int, default=30)
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
            os.sched_setaffinity(child.pid, {1} if os.cpu_count() and os.cpu_count() > 1 else {0})  # type: ignore[operator]
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(asyncio.run, bench(args, url))
            pstats.Stats(prof).sort_stats(args.sort).print_stats(40)
        else:
            asyncio.run(bench(args, url))
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(10)


if __name__ == "__main__":
    main()
