"""The SQL source on real Postgres and MariaDB (each its own database, dropped after)
and on SQLite."""

import os
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from leakwatch.sources import SqlSourceSpec
from leakwatch.sources.checkpoints import InMemoryCheckpointStore
from leakwatch.sources.sql import SqlSource
from tests.support.databases import mariadb_database, postgres_database

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
ROWS = 20_000
SPAN = timedelta(days=40)  # older than max_age at the start: some rows must be excluded
PG_ADMIN = os.environ.get("LEAKWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def row_time(index: int) -> datetime:
    return NOW - SPAN + SPAN * index / ROWS


def event_type_of(index: int) -> str:
    return "rare" if index % 1000 == 0 else ("gpu" if index % 3 == 0 else "api")


def _timestamp_type(engine: sa.Engine) -> sa.types.TypeEngine[datetime]:
    if engine.dialect.name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import DATETIME

        # MariaDB's DATETIME keeps no zone and whole seconds unless asked: UTC, to µs.
        return DATETIME(fsp=6)
    return sa.DateTime(timezone=True)


def make_table(engine: sa.Engine) -> None:
    metadata = sa.MetaData()
    table = sa.Table(
        "usage_events",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("txn", sa.String(40)),
        sa.Column("customer", sa.String(40)),
        sa.Column("kind", sa.String(40)),
        sa.Column("happened_at", _timestamp_type(engine)),
        sa.Column("props", sa.JSON),
    )
    metadata.create_all(engine)
    rows = [
        {
            "txn": f"t{i}" if i % 5000 != 1 else None,
            "customer": f"c{i % 11}",
            "kind": event_type_of(i),
            "happened_at": row_time(i),
            "props": {"quantity": i % 7},
        }
        for i in range(ROWS)
    ]
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("ANALYZE usage_events"))


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        built = sa.create_engine(f"sqlite:///{tmp_path / 'events.db'}")
        make_table(built)
        yield built
        built.dispose()
        return
    database = mariadb_database if request.param == "mariadb" else postgres_database
    with database("leakwatch_sqlsrc") as built:
        make_table(built)
        yield built


def sql_source(engine: sa.Engine, **kwargs: object) -> SqlSource:
    spec = SqlSourceSpec(
        name="warehouse",
        url=engine.url.render_as_string(hide_password=False),
        table="usage_events",
        fields={
            "transaction_id": "txn",
            "customer_id": "customer",
            "event_type": "kind",
            "timestamp": "happened_at",
            "properties": "props",
        },
        max_age=timedelta(days=30),
        **kwargs,  # type: ignore[arg-type]
    )
    return SqlSource(spec, engine=engine)


def in_window_count() -> int:
    start, end = NOW - timedelta(days=30), NOW - timedelta(minutes=10)
    return sum(1 for i in range(ROWS) if start < row_time(i) < end and i % 5000 != 1)


def test_uniform_sample_respects_the_window(engine: sa.Engine) -> None:
    result = sql_source(engine).sample(200, now=NOW, rng=random.Random(3))
    assert len(result.events) == 200
    assert len({e.event.transaction_id for e in result.events}) == 200
    for sampled in result.events:
        assert result.window.contains(sampled.event.timestamp)
        assert sampled.event.properties["quantity"] == int(sampled.event.transaction_id[1:]) % 7
    truth = in_window_count()
    assert result.population == pytest.approx(truth, rel=0.35)
    assert sum(e.weight for e in result.events) == pytest.approx(result.population)


def test_a_window_of_few_pages_is_counted_exactly(engine: sa.Engine) -> None:
    if engine.dialect.name in ("mysql", "mariadb"):
        pytest.skip("key ranges read one row each: no pages to run out of")
    # 50 draws need ~75 pages: a large share of this small table's, so a scan it is.
    result = sql_source(engine).sample(50, now=NOW, rng=random.Random(1))
    assert result.population_exact
    assert result.population == in_window_count()


