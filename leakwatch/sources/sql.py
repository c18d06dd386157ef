"""The SQL source: a table (or a query) behind any SQLAlchemy URL.

Does I/O. Sampling is pushed down: the window predicate and the random choice run in
the database, so only the sample (and a few aggregates) cross the wire — never the
table. On Postgres a uniform draw reads pages picked by `TABLESAMPLE SYSTEM (p)
REPEATABLE (seed)` and keeps each of their rows at a low rate q, so rows come from
many pages (see `_sample_pages`: whole pages would cluster the sample in time); when
the window is small, the relation is a query, or the dialect has no TABLESAMPLE
(SQLite), it falls back to `ORDER BY random() LIMIT n` with an exact count. MySQL and
MariaDB have no TABLESAMPLE: a draw reads random primary-key ranges (`_sample_key_ranges`).
Warehouses use their own clause (`sql_dialects`); a dialect we know nothing of streams
the window into a reservoir. Stratified draws count strata with GROUP BY, allocate here,
and draw each stratum's share with `row_number() OVER (PARTITION BY … ORDER BY random())`.

Timestamps may be a timestamp column (naive ones are UTC unless the source names a
`timezone`) or epoch numbers (`timestamp_unit` fixed in the config): the window is
bound in the column's own shape.
"""

import heapq
import json
import math
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from leakwatch.core.events import DrawnEvent, SourceEvent
from leakwatch.core.sampling import (
    Window,
    allocate,
    allocate_within,
    parse_stratify_by,
    sampling_window,
    settled_since,
    stratum_of,
)
from leakwatch.core.timestamps import (
    TimestampFormat,
    TimestampUnit,
    read_timestamp,
)
from leakwatch.errors import LeakwatchError
from leakwatch.sources.base import (
    BadLineReason,
    FileCheckpoint,
    ProgressCallback,
    SampleResult,
    ScanResult,
    StopCheck,
    VolumeDelta,
    VolumeKey,
)
from leakwatch.sources.inventory import SourceInventory
from leakwatch.sources.specs import SqlSourceSpec
from leakwatch.sources.sql_dialects import (
    DialectSampling,
    SamplingKind,
    key_range_predicate,
    sampling_for,
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
# Enough pages that a draw rarely falls short (a shortfall retries at 4× p).
OVERSAMPLE = 1.5
# Rows kept per sampled page, on average: the clustering a page sample keeps.
ROWS_PER_PAGE_KEPT = 0.25
# Beyond this share of the pages, TABLESAMPLE saves nothing over a filtered scan.
MAX_TABLESAMPLE_PERCENT = 20.0
ESTIMATE_TTL = timedelta(hours=1)
SQL_CHECKPOINT_KEY = "sql:watermark"
# Key ranges: at most this many per query (an OR list the optimizer still plans fast).
MAX_KEY_RANGES = 20_000
_UNIT_PER_SECOND = {
    TimestampUnit.SECONDS: 1,
    TimestampUnit.MILLISECONDS: 1_000,
    TimestampUnit.MICROSECONDS: 1_000_000,
    TimestampUnit.NANOSECONDS: 1_000_000_000,
}


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


class SqlSourceError(LeakwatchError, OSError):
    """The source's database could not be queried (unreachable, no such table, rights).

    An OSError too: a source that cannot be read is reported by the cycle, like a file.
    """


class SqlSource:
    """Sample and count a SQL table without pulling it into memory."""

    def __init__(self, spec: SqlSourceSpec, *, engine: Engine | None = None) -> None:
        self.spec = spec
        # No pool: a source reads twice a cycle (tail, draw), minutes apart; holding a
        # connection (or a warehouse session) open between cycles buys nothing.
        self._engine = (
            engine if engine is not None else sa.create_engine(spec.url, poolclass=NullPool)
        )
        columns = {name: _check_identifier(col) for name, col in spec.fields.items()}
        self._columns = columns
        self._property_columns = tuple(_check_identifier(c) for c in spec.property_columns)
        if spec.table is not None:
            _check_identifier(spec.table)
        self.sampling: DialectSampling = sampling_for(self._engine.dialect.name)
        # A zone-less timestamp column holds UTC unless the source names its zone.
        zone = spec.timestamp_format.zone or UTC
        self._time_format = TimestampFormat(unit=spec.timestamp_format.unit, zone=zone)
        # With a fixed unit the column holds epoch numbers, and the window is bound so.
        self._epoch_per_second = _UNIT_PER_SECOND.get(spec.timestamp_format.unit)
        # A single integer primary key, found once (None: none, so no key ranges).
        self._key_column: str | bool | None = False
        # The planner's row estimate for the window, and when it was taken: it moves
        # slowly, and asking costs a round trip per draw.
        self._estimate: tuple[datetime, float, float] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def engine(self) -> Engine:
        return self._engine

    def problems(self) -> list[str]:
        try:
            with self._engine.connect():
                pass
        except SQLAlchemyError as exc:
            return [f"cannot connect to {self._problem_of(exc)}"]
        return []

    def describe(self) -> SourceInventory:
        return SourceInventory(
            name=self.name,
            kind="sql",
            location=self.spec.table or "(query)",
            storage=self._engine.dialect.name,
            sampling=self.sampling.description,
        )

    def close(self) -> None:
        self._engine.dispose()

    # -- SQL pieces -----------------------------------------------------------------------

    def _quote(self, name: str) -> str:
        preparer = self._engine.dialect.identifier_preparer
        return ".".join(preparer.quote(part) for part in name.split("."))

    def _relation(self, *, tablesample: str = "") -> str:
        if self.spec.table is not None:
            return f"{self._quote(self.spec.table)} {tablesample}".strip()
        return f"({self.spec.query}) AS leakwatch_src"

    def _col(self, logical: str) -> str:
        return self._quote(self._columns[logical])

    def _select_list(self) -> str:
        names = ["transaction_id", "customer_id", "event_type", "timestamp"]
        parts = [f"{self._col(n)} AS lw_{n}" for n in names]
        if self._property_columns:
            parts += [f"{self._quote(c)} AS lwp_{c}" for c in self._property_columns]
        elif "properties" in self._columns:
            # As text: the driver would parse every candidate row's JSON, and most
            # candidates are thinned away; `_to_event` parses the ones kept.
            cast = "CAST({} AS text)" if self._is_postgres else "{}"
            parts.append(f"{cast.format(self._col('properties'))} AS lw_properties")
        return ", ".join(parts)

    def _window_predicate(self, *, driver_style: bool = False) -> str:
        """The window as SQL: `:name` binds for SQLAlchemy, `%(name)s` for the driver."""
        ts = self._col("timestamp")
        start, end = ("%(w_start)s", "%(w_end)s") if driver_style else (":w_start", ":w_end")
        return f"{ts} > {start} AND {ts} < {end} AND {self._col('transaction_id')} IS NOT NULL"

    def _window_params(self, window: Window) -> dict[str, Any]:
        return {"w_start": self._bind_time(window.start), "w_end": self._bind_time(window.end)}

    def _bind_time(self, value: datetime) -> datetime | str | int:
        if self._epoch_per_second is not None:
            delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
            return delta // timedelta(microseconds=1) * self._epoch_per_second // 1_000_000
        if self._is_postgres:
            return value
        naive = value.astimezone(UTC).replace(tzinfo=None)
        if self._engine.dialect.name == "sqlite":
            # SQLite compares text: bind SQLAlchemy's own storage form, microseconds
            # included, or an edge row would compare unequal to its own time.
            return naive.strftime("%Y-%m-%d %H:%M:%S.%f")
        return naive

    @property
    def _is_postgres(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    # -- rows to events -----------------------------------------------------------------

    def _to_event(self, row: Sequence[Any]) -> SourceEvent | BadLineReason:
        """Convert one row of `_select_list` (by position: the hot path of a draw)."""
        transaction_id, customer_id, event_type, raw_timestamp = row[:4]
        if transaction_id is None or transaction_id == "":
            return BadLineReason.NO_TRANSACTION_ID
        timestamp = read_timestamp(raw_timestamp, self._time_format)
        if timestamp is None:
            return BadLineReason.BAD_TIMESTAMP
        if customer_id is None or event_type is None:
            return BadLineReason.MISSING_FIELD
        properties: Any
        if self._property_columns:
            properties = dict(zip(self._property_columns, row[4:], strict=False))
        else:
            properties = (row[4] if len(row) > 4 else None) or {}
            if isinstance(properties, str | bytes):
                try:
                    properties = json.loads(properties)
                except ValueError:
                    return BadLineReason.NOT_JSON
            if not isinstance(properties, dict):
                return BadLineReason.NOT_JSON
        return SourceEvent(
            transaction_id=str(transaction_id),
            customer_id=str(customer_id),
            event_type=str(event_type),
            timestamp=timestamp,
            properties=properties,
        )

    # -- sampling -----------------------------------------------------------------------

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
        """Draw up to `n` events from the window, with the work done by the database."""
        del progress  # one round trip or two: nothing to report
        window = settled_since(
            sampling_window(now, self.spec.settle_delay, self.spec.max_age),
            since,
            self.spec.settle_delay,
        )
        fields = parse_stratify_by(stratify_by)
        if within is not None and not fields:
            raise ValueError("drawing within a stratum needs stratify_by")
        with self._reading(), self._engine.connect() as conn:
            self._utc_session(conn)
            if fields:
                return self._sample_stratified(conn, n, window, fields, floor, rng, within)
            return self._sample_uniform(conn, n, window, rng)

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Turn a database failure into SqlSourceError naming the source and its URL."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise SqlSourceError(f"cannot read {self._problem_of(exc)}") from None

    def _problem_of(self, exc: SQLAlchemyError) -> str:
        where = self._engine.url.render_as_string(hide_password=True)
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return f"{where}: {first[0] if first else type(exc).__name__}"

    def _utc_session(self, conn: Connection) -> None:
        """Make the session speak UTC, so TIMESTAMP columns and DATE() mean UTC days."""
        if self._is_postgres:
            conn.execute(sa.text("SET TIME ZONE 'UTC'"))
        elif self._engine.dialect.name in ("mysql", "mariadb"):
            conn.execute(sa.text("SET time_zone = '+00:00'"))

    @property
    def _random(self) -> str:
        return self.sampling.random_function or "random()"

    def _result(
        self,
        window: Window,
        sampled: list[DrawnEvent],
        population: float,
        exact: bool,
        strata: Mapping[str, float],
        bad: Mapping[BadLineReason, int],
        warnings: Sequence[str] = (),
    ) -> SampleResult:
        return SampleResult(
            source=self.name,
            window=window,
            events=tuple(sampled),
            population=population,
            population_exact=exact,
            strata_populations=dict(strata),
            bad_lines=dict(bad),
            bad_examples={},
            warnings=tuple(warnings),
        )

    def _estimate_window_rows(self, conn: Connection, window: Window) -> float:
        sql = (
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {self._relation()} "
            f"WHERE {self._window_predicate()}"
        )
        plan = conn.execute(sa.text(sql), self._window_params(window)).scalar_one()
        document = plan if isinstance(plan, list) else json.loads(plan)
        return float(document[0]["Plan"]["Plan Rows"])

    def _sample_uniform(
        self, conn: Connection, n: int, window: Window, rng: random.Random
    ) -> SampleResult:
        params = self._window_params(window)
        bad: dict[BadLineReason, int] = {}
        kind = self.sampling.kind
        if self.spec.table is not None and n > 0:
            drawn: tuple[list[DrawnEvent], float] | None = None
            if kind is SamplingKind.PAGES:
                drawn = self._sample_pages(conn, n, window, rng, bad)
            elif kind is SamplingKind.KEY_RANGES:
                drawn = self._sample_key_ranges(conn, n, window, rng, bad)
            elif kind is SamplingKind.CLAUSE:
                drawn = self._sample_with_clause(conn, n, window, rng, bad)
            if drawn is not None:
                sampled, population = drawn
                return self._result(window, sampled, population, False, {}, bad)
        if kind is SamplingKind.RESERVOIR:
            return self._sample_reservoir(conn, n, window, rng, bad)
        self._seed(conn, rng)
        count_sql = f"SELECT count(*) FROM {self._relation()} WHERE {self._window_predicate()}"
        population = float(conn.execute(sa.text(count_sql), params).scalar_one())
        sql = (
            f"SELECT {self._select_list()} FROM {self._relation()} "
            f"WHERE {self._window_predicate()} ORDER BY {self._random} LIMIT :n"
        )
        events = self._events(conn.execute(sa.text(sql), {**params, "n": n}), bad)
        weight = population / len(events) if events else 0.0
        sampled = [DrawnEvent(self.name, e, weight) for e in events]
        return self._result(window, sampled, population, True, {}, bad)

    def _sample_pages(
        self,
        conn: Connection,
        n: int,
        window: Window,
        rng: random.Random,
        bad: dict[BadLineReason, int],
    ) -> tuple[list[DrawnEvent], float] | None:
        """Draw about n rows spread over many pages, or None to fall back to a scan.

        `TABLESAMPLE SYSTEM` picks whole pages, and the rows of one page are neighbours
        in time: in an outage they leak together, so a sample of a few dozen full pages
        has intervals several times too narrow. So pages are picked at p and each of
        their rows kept at q = ROWS_PER_PAGE_KEPT / (rows per page): every row's
        inclusion probability is exactly p·q (equal weights), and a kept row shares its
        page with another kept row rarely (on average ROWS_PER_PAGE_KEPT of them), which
        bounds the clustering's design effect by 1 + ROWS_PER_PAGE_KEPT. The price is
        reading ~n / ROWS_PER_PAGE_KEPT pages, the least a near-independent sample needs.
        """
        params = self._window_params(window)
        if self._estimate is None or window.end - self._estimate[0] > ESTIMATE_TTL:
            self._estimate = (window.end, *self._estimate_window_shape(conn, window))
        _, window_rows, per_page = self._estimate
        keep = min(1.0, ROWS_PER_PAGE_KEPT / per_page)
        percent = 100.0 * OVERSAMPLE * n / max(window_rows * keep, 1.0)
        tablesample = "TABLESAMPLE SYSTEM (%(pct)s) REPEATABLE (%(seed)s)"
        sql = (
            f"SELECT {self._select_list()} FROM {self._relation(tablesample=tablesample)} "
            f"WHERE {self._window_predicate(driver_style=True)} AND random() < %(keep)s"
        )
        for _ in range(4):
            if percent >= MAX_TABLESAMPLE_PERCENT:
                return None
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute("SELECT setseed(%(s)s)", {"s": rng.random() * 2 - 1})
                cursor.execute(
                    sql,
                    {**params, "pct": percent, "seed": rng.randrange(1 << 31), "keep": keep},
                )
                candidates = cursor.fetchall()
            finally:
                cursor.close()
            if len(candidates) >= n:
                # Each row was kept with probability p·q: the count over it estimates
                # the window, and sizes the next draw better than the planner did.
                population = len(candidates) / (percent / 100.0 * keep)
                # Smoothed: one draw's count is noisy, the planner's guess is stale.
                smoothed = 0.7 * window_rows + 0.3 * population
                self._estimate = (window.end, smoothed, per_page)
                return self._pick(candidates, n, population, rng, bad)
            percent *= 4
            self._estimate = None
        return None

    def _primary_key(self, conn: Connection) -> str | None:
        """The table's primary key, when it is one integer column (else None)."""
        if self._key_column is False:
            assert self.spec.table is not None
            schema, _, table = self.spec.table.rpartition(".")
            inspector = sa.inspect(conn)
            pk = inspector.get_pk_constraint(table, schema=schema or None)
            names = pk.get("constrained_columns") or []
            found: str | None = None
            if len(names) == 1:
                columns = inspector.get_columns(table, schema=schema or None)
                column = next((c for c in columns if c["name"] == names[0]), None)
                if column is not None and isinstance(column["type"], sa.Integer):
                    found = str(names[0])
            self._key_column = found
        return self._key_column if isinstance(self._key_column, str) else None

    def _table_rows_estimate(self, conn: Connection) -> float:
        """The catalog's row count for the table (cheap, approximate; 0 when unknown)."""
        assert self.spec.table is not None
        schema, _, table = self.spec.table.rpartition(".")
        sql = "SELECT table_rows FROM information_schema.tables WHERE table_name = :t AND " + (
            "table_schema = :s" if schema else "table_schema = DATABASE()"
        )
        value = conn.execute(sa.text(sql), {"t": table, "s": schema}).scalar()
        return float(value or 0)

    def _sample_key_ranges(
        self,
        conn: Connection,
        n: int,
        window: Window,
        rng: random.Random,
        bad: dict[BadLineReason, int],
    ) -> tuple[list[DrawnEvent], float] | None:
        """Draw about n rows by reading random primary-key ranges; None to fall back.

        MySQL and MariaDB have no TABLESAMPLE, but every InnoDB table is clustered on
        its primary key. Range starts x are drawn uniformly from [min - w + 1, max] and
        each range [x, x + w - 1] read through the key; a row with key v is in one
        range with probability w / S (S the number of possible starts) whatever the
        gaps around it, so m ranges include every row with the same probability
        1 - (1 - w/S)^m. The width w ≈ 1 / key density keeps about one row per range:
        neighbours in key are neighbours in time, and one row per range keeps the
        sample from clustering. The window filter runs on the rows read.
        """
        key = self._primary_key(conn)
        if key is None:
            return None
        bounds = conn.execute(
            sa.text(
                f"SELECT MIN({self._quote(key)}), MAX({self._quote(key)}) FROM {self._relation()}"
            )
        ).one()
        if bounds[0] is None:
            return None
        low, high = int(bounds[0]), int(bounds[1])
        key_span = high - low + 1
        rows = self._table_rows_estimate(conn) or float(key_span)
        density = min(1.0, max(rows / key_span, 1e-9))
        width = max(1, round(1.0 / density))
        starts = key_span + width - 1
        # Assume the window holds the table at first; a shortfall retries 4× wider.
        ranges_wanted = OVERSAMPLE * n / (density * width)
        params = self._window_params(window)
        for _ in range(4):
            count = math.ceil(ranges_wanted)
            if count > MAX_KEY_RANGES or count * width > MAX_TABLESAMPLE_PERCENT / 100 * starts:
                return None
            picks = sorted(rng.randrange(starts) + low - width + 1 for _ in range(count))
            merged: list[tuple[int, int]] = []
            for start in picks:
                end = start + width - 1
                if merged and start <= merged[-1][1] + 1:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], end))
                else:
                    merged.append((start, end))
            predicate = key_range_predicate(self._quote(key), merged)
            sql = (
                f"SELECT {self._select_list()} FROM {self._relation()} "
                f"WHERE {predicate} AND {self._window_predicate()}"
            )
            candidates = list(conn.execute(sa.text(sql), params))
            if len(candidates) >= n:
                inclusion = 1.0 - (1.0 - width / starts) ** count
                population = len(candidates) / inclusion
                return self._pick(candidates, n, population, rng, bad)
            ranges_wanted *= 4
        return None

    def _pick(
        self,
        candidates: list[Any],
        n: int,
        population: float,
        rng: random.Random,
        bad: dict[BadLineReason, int],
    ) -> tuple[list[DrawnEvent], float]:
        """Keep n of rows drawn with equal probabilities, uniformly: still equal."""
        picks = min(len(candidates), n + n // 20 + 8)
        order = rng.sample(range(len(candidates)), picks)
        events = self._events((candidates[i] for i in order), bad, limit=n)
        weight = population / len(events) if events else 0.0
        return [DrawnEvent(self.name, e, weight) for e in events], population

    def _sample_with_clause(
        self,
        conn: Connection,
        n: int,
        window: Window,
        rng: random.Random,
        bad: dict[BadLineReason, int],
    ) -> tuple[list[DrawnEvent], float] | None:
        """Draw with the warehouse's own SAMPLE/TABLESAMPLE at p%, sized by a count."""
        params = self._window_params(window)
        count_sql = f"SELECT count(*) FROM {self._relation()} WHERE {self._window_predicate()}"
        window_rows = float(conn.execute(sa.text(count_sql), params).scalar_one())
        percent = 100.0 * OVERSAMPLE * n / max(window_rows, 1.0)
        for _ in range(4):
            if percent >= MAX_TABLESAMPLE_PERCENT:
                return None
            clause = self.sampling.sample_clause(percent, rng.randrange(1 << 31))
            sql = (
                f"SELECT {self._select_list()} FROM {self._relation(tablesample=clause)} "
                f"WHERE {self._window_predicate()}"
            )
            candidates = list(conn.execute(sa.text(sql), params))
            if len(candidates) >= n:
                return self._pick(candidates, n, window_rows, rng, bad)
            percent *= 4
        return None

    def _sample_reservoir(
        self,
        conn: Connection,
        n: int,
        window: Window,
        rng: random.Random,
        bad: dict[BadLineReason, int],
    ) -> SampleResult:
        """Stream the window and keep n rows by random keys: exact, costs a window read."""
        sql = (
            f"SELECT {self._select_list()} FROM {self._relation()} WHERE {self._window_predicate()}"
        )
        result = conn.execution_options(stream_results=True).execute(
            sa.text(sql), self._window_params(window)
        )
        population = 0
        kept: list[tuple[float, int, Any]] = []
        for row in result:
            population += 1
            item = (rng.random(), population, tuple(row))
            if len(kept) < n:
                heapq.heappush(kept, item)
            elif item[0] > kept[0][0]:
                heapq.heapreplace(kept, item)
        events = self._events((row for _, _, row in kept), bad)
        weight = population / len(events) if events else 0.0
        sampled = [DrawnEvent(self.name, e, weight) for e in events]
        return self._result(window, sampled, float(population), True, {}, bad)

    def _estimate_window_shape(self, conn: Connection, window: Window) -> tuple[float, float]:
        """The window's rows (planner's estimate) and the table's rows per page."""
        rows = self._estimate_window_rows(conn, window)
        stats = conn.execute(
            sa.text("SELECT reltuples, relpages FROM pg_class WHERE oid = to_regclass(:relation)"),
            {"relation": self._relation()},
        ).one_or_none()
        per_page = 1.0
        if stats is not None and stats[0] and stats[1] and stats[0] > 0 and stats[1] > 0:
            per_page = max(1.0, float(stats[0]) / float(stats[1]))
        return rows, per_page

    def _seed(self, conn: Connection, rng: random.Random) -> None:
        """Seed the database's random() from ours, so a seed reproduces the draw."""
        if self._is_postgres:
            conn.execute(sa.text("SELECT setseed(:s)"), {"s": rng.random() * 2 - 1})

    def iter_events(self, start: datetime, end: datetime) -> Iterator[SourceEvent]:
        """Every usable row with start ≤ timestamp < end, streamed from the database."""
        ts = self._col("timestamp")
        query = sa.text(
            f"SELECT {self._select_list()} FROM {self._relation()} "
            f"WHERE {ts} >= :w_start AND {ts} < :w_end "
            f"AND {self._col('transaction_id')} IS NOT NULL"
        )
        params = {"w_start": self._bind_time(start), "w_end": self._bind_time(end)}
        with self._reading(), self._engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=5000).execute(
                query, params
            )
            for row in rows:
                parsed = self._to_event(row)
                if not isinstance(parsed, BadLineReason):
                    yield parsed

    def _events(
        self, rows: Any, bad: dict[BadLineReason, int], limit: int | None = None
    ) -> list[SourceEvent]:
        events: list[SourceEvent] = []
        for row in rows:
            if limit is not None and len(events) >= limit:
                break
            parsed = self._to_event(row)
            if isinstance(parsed, BadLineReason):
                bad[parsed] = bad.get(parsed, 0) + 1
            else:
                events.append(parsed)
        return events

    def _sample_stratified(
        self,
        conn: Connection,
        n: int,
        window: Window,
        fields: tuple[str, ...],
        floor: int,
        rng: random.Random,
        within: str | None = None,
    ) -> SampleResult:
        params = self._window_params(window)
        self._seed(conn, rng)
        group_cols = ", ".join(self._col(f) for f in fields)
        count_sql = (
            f"SELECT {group_cols}, count(*) AS lw_n FROM {self._relation()} "
            f"WHERE {self._window_predicate()} GROUP BY {group_cols}"
        )
        populations: dict[str, float] = {}
        keys: dict[str, tuple[Any, ...]] = {}
        for row in conn.execute(sa.text(count_sql), params):
            values = tuple(row[: len(fields)])
            stratum = "|".join(str(v) for v in values)
            populations[stratum] = float(row[-1])
            keys[stratum] = values
        allocation = (
            allocate(populations, n, floor)
            if within is None
            else allocate_within(populations, within, n)
        )
        wanted = {s: k for s, k in allocation.items() if k > 0}
        bad: dict[BadLineReason, int] = {}
        sampled: list[DrawnEvent] = []
        if wanted:
            value_rows = []
            alloc_params: dict[str, Any] = {}
            for index, stratum in enumerate(sorted(wanted)):
                slots = [f":a{index}_{j}" for j in range(len(fields))]
                value_rows.append(f"({', '.join(slots)}, :k{index})")
                for j, value in enumerate(keys[stratum]):
                    alloc_params[f"a{index}_{j}"] = value
                alloc_params[f"k{index}"] = wanted[stratum]
            alloc_cols = ", ".join(f"s{j}" for j in range(len(fields)))
            join_on = " AND ".join(f"ranked.lw_{f} = alloc.s{j}" for j, f in enumerate(fields))
            sql = (
                f"WITH alloc ({alloc_cols}, k) AS (VALUES {', '.join(value_rows)}), "
                f"ranked AS (SELECT {self._select_list()}, row_number() OVER "
                f"(PARTITION BY {group_cols} ORDER BY {self._random}) AS lw_rn "
                f"FROM {self._relation()} WHERE {self._window_predicate()}) "
                f"SELECT ranked.* FROM ranked JOIN alloc ON {join_on} "
                f"WHERE ranked.lw_rn <= alloc.k"
            )
            events = self._events(conn.execute(sa.text(sql), {**params, **alloc_params}), bad)
            taken: dict[str, int] = {}
            for event in events:
                stratum = stratum_of(event, fields) or ""
                taken[stratum] = taken.get(stratum, 0) + 1
            for event in events:
                stratum = stratum_of(event, fields) or ""
                weight = populations[stratum] / taken[stratum]
                sampled.append(DrawnEvent(self.name, event, weight, stratum))
        rng.shuffle(sampled)
        total = sum(populations.values())
        return self._result(window, sampled, total, True, populations, bad)

    # -- tailing ------------------------------------------------------------------------

    def _day_expression(self, ts: str) -> str:
        """The UTC day of a row, as a date (or days since 1970 for epoch columns)."""
        if self._epoch_per_second is not None:
            per_day = 86_400 * self._epoch_per_second
            if self._engine.dialect.name == "sqlite":
                return f"CAST({ts} / {per_day} AS INTEGER)"
            return f"FLOOR({ts} / {per_day})"
        return f"CAST({ts} AS DATE)" if self._is_postgres else f"date({ts})"

    def scan_new(
        self,
        checkpoints: tuple[FileCheckpoint, ...],
        *,
        now: datetime,
        progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> ScanResult:
        """Count rows that settled since the watermark, per event type and UTC day.

        Rows inserted later with timestamps behind the watermark are not counted: a
        table is not an append-only log, and re-counting history would cost what the
        checkpoint exists to save.
        """
        del progress, should_stop  # one aggregate query: nothing to pace
        previous = next((c for c in checkpoints if c.file_key == SQL_CHECKPOINT_KEY), None)
        upper = now - self.spec.settle_delay
        lower = (
            previous.last_event_at
            if previous and previous.last_event_at
            else (now - self.spec.max_age)
        )
        ts = self._col("timestamp")
        event_type = self._col("event_type")
        # Per-unit prices name a property per event type; only plain property columns
        # can be summed in the database (a JSON column's values are not portable SQL).
        quantity_params: dict[str, str] = {}
        cases = []
        for index, (priced_type, column) in enumerate(
            sorted(self.spec.quantity_properties.items())
        ):
            if column in self._property_columns:
                quantity_params[f"qt{index}"] = priced_type
                cases.append(f"WHEN {event_type} = :qt{index} THEN {self._quote(column)}")
        quantity = f"sum(CASE {' '.join(cases)} ELSE 0 END)" if cases else "0"
        day = self._day_expression(ts)
        sql = (
            f"SELECT {event_type} AS lw_event_type, {day} AS lw_day, count(*) AS lw_n, "
            f"{quantity} AS lw_q FROM {self._relation()} "
            f"WHERE {ts} > :lo AND {ts} <= :hi AND {self._col('transaction_id')} IS NOT NULL "
            f"GROUP BY {event_type}, {day}"
        )
        missing_sql = (
            f"SELECT count(*) FROM {self._relation()} "
            f"WHERE {ts} > :lo AND {ts} <= :hi AND {self._col('transaction_id')} IS NULL"
        )
        params: dict[str, object] = {"lo": self._bind_time(lower), "hi": self._bind_time(upper)}
        volume_params = {**params, **quantity_params}
        volumes: dict[VolumeKey, VolumeDelta] = {}
        lines = 0
        with self._reading(), self._engine.begin() as conn:
            self._utc_session(conn)
            for row in conn.execute(sa.text(sql), volume_params).mappings():
                day_value = row["lw_day"]
                if isinstance(day_value, str):
                    day_value = date.fromisoformat(day_value)
                elif not isinstance(day_value, date):
                    day_value = date(1970, 1, 1) + timedelta(days=int(day_value))
                key = VolumeKey(str(row["lw_event_type"]), day_value)
                volumes[key] = VolumeDelta(int(row["lw_n"]), float(row["lw_q"] or 0.0))
                lines += int(row["lw_n"])
            missing = int(conn.execute(sa.text(missing_sql), params).scalar_one())
        bad = {BadLineReason.NO_TRANSACTION_ID: missing} if missing else {}
        checkpoint = FileCheckpoint(
            file_key=SQL_CHECKPOINT_KEY,
            path=self.spec.table or "query",
            lines=(previous.lines if previous else 0) + lines,
            first_event_at=previous.first_event_at if previous else lower,
            last_event_at=upper,
        )
        return ScanResult(
            source=self.name,
            volumes=volumes,
            strata_seen=frozenset(k.event_type for k in volumes),
            bad_lines=bad,
            bad_examples={},
            checkpoints=(checkpoint,),
            bytes_read=0,
            lines_read=lines + missing,
        )
