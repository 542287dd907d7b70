"""Log set-up for every entry point: one line per event, secrets masked, chatty clients quiet."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from bot.config import Env


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


class RedactingFormatter(logging.Formatter):
    """Masks secrets in the whole formatted line, the traceback of a logged exception
    included (an HTTP client's error may quote a URL or header that holds one)."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for s in self._secrets:
            line = line.replace(s, "***")
        return line


def database_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).password or ""
    except Exception:
        return ""


def setup_logging(env: Env | None, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s %(levelname)s %(name)s %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    if env is not None:
        secrets = [
            getattr(env, name).get_secret_value()
            for name in type(env).model_fields
            if hasattr(getattr(env, name), "get_secret_value")
        ]
        secrets.append(database_password(env.SEVA_DATABASE_URL))
        handler.addFilter(RedactSecrets(secrets))
        handler.setFormatter(RedactingFormatter(fmt, secrets))
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
