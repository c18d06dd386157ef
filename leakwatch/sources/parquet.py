"""The Parquet source: files on disk or in object storage, read through their metadata.

Does I/O (pyarrow; object storage through fsspec, every read a ranged GET). A Parquet
file says in its footer how many rows each row group holds and, per column, the
smallest and largest value. So:

- the window: a row group whose timestamp statistics lie inside the window counts all
  its rows without reading them; one that straddles an edge (about two per file, in a
  time-ordered file) has its timestamp column read and counted exactly; one outside is
  skipped. The population is exact.
- a uniform draw picks n row indices among the window's rows and reads only the row
  groups that hold a pick (at most n; columns projected), taking the rows at their
  offsets: O(samples), never the file.
- a stratified draw reads the stratum and timestamp columns of the window's row groups
  (one or two dictionary-encoded columns, not the rows), allocates, and picks offsets
  per stratum the same way.
- volumes per event type and day come from column statistics where they suffice (one
  event type and one UTC day in the row group: its row count), else from the two
  columns. A file is counted once, keyed by its identity (mtime and size, or ETag).
"""

import bisect
import json
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leakwatch.core.events import DrawnEvent, SourceEvent, quantity_value
from leakwatch.core.sampling import (
    Window,
    allocate,
    allocate_within,
    parse_stratify_by,
    sampling_window,
    settled_since,
)
from leakwatch.core.timestamps import TimestampFormat, read_timestamp
from leakwatch.sources.base import (
    BadLineReason,
    BadLineTally,
    FileCheckpoint,
    ProgressCallback,
    SampleResult,
    ScanResult,
    StopCheck,
    VolumeDelta,
    VolumeKey,
)
from leakwatch.sources.inventory import SourceInventory, files_inventory
from leakwatch.sources.objects import LogPath, ObjectPath, file_problems, list_files
from leakwatch.sources.specs import ParquetSourceSpec

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise OSError("Parquet sources need pyarrow: pip install 'leakwatch[parquet]'") from None
    return pq


@dataclass(frozen=True, slots=True)
class _Group:
    """The window's rows in one row group: all of them, or the offsets listed."""

    file_index: int
    group: int
    rows: int
    offsets: tuple[int, ...] | None  # None: every row of the group is in the window


class _OpenFile:
    """One Parquet file opened for metadata and row-group reads."""

    def __init__(self, path: LogPath) -> None:
        self.path = path
        self._handle = path.open_random() if isinstance(path, ObjectPath) else None
        source = self._handle if self._handle is not None else str(path)
        self.file = _pyarrow().ParquetFile(source)
        self.metadata = self.file.metadata
        self.schema_names: list[str] = list(self.file.schema_arrow.names)

    def column_index(self, name: str) -> int | None:
        try:
            return self.schema_names.index(name)
        except ValueError:
            return None

    def stats(self, group: int, column: str) -> tuple[Any, Any] | None:
        index = self.column_index(column)
        if index is None:
            return None
        statistics = self.metadata.row_group(group).column(index).statistics
        if statistics is None or not statistics.has_min_max:
            return None
        return statistics.min, statistics.max

    def read(self, group: int, columns: Sequence[str]) -> Any:
        present = [c for c in columns if c in self.schema_names]
        return self.file.read_row_group(group, columns=present)

    def close(self) -> None:
        self.file.close()
        if self._handle is not None:
            self._handle.close()


