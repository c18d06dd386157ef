"""The schema is made only by migrations, and the migrations match the models."""

import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, select

from leakwatch.store.db import (
    current_revision,
    head_revision,
    make_engine,
    session_factory,
    transaction,
    upgrade,
)
from leakwatch.store.models import SampledEvent
from tests.support.databases import PG_ADMIN_URL


def _fresh_url(backend: str, tmp_path: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}", None
    name = f"leakwatch_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", name


def _drop(name: str | None) -> None:
    if name:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_build_the_schema_from_empty_and_match_the_models(
    backend: str, tmp_path: Path
) -> None:
    url, name = _fresh_url(backend, tmp_path)
    try:
        engine = make_engine(url)
        assert current_revision(engine) is None
        before, after = upgrade(engine)
        assert (before, after) == (None, head_revision())
        assert set(inspect(engine).get_table_names()) >= set(SQLModel.metadata.tables)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, SQLModel.metadata) == []
        # Idempotent: a second upgrade is a no-op.
        assert upgrade(engine) == (head_revision(), head_revision())
        engine.dispose()
    finally:
        _drop(name)


def _event(payload_hash: str, **overrides: object) -> SampledEvent:
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    values: dict[str, object] = {
        "source": "gateway",
        "transaction_id": "txn-1",
        "payload_hash": payload_hash,
        "customer_id": "acme",
        "event_type": "api_request",
        "event_timestamp": now - timedelta(hours=3),
        "outcome": "pending",
        "sampled_at": now,
    }
    values.update(overrides)
    return SampledEvent.model_validate(values)


def test_a_sampled_event_is_recorded_once_per_identity(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        session.add(_event("hash-a"))
        # Same transaction id, different payload: a collision is a second event.
        session.add(_event("hash-b"))
    with pytest.raises(IntegrityError), transaction(sessions) as session:
        session.add(_event("hash-a", outcome="matched"))
    with transaction(sessions) as session:
        rows = session.exec(select(SampledEvent).order_by(SampledEvent.payload_hash)).all()
    assert [(r.payload_hash, r.outcome) for r in rows] == [
        ("hash-a", "pending"),
        ("hash-b", "pending"),
    ]
    engine.dispose()


def test_timestamps_come_back_aware_utc_on_every_backend(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    berlin = timezone(timedelta(hours=1))
    sent = datetime(2026, 11, 20, 13, 30, tzinfo=berlin)
    with transaction(sessions) as session:
        session.add(_event("h", event_timestamp=sent))
    with transaction(sessions) as session:
        row = session.exec(select(SampledEvent)).one()
    assert row.event_timestamp == sent
    assert row.event_timestamp.tzinfo is not None
    assert row.event_timestamp.utcoffset() == timedelta(0)
    engine.dispose()


def test_postgres_tests_are_not_skipped_in_ci() -> None:
    # CI sets CI=true; the Postgres fixtures fail (never skip) when the server is down.
    if os.environ.get("CI"):
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
