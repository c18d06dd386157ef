"""A database password that needs URL-escaping works end to end and is never printed.

Real Postgres at 127.0.0.1:5432 (trust auth, so the password itself is not checked:
what is proved is that the URL is parsed and carried to Alembic intact, and that no
message shows it).
"""

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from leakwatch.store.db import head_revision, make_engine, upgrade
from tests.support.cli import leakwatch
from tests.support.databases import PG_ADMIN_URL

PASSWORD = "Pa@ss%40w/rd:x#1"


@pytest.fixture
def role_url() -> Iterator[str]:
    """A role whose password needs URL-escaping, owning a fresh database; both dropped after."""
    name = f"lw_sec_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{PASSWORD}'")
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    try:
        yield f"postgresql+psycopg://{name}:{quote(PASSWORD, safe='')}@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{name}"')


def _shows_password(text: str) -> bool:
    return any(form in text for form in (PASSWORD, quote(PASSWORD, safe=""), "Pa@ss", "40w"))


def test_migrations_run_through_a_url_whose_password_needs_escaping(role_url: str) -> None:
    engine = make_engine(role_url)
    try:
        assert upgrade(engine)[1] == head_revision()
    finally:
        engine.dispose()


def test_db_upgrade_and_status_work_and_never_print_the_password(
    role_url: str, tmp_path: Path
) -> None:
    env = {"LEAKWATCH_DATABASE_URL": role_url}
    upgraded = leakwatch("db", "upgrade", cwd=tmp_path, env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    status = leakwatch("status", "--json", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    for result in (upgraded, status):
        assert not _shows_password(result.stdout + result.stderr)


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        # Not a URL at all: the message cannot parse out the password, so shows no value.
        (lambda url: url.replace("postgresql+psycopg://", "postgresql+psycopg:/"), 2),
        (lambda url: url.replace(":5432/", ":notaport/"), 2),
        (lambda url: url.replace(":5432/", ":1/"), 1),  # nothing listens there
        (lambda url: url.replace("postgresql+psycopg", "postgresql+asyncpg"), 2),
    ],
    ids=["no-scheme-slashes", "bad-port", "unreachable", "other-driver"],
)
def test_a_broken_database_url_is_named_without_its_password(
    role_url: str, tmp_path: Path, mangle: object, code: int
) -> None:
    assert callable(mangle)
    url = mangle(role_url)
    result = leakwatch("db", "upgrade", cwd=tmp_path, env={"LEAKWATCH_DATABASE_URL": url})
    assert result.returncode == code, result.stdout + result.stderr
    assert "database" in result.stderr
    assert "Traceback" not in result.stderr
    assert not _shows_password(result.stdout + result.stderr), result.stderr