class ParquetSource:
    """Sample and count Parquet files from their metadata (see the module docstring)."""

    def __init__(self, spec: ParquetSourceSpec) -> None:
        self.spec = spec
        self._columns = dict(spec.fields)
        # A zone-less timestamp column holds UTC unless the source names its zone.
        zone = spec.timestamp_format.zone or UTC
        self._time_format = TimestampFormat(unit=spec.timestamp_format.unit, zone=zone)

    @property
    def name(self) -> str:
        return self.spec.name

    def files(self) -> list[LogPath]:
        """The source's Parquet files in name order (other files under a prefix ignored)."""
        found = list_files(self.spec.path, self.spec.storage_options)
        return [p for p in found if p.suffix in PARQUET_SUFFIXES]

    def problems(self) -> list[str]:
        return file_problems(self.spec.path, self.files)

    def describe(self) -> SourceInventory:
        return files_inventory(
            name=self.name,
            kind="parquet",
            location=self.spec.path,
            list_files=self.files,
            sampling="row groups and offsets from Parquet metadata",
        )

    def close(self) -> None:
        """Nothing to release: files are opened per read."""

    # -- rows to events -------------------------------------------------------------------

    def _time(self, value: Any) -> datetime | None:
        return read_timestamp(value, self._time_format)

    def _event(self, row: Mapping[str, Any]) -> SourceEvent | BadLineReason:
        columns = self._columns
        transaction_id = row.get(columns["transaction_id"])
        if transaction_id is None or transaction_id == "":
            return BadLineReason.NO_TRANSACTION_ID
        timestamp = self._time(row.get(columns["timestamp"]))
        if timestamp is None:
            return BadLineReason.BAD_TIMESTAMP
        customer_id = row.get(columns["customer_id"])
        event_type = row.get(columns["event_type"])
        if customer_id is None or event_type is None or event_type == "":
            return BadLineReason.MISSING_FIELD
        properties = _properties(row.get(columns["properties"]))
        if properties is None:
            return BadLineReason.NOT_JSON
        return SourceEvent(
            transaction_id=str(transaction_id),
            customer_id=str(customer_id),
            event_type=str(event_type),
            timestamp=timestamp,
            properties=properties,
        )

    def _all_columns(self) -> list[str]:
        names = ["transaction_id", "customer_id", "event_type", "timestamp", "properties"]
        return [self._columns[n] for n in names]

    # -- the window -----------------------------------------------------------------------

    def _window_groups(
        self, opened: list[_OpenFile], window: Window, extra: Sequence[str] = ()
    ) -> tuple[list[_Group], dict[tuple[int, int], Any]]:
        """The row groups holding window rows, and (for `extra` columns) those columns."""
        ts_column = self._columns["timestamp"]
        groups: list[_Group] = []
        read: dict[tuple[int, int], Any] = {}
        for file_index, handle in enumerate(opened):
            for group in range(handle.metadata.num_row_groups):
                rows = handle.metadata.row_group(group).num_rows
                if rows == 0:
                    continue
                bounds = handle.stats(group, ts_column)
                low = self._time(bounds[0]) if bounds else None
                high = self._time(bounds[1]) if bounds else None
                if low is not None and high is not None:
                    if high <= window.start or low >= window.end:
                        continue
                    inside = window.contains(low) and window.contains(high)
                else:
                    inside = False
                if inside and not extra:
                    groups.append(_Group(file_index, group, rows, None))
                    continue
                table = handle.read(group, [ts_column, *extra])
                read[(file_index, group)] = table
                times = (
                    table.column(ts_column).to_pylist() if ts_column in table.column_names else []
                )
                offsets = tuple(
                    i for i, value in enumerate(times) if _contains(window, self._time(value))
                )
                if offsets:
                    groups.append(_Group(file_index, group, len(offsets), offsets))
        return groups, read

    # -- sampling -------------------------------------------------------------------------

    def sample(
        self,
        n: int,
        *,
        now: datetime,
        rng: random.Random,
        stratify_by: str | None = None,
        floor: int = 0,
        progress: ProgressCallback | None = None,
        since: datetime | None = None,
        within: str | None = None,
    ) -> SampleResult:
        """Draw up to `n` events from the window: uniform, or stratified with floors."""
        del progress
        window = settled_since(
            sampling_window(now, self.spec.settle_delay, self.spec.max_age),
            since,
            self.spec.settle_delay,
        )
        fields = parse_stratify_by(stratify_by)
        if within is not None and not fields:
            raise ValueError("drawing within a stratum needs stratify_by")
        opened = [_OpenFile(path) for path in self.files()]
        tally = BadLineTally()
        try:
            strata_columns = [self._columns[f] for f in fields]
            groups, read = self._window_groups(opened, window, strata_columns)
            if not fields:
                population = sum(g.rows for g in groups)
                picks = _choose(groups, min(n, population), rng)
                events = self._read_picks(opened, picks, tally)
                weight = population / len(events) if events else 0.0
                sampled = [DrawnEvent(self.name, e, weight) for e in events]
                rng.shuffle(sampled)
                return self._result(window, sampled, population, {}, tally)
            by_stratum = self._strata(groups, read, fields)
            populations = {s: sum(len(v) for v in g.values()) for s, g in by_stratum.items()}
            allocation = (
                allocate(populations, n, floor)
                if within is None
                else allocate_within(populations, within, n)
            )
            sampled = []
            for stratum, wanted in sorted(allocation.items()):
                if wanted <= 0:
                    continue
                stratum_groups = [
                    _Group(fi, gi, len(offsets), tuple(offsets))
                    for (fi, gi), offsets in sorted(by_stratum[stratum].items())
                ]
                picks = _choose(stratum_groups, min(wanted, populations[stratum]), rng)
                events = self._read_picks(opened, picks, tally)
                weight = populations[stratum] / len(events) if events else 0.0
                sampled += [DrawnEvent(self.name, e, weight, stratum) for e in events]
            rng.shuffle(sampled)
            total = sum(populations.values())
            return self._result(
                window, sampled, total, {k: float(v) for k, v in populations.items()}, tally
            )
        finally:
            for handle in opened:
                handle.close()

    def _strata(
        self,
        groups: list[_Group],
        read: dict[tuple[int, int], Any],
        fields: tuple[str, ...],
    ) -> dict[str, dict[tuple[int, int], list[int]]]:
        """Window row offsets per stratum and row group, from the stratum columns."""
        found: dict[str, dict[tuple[int, int], list[int]]] = defaultdict(dict)
        for group in groups:
            table = read[(group.file_index, group.group)]
            values = [table.column(self._columns[f]).to_pylist() for f in fields]
            offsets = group.offsets if group.offsets is not None else range(group.rows)
            for offset in offsets:
                key = "|".join(str(column[offset]) for column in values)
                found[key].setdefault((group.file_index, group.group), []).append(offset)
        return found

    def _read_picks(
        self, opened: list[_OpenFile], picks: dict[tuple[int, int], list[int]], tally: BadLineTally
    ) -> list[SourceEvent]:
        """Read each picked row group once (projected) and take the rows at the offsets."""
        events: list[SourceEvent] = []
        for (file_index, group), offsets in sorted(picks.items()):
            table = opened[file_index].read(group, self._all_columns())
            for row in table.take(sorted(offsets)).to_pylist():
                parsed = self._event(row)
                if isinstance(parsed, BadLineReason):
                    tally.add(parsed, json.dumps(row, default=str).encode())
                else:
                    events.append(parsed)
        return events

    def _result(
        self,
        window: Window,
        sampled: list[DrawnEvent],
        population: float,
        strata: Mapping[str, float],
        tally: BadLineTally,
    ) -> SampleResult:
        return SampleResult(
            source=self.name,
            window=window,
            events=tuple(sampled),
            population=float(population),
            population_exact=True,
            strata_populations=dict(strata),
            bad_lines=tally.frozen_counts(),
            bad_examples=tally.frozen_examples(),
        )

    # -- tailing --------------------------------------------------------------------------

    def scan_new(
        self,
        checkpoints: tuple[FileCheckpoint, ...],
        *,
        now: datetime,
        progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> ScanResult:
        """Count the files not counted before, per event type and UTC day.

        A Parquet file is written whole, so a file is counted once, when first seen
        under its identity; row groups of one type and one day are counted from their
        statistics alone.
        """
        del now, progress
        known = {c.file_key for c in checkpoints}
        volumes: defaultdict[VolumeKey, list[float]] = defaultdict(lambda: [0, 0.0])
        tally = BadLineTally()
        kept: list[FileCheckpoint] = []
        lines = 0
        caught_up = True
        groups_total = groups_from_stats = 0
        for path in self.files():
            key = _file_key(path)
            stat = path.stat()
            if key in known:
                kept.append(next(c for c in checkpoints if c.file_key == key))
                continue
            if should_stop is not None and should_stop():
                caught_up = False
                break
            handle = _OpenFile(path)
            try:
                counted, first, last, from_stats = self._count_file(handle, volumes, tally)
                groups_total += handle.metadata.num_row_groups
                groups_from_stats += from_stats
            finally:
                handle.close()
            lines += counted
            kept.append(
                FileCheckpoint(
                    file_key=key,
                    path=str(path),
                    offset=counted,
                    size=stat.st_size,
                    mtime=stat.st_mtime,
                    lines=counted,
                    first_event_at=first,
                    last_event_at=last,
                )
            )
        return ScanResult(
            source=self.name,
            volumes={
                k: VolumeDelta(events=int(v[0]), quantity_sum=float(v[1]))
                for k, v in volumes.items()
            },
            strata_seen=frozenset(k.event_type for k in volumes),
            bad_lines=tally.frozen_counts(),
            bad_examples=tally.frozen_examples(),
            checkpoints=tuple(kept),
            bytes_read=0,
            lines_read=lines,
            notes=(
                (f"{groups_from_stats} of {groups_total} row groups counted from statistics",)
                if groups_total
                else ()
            ),
            caught_up=caught_up,
        )

    def _count_file(
        self,
        handle: _OpenFile,
        volumes: defaultdict[VolumeKey, list[float]],
        tally: BadLineTally,
    ) -> tuple[int, datetime | None, datetime | None, int]:
        ts_column = self._columns["timestamp"]
        type_column = self._columns["event_type"]
        priced = bool(self.spec.quantity_properties)
        first: datetime | None = None
        last: datetime | None = None
        rows_total = from_stats = 0
        for group in range(handle.metadata.num_row_groups):
            rows = handle.metadata.row_group(group).num_rows
            rows_total += rows
            times = handle.stats(group, ts_column)
            types = handle.stats(group, type_column)
            low = self._time(times[0]) if times else None
            high = self._time(times[1]) if times else None
            required = [ts_column, type_column, self._columns["transaction_id"]]
            nulls = _null_count(handle, group, [*required, self._columns["customer_id"]])
            if (
                not priced
                and low is not None
                and high is not None
                and types is not None
                and types[0] == types[1]
                and low.date() == high.date()
                and nulls == 0
            ):
                # Statistics suffice: one event type, one UTC day, no missing values.
                volumes[VolumeKey(str(types[0]), low.date())][0] += rows
                from_stats += 1
                first = min(first or low, low)
                last = max(last or high, high)
                continue
            table = handle.read(group, self._all_columns())
            for row in table.to_pylist():
                parsed = self._event(row)
                if isinstance(parsed, BadLineReason):
                    tally.add(parsed, json.dumps(row, default=str).encode())
                    continue
                slot = volumes[VolumeKey(parsed.event_type, parsed.timestamp.date())]
                slot[0] += 1
                quantity = quantity_value(
                    parsed.properties, self.spec.quantity_properties.get(parsed.event_type)
                )
                if quantity is not None:
                    slot[1] += quantity
                first = min(first or parsed.timestamp, parsed.timestamp)
                last = max(last or parsed.timestamp, parsed.timestamp)
        return rows_total, first, last, from_stats

    def iter_events(self, start: datetime, end: datetime) -> Iterator[SourceEvent]:
        """Every usable row with start ≤ timestamp < end (row groups outside skipped)."""
        opened = [_OpenFile(path) for path in self.files()]
        try:
            ts_column = self._columns["timestamp"]
            for handle in opened:
                for group in range(handle.metadata.num_row_groups):
                    bounds = handle.stats(group, ts_column)
                    low = self._time(bounds[0]) if bounds else None
                    high = self._time(bounds[1]) if bounds else None
                    if low is not None and high is not None and (high < start or low >= end):
                        continue
                    for row in handle.read(group, self._all_columns()).to_pylist():
                        parsed = self._event(row)
                        if isinstance(parsed, SourceEvent) and start <= parsed.timestamp < end:
                            yield parsed
        finally:
            for handle in opened:
                handle.close()


def _contains(window: Window, value: datetime | None) -> bool:
    return value is not None and window.contains(value)


def _choose(
    groups: list[_Group], count: int, rng: random.Random
) -> dict[tuple[int, int], list[int]]:
    """Pick `count` distinct window rows uniformly: row group and offset for each."""
    total = sum(g.rows for g in groups)
    if count <= 0 or total == 0:
        return {}
    cumulative = [0]
    for group in groups:
        cumulative.append(cumulative[-1] + group.rows)
    picks: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index in sorted(rng.sample(range(total), count)):
        position = bisect.bisect_right(cumulative, index) - 1
        group = groups[position]
        within = index - cumulative[position]
        offset = group.offsets[within] if group.offsets is not None else within
        picks[(group.file_index, group.group)].append(offset)
    return picks


def _null_count(handle: _OpenFile, group: int, columns: Sequence[str]) -> int | None:
    total = 0
    for column in columns:
        index = handle.column_index(column)
        if index is None:
            return None
        statistics = handle.metadata.row_group(group).column(index).statistics
        if statistics is None or not statistics.has_null_count:
            return None
        total += statistics.null_count
    return total


def _properties(value: Any) -> dict[str, Any] | None:
    """A properties cell as a dict: JSON text, a struct (nulls dropped) or a map."""
    if value is None:
        return {}
    if isinstance(value, str | bytes):
        try:
            decoded = json.loads(value)
        except ValueError:
            return None
        return decoded if isinstance(decoded, dict) else None
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if v is not None}
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        return {str(k): v for k, v in value}
    return None


def _file_key(path: LogPath) -> str:
    """Identify one version of a file: path plus size and mtime (or the ETag)."""
    if isinstance(path, ObjectPath):
        return f"parquet:{path.identity()}"
    stat = path.stat()
    return f"parquet:{path}:{stat.st_size}:{stat.st_mtime_ns}"
