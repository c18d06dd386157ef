"""Throw-away databases on the machine's Postgres and MariaDB, for tests. I/O.

Each context manager creates a database with a random name and drops it after, so
tests (and helpers running at once) never share tables. The store's fixtures
(`pg_database_url`, `pg_url` in tests/conftest.py) and the SQL source tests build on
these; nothing else creates a database.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from leakwatch.store.db import make_engine, upgrade

PG_ADMIN_URL = os.environ.get("LEAKWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_START_HINT = (
    "Postgres is not answering at 127.0.0.1:5432. Start it with\n"
    "  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n"
    "(.ci/run does this itself), or point LEAKWATCH_TEST_PG at a server."
)
MARIADB_ADMIN = os.environ.get("LEAKWATCH_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")


def _admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"{PG_START_HINT}\n({exc})", pytrace=False)


@contextmanager
def empty_postgres_url(prefix: str = "leakwatch_test") -> Iterator[str]:
    """A fresh, empty database on Postgres (its SQLAlchemy URL), dropped after."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_store(prefix: str = "leakwatch_test") -> Iterator[str]:
    """A fresh Postgres database migrated to the store's latest schema; its URL."""
    with empty_postgres_url(prefix) as url:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url


def pg_query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run one statement on a store's Postgres outside leakwatch; its rows."""
    libpq = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq, autocommit=True) as conn:
        return list(conn.execute(sql).fetchall())


@contextmanager
def postgres_database(prefix: str = "leakwatch_src") -> Iterator[sa.Engine]:
    """A fresh database on Postgres at 127.0.0.1:5432, as an engine; dropped after."""
    with empty_postgres_url(prefix) as url:
        built = sa.create_engine(url)
        try:
            yield built
        finally:
            built.dispose()


@contextmanager
def mariadb_database(prefix: str = "leakwatch_src") -> Iterator[sa.Engine]:
    """A fresh database on MariaDB at 127.0.0.1:3306 (root, no password), dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(MARIADB_ADMIN)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}`"))
    built = sa.create_engine(MARIADB_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield built
    finally:
        built.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
