"""The composition root: builds every part from the settings and runs them together.

The only module that knows every adapter. Nothing here happens at import time;
`App.start()` does the I/O, and `serve` runs the App until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import SQLAlchemyError

from adapters.clock import ClockFileError, OffsetClock
from adapters.db.store import Store
from adapters.http import HttpServer
from adapters.metrics import PrometheusMetrics
from bot.batch import Batch
from bot.config import Config, Env, reveal
from bot.domain import ChannelId, ChatAction, ChatMessage, Platform, Rich
from bot.health import Condition, State
from bot.ports import (
    ChatPlatform,
    Clock,
    CommandContext,
    KeyValue,
    PlatformRefused,
    Unavailable,
    UserGroups,
)
from entrypoints import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, migrate
from handlers import (
    commands,
    delivery,
    escalation,
    figures,
    ingest,
    oncall,
    replies,
    retention,
)
from handlers.context import TAKEN_TOGETHER, Bridge, SystemClock

if TYPE_CHECKING:
    from adapters.x import XClient

log = logging.getLogger("seva." + __name__)

# How often the jobs that follow the clock (escalations) look for what is due: nothing
# is more than this late. With a faster poll (the sandbox, the tests) they look as often
# as the poll, so a test that moves the controlled clock sees the effect at once.
TICK_SECONDS = 15.0


class SchemaOutOfDate(Exception):
    pass


def x_client(env: Env, kv: KeyValue | None = None, clock: Clock | None = None) -> XClient:
    """The X account from the environment (also used by `seva check --online`); `kv`
    remembers which spelling of X's field parameters the API accepts."""
    from adapters.x import XClient

    return XClient(
        kv=kv,
        base_url=env.X_API_BASE_URL,
        bearer_token=reveal(env.X_BEARER_TOKEN) or None,
        consumer_key=reveal(env.X_API_KEY),
        consumer_secret=reveal(env.X_API_SECRET),
        access_token=reveal(env.X_ACCESS_TOKEN),
        access_token_secret=reveal(env.X_ACCESS_TOKEN_SECRET),
        timeout=10,  # well inside the delivery lease
        clock=clock,
    )


def clock_from_env(env: Env) -> Clock:
    """The system clock, or the controlled one when SEVA_CLOCK_FILE is set (the sandbox
    and the end-to-end tests only: adapters/clock.py). Raises ClockFileError."""
    if env.SEVA_CLOCK_FILE:
        return OffsetClock(env.SEVA_CLOCK_FILE)
    return SystemClock()