def test_uniform_sample_matches_stratum_shares(engine: sa.Engine) -> None:
    src = sql_source(engine)
    seen: Counter[str] = Counter()
    for seed in range(10):
        drawn = src.sample(300, now=NOW, rng=random.Random(seed)).events
        seen.update(e.event.event_type for e in drawn)
    total = sum(seen.values())
    assert seen["gpu"] / total == pytest.approx(1 / 3, abs=0.06)


def test_stratified_sample_floors_and_weights(engine: sa.Engine) -> None:
    result = sql_source(engine).sample(
        60, now=NOW, rng=random.Random(2), stratify_by="event_type", floor=8
    )
    by_stratum = Counter(e.stratum for e in result.events)
    assert by_stratum["rare"] == 8  # only ~15 rare rows exist in the window
    assert sum(by_stratum.values()) == 60
    assert result.population_exact
    assert result.population == in_window_count()
    rare_weight = sum(e.weight for e in result.events if e.stratum == "rare")
    assert rare_weight == pytest.approx(result.strata_populations["rare"])


def test_scan_new_counts_per_day_and_resumes(engine: sa.Engine) -> None:
    src = sql_source(engine)
    store = InMemoryCheckpointStore()
    first = src.scan_new(store.load("warehouse"), now=NOW - timedelta(days=1))
    store.apply(first, day=NOW.date())
    second = src.scan_new(store.load("warehouse"), now=NOW)
    store.apply(second, day=NOW.date())
    assert second.lines_read < first.lines_read
    counted = sum(store.volumes.values())
    start_first = NOW - timedelta(days=1) - timedelta(days=30)
    expected = sum(
        1
        for i in range(ROWS)
        if start_first < row_time(i) <= NOW - timedelta(minutes=10) and i % 5000 != 1
    )
    assert counted == expected
    day = (NOW - timedelta(days=3)).date()
    expected_day = sum(
        1
        for i in range(ROWS)
        if row_time(i).date() == day and i % 5000 != 1 and event_type_of(i) == "api"
    )
    assert store.volume("warehouse", "api", day) == expected_day


@pytest.mark.parametrize("kind", ["sqlite"])
def test_checkpoint_repo_round_trip_on_the_store(kind: str, tmp_path: Path) -> None:
    """The store-backed CheckpointStore resumes a JSONL tail exactly like the in-memory one."""
    del kind
    from leakwatch.sources import JsonlSourceSpec, make_source
    from leakwatch.store.checkpoint_repo import SqlCheckpointStore
    from leakwatch.store.db import make_engine, session_factory, transaction, upgrade
    from leakwatch.store.models import BadLineCount, VolumeCount
    from tests.support.logs import event_line

    store_engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(store_engine)
    sessions = session_factory(store_engine)
    log = tmp_path / "app.jsonl"
    at = NOW - timedelta(days=1)
    log.write_bytes(b"".join(event_line(i, at) for i in range(10)) + b"garbage\n")
    source = make_source(JsonlSourceSpec(name="gw", path=str(log)), state_dir=tmp_path)
    for extra in (0, 5):
        if extra:
            with log.open("ab") as handle:
                handle.write(b"".join(event_line(100 + i, at) for i in range(extra)))
        with transaction(sessions) as session:
            repo = SqlCheckpointStore(session, updated_at=NOW)
            repo.apply(source.scan_new(repo.load("gw"), now=NOW), day=NOW.date())
    with transaction(sessions) as session:
        volumes = session.exec(sa.select(VolumeCount)).scalars().all()  # type: ignore[call-overload]
        assert [(v.event_type, v.day, v.events) for v in volumes] == [("api", at.date(), 15)]
        bad = session.exec(sa.select(BadLineCount)).scalars().all()  # type: ignore[call-overload]
        assert [(b.reason, b.count, b.examples) for b in bad] == [("not_json", 1, ["garbage"])]
        checkpoints = SqlCheckpointStore(session, updated_at=NOW).load("gw")
        assert [c.offset for c in checkpoints] == [log.stat().st_size]
    store_engine.dispose()


