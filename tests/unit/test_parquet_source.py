"""The Parquet source on generated files: the window from metadata, uniform and
stratified draws by row group and offset, volumes from statistics, epoch times."""

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import chisquare  # type: ignore[import-untyped,unused-ignore]

from leakwatch.core.timestamps import TimestampFormat, TimestampUnit
from leakwatch.sources import make_source
from leakwatch.sources.base import VolumeKey
from leakwatch.sources.checkpoints import InMemoryCheckpointStore
from leakwatch.sources.parquet import ParquetSource
from leakwatch.sources.specs import ParquetSourceSpec

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
ROWS = 6000
SPAN = timedelta(days=40)


def when(index: int) -> datetime:
    return NOW - SPAN + SPAN * index / ROWS


def kind(index: int) -> str:
    return "rare" if index % 500 == 0 else ("gpu" if index % 3 == 0 else "api")


def write(path: Path, *, epoch_ms: bool = False, row_group_size: int = 500) -> None:
    times: list[Any] = [when(i) for i in range(ROWS)]
    if epoch_ms:
        times = [round(t.timestamp() * 1000) for t in times]
    table = pa.table(
        {
            "txn": [f"t{i}" if i % 2000 != 7 else None for i in range(ROWS)],
            "customer": [f"c{i % 9}" for i in range(ROWS)],
            "kind": [kind(i) for i in range(ROWS)],
            "at": pa.array(times, type=pa.int64() if epoch_ms else pa.timestamp("us", tz="UTC")),
            "props": [json.dumps({"quantity": i % 7}) for i in range(ROWS)],
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)


def source(path: Path | str, **kwargs: Any) -> ParquetSource:
    spec = ParquetSourceSpec(
        name="lake",
        path=str(path),
        fields={
            "transaction_id": "txn",
            "customer_id": "customer",
            "event_type": "kind",
            "timestamp": "at",
            "properties": "props",
        },
        max_age=timedelta(days=30),
        **kwargs,
    )
    built = make_source(spec, state_dir=Path("/nonexistent"))
    assert isinstance(built, ParquetSource)
    return built


def in_window() -> list[int]:
    start, end = NOW - timedelta(days=30), NOW - timedelta(minutes=10)
    return [i for i in range(ROWS) if start < when(i) < end and i % 2000 != 7]


def test_uniform_draw_is_exact_in_population_and_uniform(tmp_path: Path) -> None:
    write(tmp_path / "a.parquet")
    src = source(tmp_path / "*.parquet")
    truth = in_window()
    counts: Counter[int] = Counter()
    for seed in range(40):
        result = src.sample(100, now=NOW, rng=random.Random(seed))
        assert result.population_exact
        # Rows with no transaction id are counted by the window but never drawn.
        assert result.population == len(truth) + sum(
            1 for i in range(ROWS) if i % 2000 == 7 and NOW - timedelta(days=30) < when(i)
        )
        ids = [int(e.event.transaction_id[1:]) for e in result.events]
        assert len(set(ids)) == len(ids) >= 99
        assert all(result.window.contains(e.event.timestamp) for e in result.events)
        assert all(
            e.event.properties == {"quantity": i % 7}
            for e, i in zip(result.events, ids, strict=True)
        )
        counts.update((i - truth[0]) * 15 // (truth[-1] - truth[0] + 1) for i in ids)
    assert chisquare([counts[b] for b in range(15)]).pvalue > 0.001


def test_stratified_draw_gives_the_rare_stratum_its_floor(tmp_path: Path) -> None:
    write(tmp_path / "a.parquet")
    result = source(tmp_path / "a.parquet").sample(
        60, now=NOW, rng=random.Random(1), stratify_by="event_type", floor=6
    )
    by = Counter(e.stratum for e in result.events)
    assert by["rare"] == 6
    assert sum(by.values()) == 60
    rare_truth = sum(1 for i in in_window() if kind(i) == "rare")
    assert result.strata_populations["rare"] == rare_truth
    rare_weight = sum(e.weight for e in result.events if e.stratum == "rare")
    assert rare_weight == pytest.approx(rare_truth)


def test_epoch_ms_columns_read_as_instants(tmp_path: Path) -> None:
    write(tmp_path / "a.parquet", epoch_ms=True)
    fmt = TimestampFormat(unit=TimestampUnit.MILLISECONDS)
    result = source(tmp_path / "a.parquet", timestamp_format=fmt).sample(
        50, now=NOW, rng=random.Random(2)
    )
    assert len(result.events) == 50
    for sampled in result.events:
        index = int(sampled.event.transaction_id[1:])
        assert abs(sampled.event.timestamp - when(index)) < timedelta(milliseconds=1)


@pytest.mark.parametrize("row_group_size", [100, 7000])
def test_scan_counts_each_file_once_per_type_and_day(tmp_path: Path, row_group_size: int) -> None:
    # Sorted by day and type: with small row groups, statistics alone suffice.
    write(tmp_path / "a.parquet", row_group_size=row_group_size)
    src = source(tmp_path)
    store = InMemoryCheckpointStore()
    first = src.scan_new(store.load("lake"), now=NOW)
    store.apply(first, day=NOW.date())
    again = src.scan_new(store.load("lake"), now=NOW)
    assert again.lines_read == 0
    day = (NOW - timedelta(days=3)).date()
    expected = sum(
        1 for i in range(ROWS) if when(i).date() == day and kind(i) == "api" and i % 2000 != 7
    )
    assert store.volume("lake", "api", day) == expected
    assert sum(store.volumes.values()) == ROWS - 3
    assert dict(first.bad_lines) == {"no_transaction_id": 3}


def test_volumes_come_from_statistics_when_a_row_group_is_one_type_and_day(
    tmp_path: Path,
) -> None:
    days = [NOW.date() - timedelta(days=d) for d in (3, 2, 1)]
    rows = [
        (f"{day}-{k}-{i}", k, datetime(day.year, day.month, day.day, 1 + i, tzinfo=UTC))
        for day in days
        for k in ("api", "gpu")
        for i in range(10)
    ]
    table = pa.table(
        {
            "txn": [r[0] for r in rows],
            "customer": ["c"] * len(rows),
            "kind": [r[1] for r in rows],
            "at": pa.array([r[2] for r in rows], type=pa.timestamp("ms", tz="UTC")),
            "props": ["{}"] * len(rows),
        }
    )
    pq.write_table(table, tmp_path / "sorted.parquet", row_group_size=10)
    result = source(tmp_path / "sorted.parquet").scan_new((), now=NOW)
    assert result.notes == ("6 of 6 row groups counted from statistics",)
    assert result.volumes[VolumeKey("gpu", days[1])].events == 10
    assert sum(v.events for v in result.volumes.values()) == 60