class App:
    def __init__(self, env: Env, config: Config, *, clock: Clock | None = None) -> None:
        self.env = env
        self.config = config
        self.clock = clock or clock_from_env(env)
        self.prometheus = PrometheusMetrics()
        self.store: Store | None = None
        self.bridge: Bridge | None = None
        self.http: HttpServer | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started_platforms: list[ChatPlatform] = []
        self._xclient: XClient | None = None
        self._usergroups: UserGroups | None = None  # Slack's, when Slack is used

    # --- building

    def _open_store(self) -> Store:
        try:
            return self._migrated_store()
        except (SQLAlchemyError, ImportError) as e:
            reason = getattr(e, "orig", None) or e
            raise Unavailable(
                f"cannot use the database in SEVA_DATABASE_URL: {str(reason).strip()}"
            ) from e

    def _migrated_store(self) -> Store:
        store = Store(self.env.SEVA_DATABASE_URL, clock=self.clock)
        if store.engine.dialect.name == "sqlite":
            migrate.upgrade(store.engine)
        elif not migrate.is_current(store.engine):
            store.dispose()
            raise SchemaOutOfDate(
                "the database schema is out of date: run `seva migrate` first "
                f"(at {migrate.current(store.engine) or 'empty'}, "
                f"newest is {migrate.head(store.engine)})"
            )
        return store

    def _platforms(self, store: Store) -> dict[Platform, ChatPlatform]:
        used = {d.platform for d in self.config.departments}
        out: dict[Platform, ChatPlatform] = {}
        env = self.env
        if env.slack_enabled and "slack" in used:
            from adapters.slack.platform import SlackPlatform

            out["slack"] = self._usergroups = SlackPlatform(
                bot_token=reveal(env.SLACK_BOT_TOKEN),
                signing_secret=reveal(env.SLACK_SIGNING_SECRET),
                app_token=reveal(env.SLACK_APP_TOKEN) or None,
                api_base_url=env.SLACK_API_BASE_URL,
                command=self.config.slack.commands,
                post_rate_per_channel=self.config.slack.post_rate_per_channel,
                inbox=store,
                clock=self.clock,
            )
        if env.matrix_enabled and "matrix" in used:
            from adapters.matrix.platform import MatrixPlatform

            rooms = [d.channel for d in self.config.departments if d.platform == "matrix"]
            out["matrix"] = MatrixPlatform(
                env.MATRIX_HOMESERVER or "",
                env.MATRIX_USER_ID or "",
                access_token=reveal(env.MATRIX_ACCESS_TOKEN) or None,
                password=reveal(env.MATRIX_PASSWORD) or None,
                rooms=[ChannelId(r) for r in rooms],
                state=store,
                inbox=store,
                clock=self.clock,
            )
        return out

    # --- running

    async def start(self) -> None:
        # Migrations and the first connection block: off the event loop like the rest.
        self.store = store = await asyncio.to_thread(self._open_store)
        if isinstance(self.clock, OffsetClock):
            log.warning(
                "clock.controlled file=%s offset_seconds=%.3f",
                self.clock.path,
                self.clock.offset(),
            )
        self._xclient = x = x_client(self.env, kv=store, clock=self.clock)
        b = self.bridge = Bridge(
            config=self.config,
            store=store,
            source=x,
            sink=x,
            platforms=self._platforms(store),
            metrics=self.prometheus,
            clock=self.clock,
            shared=store.engine.dialect.name != "sqlite",
        )
        b.usergroups = self._usergroups
        # Answers that arrive together are taken by several units side by side on a
        # database that takes several writers at once.
        b.taking = Batch(most=TAKEN_TOGETHER, writers=store.threads)
        # SQLite means one instance: its unfinished claims (posts, tweets, events being
        # handled) are ours, from before a crash; taken back before anything claims.
        await delivery.recover(b, lease=delivery.LEASE if b.shared else timedelta(0))
        for platform in b.platforms.values():
            # Added first, so that stop() also closes a platform whose start failed.
            self._started_platforms.append(platform)
            await platform.start(self._on_message, self._on_command, self._on_action)
        slack = b.platforms.get("slack")
        self.http = HttpServer(
            self.env.SEVA_HTTP_HOST,
            self.env.SEVA_HTTP_PORT,
            health=self.health,
            metrics=self.metrics,
            # Socket Mode opens no public endpoint: then /slack/events does not exist.
            slack=getattr(slack, "handle_http", None) if not self.env.SLACK_APP_TOKEN else None,
        )
        await self.http.start()
        self._tasks.append(asyncio.create_task(delivery.run_forever(b), name="delivery"))
        self._scheduler = s = AsyncIOScheduler(timezone=UTC)
        now = datetime.now(UTC)
        s.add_job(
            ingest.poll,
            "interval",
            seconds=self.config.x.poll_seconds,
            args=[b],
            next_run_time=now,
            max_instances=1,
            coalesce=True,
            id="poll",
        )
        tick = min(self.config.x.poll_seconds, TICK_SECONDS)
        # Escalation, its second step, the hand-offs, the user groups and the digests
        # follow the clock too. What is due is derived from the database (the tickets,
        # the rotation and its overrides, the outbox keys already queued), which is the
        # job store: a restart or a second instance finds the same work, and a unique
        # outbox key or a compare-and-set lets it through once. (APScheduler's own
        # SQLAlchemyJobStore must not be shared between schedulers, and its timers run
        # on the system clock, not the bot's.)
        jobs = (
            escalation.escalate,
            escalation.escalate_again,
            oncall.hand_off,
            oncall.sync_usergroups,
            figures.post_digests,
        )
        for job in jobs:
            s.add_job(
                job,
                "interval",
                seconds=tick,
                args=[b],
                next_run_time=now,
                max_instances=1,
                coalesce=True,
                id=job.__name__,
            )
        s.add_job(delivery.recover, "interval", seconds=10, args=[b], id="recover", max_instances=1)
        s.add_job(self._housekeeping, "interval", hours=1, id="housekeeping", next_run_time=now)
        if self.config.safety.retention_days is not None:
            # Daily, and at each start, so a bot restarted every night still purges.
            s.add_job(
                retention.purge,
                "interval",
                hours=24,
                args=[b],
                id="retention",
                next_run_time=now,
                max_instances=1,
            )
        s.add_job(self._watch_store, "interval", seconds=2, id="watch_store", max_instances=1)
        s.start()
        # What start-up built (modules, clients, compiled statements) lives as long as
        # the process: set it apart from the collector's full passes, which otherwise
        # walk all of it and stall the event loop 50-100 ms now and then (bench/'s burst
        # and replies met it). Garbage first, so none of it is kept.
        gc.collect()
        gc.freeze()
        b.kick()
        log.info(
            "seva.started http=%s:%d platforms=%s",
            self.env.SEVA_HTTP_HOST,
            self.http.port,
            ",".join(b.platforms) or "none",
        )

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.bridge is not None and self.store is not None:
            try:
                await delivery.hand_back(self.bridge)
            except Exception as e:  # the database may be what failed: the claims expire
                log.warning("seva.hand_back_failed error=%s", type(e).__name__)
        if self.http is not None:
            await self.http.stop()
        for platform in self._started_platforms:
            try:
                await platform.stop()
            except Exception:
                log.exception("platform.stop_failed platform=%s", platform.name)
        self._started_platforms.clear()
        if self._xclient is not None:
            await self._xclient.aclose()
        if self.store is not None and self.bridge is not None:
            # The next poller need not wait for the lease to run out.
            instance = self.bridge.instance
            try:
                await self.store.run(lambda tx: tx.release_lease(ingest.POLL_LEASE, instance))
            except Exception as e:  # the database may be what failed
                log.warning("seva.lease_release_failed error=%s", type(e).__name__)
        if self.store is not None:
            await asyncio.to_thread(self.store.dispose)
        if self.http is not None and self.bridge is not None:
            log.info("seva.stopped")

    async def _watch_store(self) -> None:
        """While a write has failed, one small write now and then: /healthz says `ok`
        again as soon as the database takes writes, even if nothing else is written."""
        if self.store is not None and not self.store.writable:
            await self.store.probe()

    async def _housekeeping(self) -> None:
        """Replay guards older than a week protect nothing: Slack retries within minutes."""
        if self.store is not None:
            before = self.clock.now() - timedelta(days=7)
            await self.store.run(lambda tx: tx.forget_events_before(before))

    # --- events from the platforms

    async def _on_message(self, msg: ChatMessage) -> None:
        assert self.bridge is not None
        await replies.on_message(self.bridge, msg)

    async def _on_command(self, text: str, ctx: CommandContext) -> Rich:
        assert self.bridge is not None
        return await commands.run_command(self.bridge, text, ctx)

    async def _on_action(self, action: ChatAction) -> None:
        assert self.bridge is not None
        await replies.on_action(self.bridge, action)

    # --- health and metrics

    def health(self) -> dict[str, Any]:
        """/healthz: `ok`; `degraded`, with each part that is not and why and since
        when; or `down` (HTTP 503) while the database cannot be written, when events
        are refused so that Slack delivers them again. Read from memory only: it answers
        at once during a burst and while the database is down."""
        b = self.bridge
        if b is None:
            return {"status": "starting"}
        now = self.clock.now()
        m = b.mentions
        lag = (now - (m.last_ok or b.started_at)).total_seconds()
        reads = b.health["x.mentions"]
        if reads.ok and not m.standby and lag >= max(3 * self.config.x.poll_seconds, 60):
            since = m.last_ok or b.started_at
            reads = Condition(State.RETRYING, "no successful poll for a while", since)
        posting = b.health[delivery.POSTING]
        x: dict[str, Any] = {
            "ok": reads.ok and posting.ok,
            "last_poll": m.last_ok.isoformat() if m.last_ok else None,
            "standby": m.standby,
            "error": m.error,
            "rate_limited_until": m.blocked_until.isoformat() if m.blocked_until else None,
            "reads": reads.as_json(),
            "posting": posting.as_json(),
        }
        if self.config.x.search_query:
            q = b.search
            x["search"] = {
                "last_poll": q.last_ok.isoformat() if q.last_ok else None,
                "error": q.error,
                **b.health["x.search"].as_json(),
            }
        platforms: dict[str, Any] = {"x": x}
        problems = [
            {"part": f"x.{what}", **cond.as_json()}
            for what, cond in (("reads", reads), ("posting", posting))
            if not cond.ok
        ]
        for name, p in b.platforms.items():
            cond = b.health[name]
            adapter = p.health()
            if cond.ok and not adapter.get("connected", True):
                why = str(adapter.get("error") or "not connected")
                failing = adapter.get("since")
                cond = Condition(
                    State.RETRYING, why, datetime.fromisoformat(str(failing)) if failing else None
                )
            entry = {**adapter, **cond.as_json()}
            if name in b.refusals:
                key, channel, error, at = b.refusals[name]
                entry["last_refused"] = {
                    "key": key,
                    "channel": channel,
                    "error": error,
                    "at": at.isoformat(),
                }
            platforms[name] = entry
            if not cond.ok:
                problems.append({"part": name, **cond.as_json()})
        database = self.store.health() if self.store is not None else {"ok": True}
        if not database["ok"]:
            problems.append({"part": "database", **database})
        status = "down" if not database["ok"] else ("degraded" if problems else "ok")
        out: dict[str, Any] = {
            "status": status,
            "problems": problems,
            "poll_lag_seconds": round(lag, 3),
            "platforms": platforms,
            "database": database,
        }
        if isinstance(self.clock, OffsetClock):  # never in production: say so loudly
            out["clock"] = {"controlled": True, "now": now.isoformat()}
        return out

    async def metrics(self) -> bytes:
        b = self.bridge
        if b is None:
            return b""
        counts, open_now = await b.store.run(lambda tx: (tx.counts(), tx.open_by_department()))
        m = self.prometheus
        for dept in {d.id for d in self.config.departments} | open_now.keys():
            m.open_tickets.labels(dept).set(open_now.get(dept, 0))
        m.outbox_pending.set(counts["outbox_pending"])
        m.outbox_failed.set(counts["outbox_failed"])
        m.replies_pending.set(counts["replies_pending"])
        if b.mentions.last_ok is not None:
            m.poll_lag.set((self.clock.now() - b.mentions.last_ok).total_seconds())
        return m.render()


async def serve(
    env: Env,
    config: Config,
    *,
    started: Callable[[App], Coroutine[Any, Any, None]] | None = None,
) -> int:
    """Runs the bridge until SIGINT/SIGTERM; `started` runs beside it once it is up."""
    try:
        app = App(env, config)
    except ClockFileError as e:
        print(f"seva: SEVA_CLOCK_FILE: {e}", file=sys.stderr)
        return EXIT_CONFIG
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
    except (SchemaOutOfDate, PlatformRefused) as e:
        print(f"seva: {e}", file=sys.stderr)
        await app.stop()
        return EXIT_CONFIG
    except Unavailable as e:  # a platform could not be reached at start: try again later
        print(f"seva: {e}", file=sys.stderr)
        await app.stop()
        return EXIT_FAILURE
    except BaseException:
        await app.stop()
        raise
    beside = asyncio.create_task(started(app)) if started is not None else None
    try:
        await stop.wait()
    finally:
        if beside is not None:
            beside.cancel()
        await app.stop()
    return EXIT_OK
