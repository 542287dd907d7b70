"""`seva`: run, migrate, check. Exit codes: 0 clean stop, 2 bad config, 1 anything else."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from bot.config import Config, ConfigError, Env, cross_check, load_config, load_env
from entrypoints import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from entrypoints.logs import setup_logging

log = logging.getLogger("seva." + __name__)


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
    if env is not None and env.SEVA_CLOCK_FILE:
        from adapters.clock import ClockFileError, read_offset

        try:
            read_offset(env.SEVA_CLOCK_FILE)
        except (ClockFileError, OSError) as e:
            problems.append(f"environment: SEVA_CLOCK_FILE: {e}")
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
        from entrypoints.online import check_online

        problems = asyncio.run(check_online(env, config))
        if problems:
            for p in problems:
                print(p, file=sys.stderr)
            print(f"{len(problems)} problem(s) found.", file=sys.stderr)
            return EXIT_CONFIG
    print(f"Configuration OK: {len(config.departments)} department(s).")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from adapters.db.store import make_engine
    from entrypoints import migrate

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


def cmd_answers(args: argparse.Namespace) -> int:
    if not (args.html or args.json):
        print("seva answers: give --html FILE, --json FILE or both", file=sys.stderr)
        return EXIT_CONFIG
    try:
        env = load_env()
        config = load_config(config_path(args.config, env))
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return EXIT_CONFIG
    from entrypoints.publish import export

    return export(env, config, args)


def cmd_run(args: argparse.Namespace) -> int:
    if args.sandbox:
        from entrypoints.demo import run_demo  # the stand-ins load only for the demo

        return run_demo(args)
    try:
        env, config = load_all(args.config)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(env, args.log_level)
    return run_app(env, config)


def run_app(env: Env, config: Config) -> int:
    from entrypoints.bootstrap import serve  # the whole stack loads only to run it

    try:
        return asyncio.run(serve(env, config))
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception:
        log.exception("seva.crashed")
        return EXIT_FAILURE


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return n


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
    ans = sub.add_parser(
        "answers", help="write the public page of saved answers and recent public Q&A"
    )
    ans.add_argument("--html", metavar="FILE", help="a static HTML page")
    ans.add_argument("--json", metavar="FILE", help="the same as JSON")
    ans.add_argument("--config", help="YAML config (for the departments' names)")
    ans.add_argument(
        "--days", type=_positive, default=30, help="questions answered in the last DAYS"
    )
    ans.add_argument("--limit", type=_positive, default=200, help="at most this many questions")
    ans.add_argument("--department", help="one department only")
    ans.add_argument("--title", help="the page's title")
    ans.add_argument("--timezone", default="Asia/Kolkata", help="for the dates shown")
    ans.set_defaults(func=cmd_answers)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
