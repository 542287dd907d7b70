"""`seva`: run, migrate, check. Exit codes: 0 clean stop, 2 bad config, 1 anything else."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from bot.config import Config, ConfigError, Env, cross_check, load_config, load_env

if TYPE_CHECKING:
    from bot.app import App

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2

log = logging.getLogger("seva")


class RedactSecrets(logging.Filter):
    """Defence in depth: a token that reaches a log line anyway is masked."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            msg = record.getMessage()
            masked = msg
            for s in self._secrets:
                masked = masked.replace(s, "***")
            if masked != msg:
                record.msg, record.args = masked, None
        return True


def database_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password or ""
    except Exception:
        return ""


def setup_logging(env: Env | None, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    if env is not None:
        secrets = [
            getattr(env, name).get_secret_value()
            for name in type(env).model_fields
            if hasattr(getattr(env, name), "get_secret_value")
        ]
        secrets.append(database_password(env.SEVA_DATABASE_URL))
        handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Client libraries log request headers (tokens included) at DEBUG: keep them quiet.
    for noisy in (
        "tweepy",
        "urllib3",
        "requests_oauthlib",
        "oauthlib",
        "slack_sdk",
        "slack_bolt",
        "aiohttp.access",
        "apscheduler",
        "nio",
        "alembic",
        "peewee",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def config_path(arg: str | None, env: Env | None) -> str:
    if arg:
        return arg
    if os.environ.get("SEVA_CONFIG"):
        return os.environ["SEVA_CONFIG"]
    return env.SEVA_CONFIG if env is not None else "./seva.yaml"


def load_all(path_arg: str | None) -> tuple[Env, Config]:
    """Environment and YAML together; raises ConfigError with every problem found."""
    problems: list[str] = []
    env: Env | None = None
    config: Config | None = None
    try:
        env = load_env()
        problems += env.problems()
    except ConfigError as e:
        problems += e.problems
    path = config_path(path_arg, env)
    try:
        config = load_config(path)
    except ConfigError as e:
        problems += e.problems
    if env is not None and config is not None:
        problems += cross_check(config, env, path)
    if problems:
        raise ConfigError(problems)
    assert env is not None and config is not None
    return env, config


# --- commands


def cmd_check(args: argparse.Namespace) -> int:
    try:
        env, config = load_all(args.config)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) found.", file=sys.stderr)
        return EXIT_CONFIG
    if args.online:
        from bot.online import check_online

        problems = asyncio.run(check_online(env, config))
        if problems:
            for p in problems:
                print(p, file=sys.stderr)
            print(f"{len(problems)} problem(s) found.", file=sys.stderr)
            return EXIT_CONFIG
    print(f"Configuration OK: {len(config.departments)} department(s).")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from adapters.db import make_engine
    from bot import migrate

    try:
        env = load_env()
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return EXIT_CONFIG
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = make_engine(env.SEVA_DATABASE_URL)
        try:
            before = migrate.current(engine)
            migrate.upgrade(engine)
            print(f"Database at revision {migrate.current(engine)} (was {before or 'empty'}).")
        finally:
            engine.dispose()
    except (SQLAlchemyError, ImportError) as e:
        reason = getattr(e, "orig", None) or e
        print(f"seva: cannot use the database in SEVA_DATABASE_URL: {reason}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    if args.sandbox:
        from sandbox.run import run_sandbox

        return run_sandbox(args)
    try:
        env, config = load_all(args.config)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(env, args.log_level)
    return run_app(env, config)


def run_app(env: Env, config: Config) -> int:
    try:
        return asyncio.run(serve(env, config))
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception:
        log.exception("seva.crashed")
        return EXIT_FAILURE


async def serve(
    env: Env,
    config: Config,
    *,
    started: Callable[[App], Coroutine[Any, Any, None]] | None = None,
) -> int:
    """Runs the bridge until SIGINT/SIGTERM; `started` runs beside it once it is up."""
    from bot.app import App, SchemaOutOfDate
    from bot.ports import PlatformRefused, Unavailable

    app = App(env, config)
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seva", description="Seva Bridge: a public help desk on X")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the bridge")
    run.add_argument("--config", help="YAML config (default: $SEVA_CONFIG, else ./seva.yaml)")
    run.add_argument(
        "--sandbox", action="store_true", help="run against the built-in X and Slack stand-ins"
    )
    run.add_argument(
        "--no-scenario", action="store_true", help="with --sandbox: skip the scripted scenario"
    )
    run.add_argument("--log-level", default="INFO")
    run.set_defaults(func=cmd_run)
    mig = sub.add_parser("migrate", help="upgrade the database to the newest schema")
    mig.set_defaults(func=cmd_migrate)
    chk = sub.add_parser("check", help="validate config and environment")
    chk.add_argument("--config")
    chk.add_argument("--online", action="store_true", help="also call X, Slack and Matrix")
    chk.set_defaults(func=cmd_check)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
