"""Shared fixtures: the store on real Postgres and on SQLite, migrated by Alembic.

Postgres: one fresh database per test session (dropped after), migrated once; each
test starts from empty tables. If Postgres cannot be reached the Postgres tests fail
with how to start it: they are never silently skipped.
"""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlmodel import SQLModel

from leakwatch.clock import FakeClock
from leakwatch.store.db import SessionFactory, make_engine, session_factory, upgrade
from tests.support.databases import postgres_store


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh, migrated Postgres database for this test session (see `db_url`)."""
    with postgres_store() as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated Postgres database of this test's own, dropped after.

    For tests that run a daemon or other processes against the store, which must not
    see another test's rows or locks.
    """
    with postgres_store("leakwatch_own") as url:
        yield url


@pytest.fixture
def clock_start() -> datetime | None:
    """Where `clock` starts; a module overrides this fixture to start elsewhere."""
    return None


@pytest.fixture
def clock(clock_start: datetime | None) -> FakeClock:
    """The fake clock: moves only when told to, or when something sleeps on it."""
    return FakeClock(clock_start)


def _empty_tables(engine: Engine) -> None:
    tables = [t.name for t in SQLModel.metadata.sorted_tables]
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty store: every test using it runs on SQLite and on Postgres."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'leakwatch.db'}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        return
    url = request.getfixturevalue("pg_database_url")
    engine = make_engine(url)
    _empty_tables(engine)
    engine.dispose()
    yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    return session_factory(engine)
