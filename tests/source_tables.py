"""Throw-away databases on the machine's Postgres and MariaDB, for SQL source tests.

Each context manager creates a database with a random name and drops it after, so
tests (and helpers running at once) never share tables.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import sqlalchemy as sa

PG_ADMIN = os.environ.get("LEAKWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MARIADB_ADMIN = os.environ.get("LEAKWATCH_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")


@contextmanager
def postgres_database(prefix: str = "leakwatch_src") -> Iterator[sa.Engine]:
    """A fresh database on Postgres at 127.0.0.1:5432, dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    built = sa.create_engine(f"{base}/{name}")
    try:
        yield built
    finally:
        built.dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
