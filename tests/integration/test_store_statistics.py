"""The samples table's statistics are kept by leakwatch, not left to autovacuum.

Without statistics Postgres planned the "already stored?" lookup as a scan of the whole
table (119 ms at 506k rows, 4.5 ms after ANALYZE). The cycle refreshes them when they
are missing or stale; this runs on a database of its own, so they start missing.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from leakwatch.core.events import DrawnEvent, SourceEvent
from leakwatch.store.db import make_engine, session_factory, transaction
from leakwatch.store.outcomes import (
    record_samples,
    recorded_identities,
    refresh_statistics_if_stale,
    sample_row,
)
from tests.support.cycle import build_world

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)

pytestmark = pytest.mark.postgres


@pytest.fixture
def fresh_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def _samples(first: int, count: int) -> list[DrawnEvent]:
    return [
        DrawnEvent(
            source="gw",
            event=SourceEvent(
                transaction_id=f"txn-{i:08d}",
                customer_id=f"c{i % 50}",
                event_type="api",
                timestamp=NOW - timedelta(seconds=i),
            ),
        )
        for i in range(first, first + count)
    ]


def _record(engine: Engine, samples: list[DrawnEvent]) -> None:
    rows = [sample_row(s, now=NOW, run_id=None, quantity_properties={}) for s in samples]
    with transaction(session_factory(engine)) as session:
        record_samples(session, rows)
        session.execute(text("SELECT pg_stat_force_next_flush()"))


def test_statistics_are_taken_when_missing_and_again_only_when_stale(
    fresh_engine: Engine,
) -> None:
    sessions = session_factory(fresh_engine)
    _record(fresh_engine, _samples(0, 12_000))
    with transaction(sessions) as session:
        assert refresh_statistics_if_stale(session) is True
    with transaction(sessions) as session:
        assert refresh_statistics_if_stale(session) is False  # nothing changed since
        plan = "\n".join(
            row[0]
            for row in session.execute(
                text(
                    "EXPLAIN SELECT source, transaction_id, payload_hash FROM sampled_event "
                    "WHERE transaction_id IN ('txn-00000001', 'txn-00000002')"
                )
            )
        )
        assert "Seq Scan" not in plan, plan
        assert len(recorded_identities(session, _samples(0, 3))) == 3
    _record(fresh_engine, _samples(12_000, 500))  # a small change: statistics still good
    with transaction(sessions) as session:
        assert refresh_statistics_if_stale(session) is False


def _analyzed(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT coalesce(last_analyze, last_autoanalyze) IS NOT NULL "
                    "FROM pg_stat_user_tables WHERE relname = 'sampled_event'"
                )
            ).scalar_one()
        )


def test_a_cycle_takes_missing_statistics_before_it_asks_the_samples_anything(
    pg_url: str, tmp_path: Path
) -> None:
    # A store loaded without statistics (a restore, a first big import), then a cycle
    # that draws nothing new (its re-checks only update): the due count, the lookup and
    # the due rows of this very cycle need them.
    engine = make_engine(pg_url)
    _record(engine, _samples(0, 12_000))
    assert not _analyzed(engine)
    engine.dispose()
    for world in build_world(pg_url, tmp_path, strings=False, events=200):
        with world.search_client() as search:
            summary = world.cycle(search).run(draw=False)
        assert summary.status == "finished"
        assert sum(r.newly_recorded for r in summary.sources.values()) == 0
        assert _analyzed(world.engine)


def test_a_windows_probes_are_read_by_index_without_statistics(fresh_engine: Engine) -> None:
    # The alert pass's per-cycle probe counts: one stratum's samples of a day, found
    # without reading the day's other samples, before any statistics exist.
    _record(fresh_engine, _samples(0, 12_000))
    with transaction(session_factory(fresh_engine)) as session:
        plan = "\n".join(
            row[0]
            for row in session.execute(
                text(
                    "EXPLAIN SELECT event_type, sampled_at, count(*) FROM sampled_event "
                    "WHERE stratum = 'probe:event_type' AND sampled_at >= :since "
                    "AND sampled_at < :until GROUP BY event_type, sampled_at"
                ),
                {"since": NOW - timedelta(days=1), "until": NOW + timedelta(minutes=1)},
            )
        )
    assert "ix_sampled_stratum_time" in plan, plan
