"""Shared fixtures: a fresh database per test (SQLite always, PostgreSQL when configured)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adapters.db.store import Store
from entrypoints import migrate

PG_URL = os.environ.get("SEVA_TEST_POSTGRES_URL")


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'seva.db'}"


@pytest.fixture(scope="session")
def pg_server() -> str | None:
    return PG_URL


def _fresh_pg_database(base: str) -> tuple[str, str]:
    url = make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"seva_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False), name


def _drop_pg_database(base: str, name: str) -> None:
    url = make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PostgreSQL suite: set SEVA_TEST_POSTGRES_URL (.ci/run does)")
    url, name = _fresh_pg_database(PG_URL)
    yield url
    _drop_pg_database(PG_URL, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'seva.db'}"
        return
    if not PG_URL:
        pytest.skip("PostgreSQL suite: set SEVA_TEST_POSTGRES_URL (.ci/run does)")
    url, name = _fresh_pg_database(PG_URL)
    yield url
    _drop_pg_database(PG_URL, name)


def migrated_store(url: str, clock=None) -> Store:
    store = Store(url, clock=clock)
    migrate.upgrade(store.engine)
    return store


@pytest.fixture
def stores(tmp_path):
    """Real stores on fresh SQLite files, made on demand: what an adapter under contract
    test keeps its inbox and state in, as the bot's own store does."""
    made: list[Store] = []

    def make() -> Store:
        made.append(migrated_store(f"sqlite:///{tmp_path / f'store{len(made)}.db'}"))
        return made[-1]

    yield make
    for store in made:
        store.dispose()


# One Synapse for the whole session, shared by every module that needs it.
from tests.synapse import synapse  # noqa: E402, F401
