"""One leaky scenario, every kind of source: each sampled event gets its true outcome.

The same log (with dropped events, an unknown alias, an unmetered type, collisions,
payloads changed in flight and harmless resends) is placed where real companies keep
it — a local file with epoch-millisecond times, an S3 object (plain and .gz, on moto's
server), a Parquet file (local and in S3), a Postgres table, a MariaDB table (with
timestamps and with epoch ms) — and checked against the simulator over loopback, with
the store on SQLite.
"""

import gzip
import random
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from leakwatch.simulator.scenario import Scenario
from tests.fakes.moto_s3 import MotoS3, put
from tests.support.cycle import World, assert_true_outcomes, build_world
from tests.support.databases import mariadb_database, postgres_database

Placer = Callable[[Scenario, Path], dict[str, Any]]
SQL_FIELDS = {
    "transaction_id": "txn",
    "customer_id": "customer",
    "event_type": "kind",
    "timestamp": "happened_at",
    "properties": "props",
}


def jsonl_epoch_ms(scenario: Scenario, tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / "usage.jsonl"
    scenario.write_log(log, epoch_ms=True)
    return {"type": "jsonl", "path": str(log), "fields": {"timestamp_unit": "ms"}}


def fill_table(engine: sa.Engine, scenario: Scenario, *, epoch_ms: bool = False) -> None:
    """The scenario's log as a table with its own column names (and an integer key)."""
    if epoch_ms:
        time_type: sa.types.TypeEngine[Any] = sa.BigInteger()
    elif engine.dialect.name in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import DATETIME

        time_type = DATETIME(fsp=6)
    else:
        time_type = sa.DateTime(timezone=True)
    metadata = sa.MetaData()
    table = sa.Table(
        "usage_log",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("txn", sa.String(64)),
        sa.Column("customer", sa.String(64)),
        sa.Column("kind", sa.String(64)),
        sa.Column("happened_at", time_type),
        sa.Column("props", sa.JSON),
    )
    metadata.create_all(engine)
    rows = []
    for record in scenario.records(epoch_ms=epoch_ms):
        when = record["timestamp"]
        if not epoch_ms:
            when = scenario_time(when)
            if engine.dialect.name in ("mysql", "mariadb"):
                when = when.astimezone(UTC).replace(tzinfo=None)
        rows.append(
            {
                "txn": record["transaction_id"],
                "customer": record["customer_id"],
                "kind": record["event_type"],
                "happened_at": when,
                "props": record["properties"],
            }
        )
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("ANALYZE usage_log"))


def parquet_bytes(scenario: Scenario) -> bytes:
    """The scenario's log as Parquet: timestamp column, properties as JSON text."""
    import io
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    records = scenario.records()
    table = pa.table(
        {
            "txn": [r["transaction_id"] for r in records],
            "customer": [r["customer_id"] for r in records],
            "kind": [r["event_type"] for r in records],
            "happened_at": pa.array(
                [scenario_time(r["timestamp"]) for r in records], type=pa.timestamp("us", tz="UTC")
            ),
            "props": [json.dumps(r["properties"]) for r in records],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=100)
    return buffer.getvalue()


def scenario_time(text: str) -> Any:
    from leakwatch.core.events import parse_timestamp

    return parse_timestamp(text)


def sql_source(engine: sa.Engine, **extra: Any) -> dict[str, Any]:
    return {
        "type": "sql",
        "url": engine.url.render_as_string(hide_password=False),
        "table": "usage_log",
        "fields": {**SQL_FIELDS, **extra},
    }


@pytest.fixture(
    params=[
        "jsonl-epoch-ms",
        "s3-plain",
        "s3-gz",
        "parquet",
        "s3-parquet",
        "postgres-table",
        "mariadb-table",
        "mariadb-epoch-ms",
    ]
)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    from leakwatch.store.db import make_engine, upgrade

    store = make_engine(store_url)
    upgrade(store)
    store.dispose()
    kind: str = request.param
    if kind == "jsonl-epoch-ms":
        yield from build_world(store_url, tmp_path, strings=False, place=jsonl_epoch_ms)
        return
    if kind.endswith("parquet"):

        def lake(scenario: Scenario, path: Path) -> dict[str, Any]:
            data = parquet_bytes(scenario)
            if kind == "parquet":
                (path / "lake").mkdir()
                (path / "lake" / "part-0.parquet").write_bytes(data)
                return {"type": "parquet", "path": str(path / "lake"), "fields": SQL_FIELDS}
            server: MotoS3 = request.getfixturevalue("moto_s3")
            bucket: str = request.getfixturevalue("bucket")
            put(server, bucket, "lake/part-0.parquet", data)
            return {"type": "parquet", "path": f"s3://{bucket}/lake/", "fields": SQL_FIELDS}

        yield from build_world(store_url, tmp_path, strings=False, place=lake)
        return
    if kind.startswith("s3"):
        server: MotoS3 = request.getfixturevalue("moto_s3")
        bucket: str = request.getfixturevalue("bucket")
        compressed = kind.endswith("gz")

        def upload(scenario: Scenario, _: Path) -> dict[str, Any]:
            data = scenario.log_bytes()
            key = "gateway/usage.jsonl" + (".gz" if compressed else "")
            put(server, bucket, key, gzip.compress(data) if compressed else data)
            return {"type": "jsonl", "path": f"s3://{bucket}/gateway/*.jsonl*"}

        yield from build_world(store_url, tmp_path, strings=False, place=upload)
        return
    database = postgres_database if kind.startswith("postgres") else mariadb_database
    epoch_ms = kind.endswith("epoch-ms")
    with database() as engine:

        def place(scenario: Scenario, _: Path) -> dict[str, Any]:
            fill_table(engine, scenario, epoch_ms=epoch_ms)
            return sql_source(engine, **({"timestamp_unit": "ms"} if epoch_ms else {}))

        yield from build_world(store_url, tmp_path, strings=False, place=place)


def test_every_source_kind_gives_every_event_its_true_outcome(world: World) -> None:
    world.rng = random.Random(4)
    rows = assert_true_outcomes(world)
    assert {"matched", "missing", "unmatched_customer", "unmatched_metric", "mismatch"} <= {
        r.outcome for r in rows
    }