@pytest.fixture
def clustered_pg() -> Iterator[sa.Engine]:
    """200,000 time-ordered rows on Postgres; leaks come in 10 bursts (10% of rows)."""
    name = f"leakwatch_sqlclu_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}", autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE usage_events (id int, txn text, customer text, kind text,"
                " happened_at timestamptz, props jsonb)"
            )
            conn.execute(
                "INSERT INTO usage_events SELECT g, 't' || g, 'c' || (g %% 11), 'api',"
                " %(now)s::timestamptz - interval '29 days' + g * interval '12 seconds',"
                " jsonb_build_object('leak', CASE WHEN g %% 20000 < 2000 THEN 1 ELSE 0 END)"
                " FROM generate_series(0, 199999) AS g",
                {"now": NOW},
            )
            conn.execute("ANALYZE usage_events")
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        built = sa.create_engine(f"{base}/{name}")
        yield built
        built.dispose()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_postgres_samples_are_not_clustered_in_time(clustered_pg: sa.Engine) -> None:
    """Rows of one page are neighbours in time; a sample of whole pages would see a
    burst all or nothing. The draw's spread must be close to a simple random sample's."""
    source = sql_source(clustered_pg)
    n = 30  # few enough pages to read (~10% of the table) that no full scan is needed
    shares: list[float] = []
    populations: list[float] = []
    paged = 0
    for seed in range(80):
        result = source.sample(n, now=NOW, rng=random.Random(seed))
        # A draw that falls short of pages retries bigger, or scans: rare, and exact.
        if not result.population_exact:
            paged += 1
            populations.append(result.population)
        assert len(result.events) == n
        weight = sum(e.weight for e in result.events)
        leaked = sum(e.weight for e in result.events if e.event.properties["leak"] == 1)
        shares.append(leaked / weight)
    mean = sum(shares) / len(shares)
    spread = (sum((x - mean) ** 2 for x in shares) / (len(shares) - 1)) ** 0.5
    binomial = (0.1 * 0.9 / n) ** 0.5
    assert paged >= 70
    # Each draw's count over p·q estimates the window without bias.
    assert sum(populations) / len(populations) == pytest.approx(200_000, rel=0.1)
    assert mean == pytest.approx(0.1, abs=4 * binomial / len(shares) ** 0.5 + 0.01)
    # Whole pages would give a spread several times the binomial one (~7x measured).
    assert spread < 1.6 * binomial


def test_mariadb_key_ranges_are_unbiased_and_pushed_down() -> None:
    """Random primary-key ranges over a table with gaps: equal inclusion probabilities.

    Every third id is deleted, so the keys have holes; rows next to a hole must not be
    drawn more often (the range start is uniform over all positions), and the count
    over the inclusion probability estimates the window without bias.
    """
    with mariadb_database() as built:
        make_table(built)
        with built.begin() as conn:
            conn.execute(sa.text("DELETE FROM usage_events WHERE id % 3 = 0"))
        source = sql_source(built)
        assert source.sampling.kind == "key_ranges"
        truth = sum(
            1
            for i in range(ROWS)
            if (i + 1) % 3 != 0
            and NOW - timedelta(days=30) < row_time(i) < NOW - timedelta(minutes=10)
            and i % 5000 != 1
        )
        populations = []
        after_gap: Counter[bool] = Counter()
        for seed in range(30):
            result = source.sample(100, now=NOW, rng=random.Random(seed))
            assert len(result.events) == 100
            assert not result.population_exact
            populations.append(result.population)
            for sampled in result.events:
                index = int(sampled.event.transaction_id[1:])
                after_gap[(index + 1) % 3 == 1] += 1
        assert sum(populations) / len(populations) == pytest.approx(truth, rel=0.05)
        # Half the surviving rows follow a hole: half the draws must, too.
        assert after_gap[True] / sum(after_gap.values()) == pytest.approx(0.5, abs=0.04)
