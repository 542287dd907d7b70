"""`seva answers --html FILE` / `--json FILE`: the public page of common answers."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.exc import SQLAlchemyError

from adapters.db.store import Store
from adapters.public_page import render_html, render_json
from bot.config import Config, Env
from entrypoints import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, migrate
from handlers.publish import public_page

DEFAULT_TITLE = "Answers to common questions"


def export(env: Env, config: Config, args: argparse.Namespace) -> int:
    if args.department and config.department(args.department) is None:
        print(f"seva: --department: there is no department {args.department!r}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        zone = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"seva: --timezone: unknown time zone {args.timezone!r}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        store = Store(env.SEVA_DATABASE_URL)
    except (SQLAlchemyError, ImportError) as e:
        print(f"seva: cannot use the database in SEVA_DATABASE_URL: {e}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        if store.engine.dialect.name == "sqlite":
            migrate.upgrade(store.engine)
        elif not migrate.is_current(store.engine):
            print(
                "seva: the database schema is out of date: run `seva migrate` first",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        with store.tx() as tx:
            page = public_page(
                tx,
                config,
                title=args.title or DEFAULT_TITLE,
                days=args.days,
                limit=args.limit,
                department=args.department,
            )
    except SQLAlchemyError as e:
        reason = getattr(e, "orig", None) or e
        print(f"seva: cannot read the database in SEVA_DATABASE_URL: {reason}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        store.dispose()
    for path, text in ((args.html, render_html(page, zone)), (args.json, render_json(page))):
        if path:
            _write(Path(path), text)
            print(
                f"Wrote {path}: {len(page.saved)} saved answer(s), "
                f"{len(page.questions)} answered question(s)"
                + (f", {page.withheld} left out for personal data" if page.withheld else "")
                + "."
            )
    return EXIT_OK


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a web server never serves half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
