"""The SQL source: a table (or a query) behind any SQLAlchemy URL.

Does I/O. Sampling is pushed down: the window predicate and the random choice run in
the database, so only the sample (and a few aggregates) cross the wire — never the
table. On Postgres a uniform draw reads pages picked by `TABLESAMPLE SYSTEM (p)
REPEATABLE (seed)` and keeps each of their rows at a low rate q, so rows come from
many pages (see `_sample_pages`: whole pages would cluster the sample in time); when
the window is small, the relation is a query, or the dialect has no TABLESAMPLE
(SQLite), it falls back to `ORDER BY random() LIMIT n` with an exact count. Stratified
draws count strata with GROUP BY, allocate here, and draw each stratum's share with
`row_number() OVER (PARTITION BY … ORDER BY random())`.
"""

import json
import random
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from leakwatch.core.events import SampledEvent, SourceEvent, parse_timestamp
from leakwatch.core.sampling import (
    Window,
    allocate,
    parse_stratify_by,
    sampling_window,
    stratum_of,
)
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
from leakwatch.sources.specs import SqlSourceSpec

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
# Enough pages that a draw rarely falls short (a shortfall retries at 4× p).
OVERSAMPLE = 1.5
# Rows kept per sampled page, on average: the clustering a page sample keeps.
ROWS_PER_PAGE_KEPT = 0.25
# Beyond this share of the pages, TABLESAMPLE saves nothing over a filtered scan.
MAX_TABLESAMPLE_PERCENT = 20.0
ESTIMATE_TTL = timedelta(hours=1)
SQL_CHECKPOINT_KEY = "sql:watermark"


def _check_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


class SqlSource:
    """Sample and count a SQL table without pulling it into memory."""

    def __init__(self, spec: SqlSourceSpec, *, engine: Engine | None = None) -> None:
        self.spec = spec
        self._engine = engine if engine is not None else sa.create_engine(spec.url)
        columns = {name: _check_identifier(col) for name, col in spec.fields.items()}
        self._columns = columns
        self._property_columns = tuple(_check_identifier(c) for c in spec.property_columns)
        if spec.table is not None:
            _check_identifier(spec.table)
        # The planner's row estimate for the window, and when it was taken: it moves
        # slowly, and asking costs a round trip per draw.
        self._estimate: tuple[datetime, float, float] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def engine(self) -> Engine:
        return self._engine

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

    def _bind_time(self, value: datetime) -> datetime | str:
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
        timestamp = _as_utc(raw_timestamp)
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
    ) -> SampleResult:
        """Draw up to `n` events from the window, with the work done by the database."""
        del progress  # one round trip or two: nothing to report
        window = sampling_window(now, self.spec.settle_delay, self.spec.max_age)
        fields = parse_stratify_by(stratify_by)
        with self._engine.connect() as conn:
            if fields:
                return self._sample_stratified(conn, n, window, fields, floor, rng)
            return self._sample_uniform(conn, n, window, rng)

    def _result(
        self,
        window: Window,
        sampled: list[SampledEvent],
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
        if self._is_postgres and self.spec.table is not None and n > 0:
            drawn = self._sample_pages(conn, n, window, rng, bad)
            if drawn is not None:
                sampled, population = drawn
                return self._result(window, sampled, population, False, {}, bad)
        self._seed(conn, rng)
        count_sql = f"SELECT count(*) FROM {self._relation()} WHERE {self._window_predicate()}"
        population = float(conn.execute(sa.text(count_sql), params).scalar_one())
        sql = (
            f"SELECT {self._select_list()} FROM {self._relation()} "
            f"WHERE {self._window_predicate()} ORDER BY random() LIMIT :n"
        )
        events = self._events(conn.execute(sa.text(sql), {**params, "n": n}), bad)
        weight = population / len(events) if events else 0.0
        sampled = [SampledEvent(self.name, e, weight) for e in events]
        return self._result(window, sampled, population, True, {}, bad)

    def _sample_pages(
        self,
        conn: Connection,
        n: int,
        window: Window,
        rng: random.Random,
        bad: dict[BadLineReason, int],
    ) -> tuple[list[SampledEvent], float] | None:
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
                picks = min(len(candidates), n + n // 20 + 8)
                order = rng.sample(range(len(candidates)), picks)
                events = self._events((candidates[i] for i in order), bad, limit=n)
                weight = population / len(events) if events else 0.0
                return [SampledEvent(self.name, e, weight) for e in events], population
            percent *= 4
            self._estimate = None
        return None

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
        allocation = allocate(populations, n, floor)
        wanted = {s: k for s, k in allocation.items() if k > 0}
        bad: dict[BadLineReason, int] = {}
        sampled: list[SampledEvent] = []
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
                f"(PARTITION BY {group_cols} ORDER BY random()) AS lw_rn "
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
                sampled.append(SampledEvent(self.name, event, weight, stratum))
        rng.shuffle(sampled)
        total = sum(populations.values())
        return self._result(window, sampled, total, True, populations, bad)

    # -- tailing ------------------------------------------------------------------------

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
        day = f"CAST({ts} AS DATE)" if self._is_postgres else f"date({ts})"
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
        with self._engine.begin() as conn:
            if self._is_postgres:
                conn.execute(sa.text("SET LOCAL TIME ZONE 'UTC'"))
            for row in conn.execute(sa.text(sql), volume_params).mappings():
                day_value = row["lw_day"]
                if isinstance(day_value, str):
                    day_value = date.fromisoformat(day_value)
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


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        # SQLite hands back naive datetimes: SQLAlchemy stored them as UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        try:
            return parse_timestamp(value)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return None
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
    return None


# Kept for callers that want to size a TABLESAMPLE themselves (the benchmark does).
def tablesample_percent(sample_size: int, window_rows: float) -> float:
    """Percent of pages to sample for about OVERSAMPLE × `sample_size` window rows."""
    return min(100.0, 100.0 * OVERSAMPLE * sample_size / max(window_rows, 1.0))
