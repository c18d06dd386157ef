"""The simulated Metronome's memory: customers, billable metrics, ingested events, faults.

Pure in-memory state behind a lock, no I/O except `load_seed_file`. Time comes from
the injected `Clock`, so tests age events past the 34-day window on a `FakeClock`.
Matching (customer by id or ingest alias, billable metrics by event-type and property
filters) happens at search time, which is what makes a late alias re-attribute
earlier usage and an archived metric stop matching.
"""

import json
import random
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from leakwatch.clock import Clock
from leakwatch.core.events import format_timestamp, parse_timestamp, quantity_value
from leakwatch.core.reconcile import PropertyFilter, passes_filters, property_string

SEARCH_WINDOW = timedelta(days=34)
DEDUP_WINDOW = timedelta(days=34)
MAX_FUTURE = timedelta(hours=24)
MAX_BATCH_SIZE = 100
MAX_TRANSACTION_ID_CHARS = 128
AGGREGATION_TYPES = frozenset({"COUNT", "LATEST", "MAX", "SUM", "UNIQUE", "custom_sql"})
# Metrics seeded without a creation time existed "forever", so seeded usage matches.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


USAGE_WINDOWS = {"DAY": timedelta(days=1), "HOUR": timedelta(hours=1)}
USAGE_PAGE_SIZE = 100
# Aggregations whose value over no events is 0; the others have no value (null).
ZERO_WHEN_EMPTY = frozenset({"COUNT", "SUM", "UNIQUE"})


class UsageQueryRejected(ValueError):
    """A `POST /v1/usage` body the API would answer with 400; the message says why."""


class InvalidIngest(ValueError):
    """A batch the real API would answer with 400; the message names index and field."""


class EventFate(StrEnum):
    """What really happened to one ingested copy of an event (the simulator's ground truth)."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    DROPPED = "dropped"


class FaultKind(StrEnum):
    """A way one HTTP answer can go wrong."""

    SERVER_ERROR = "server_error"
    SLOW = "slow"
    DROP_CONNECTION = "drop_connection"
    MALFORMED_JSON = "malformed_json"
    WRONG_SHAPE = "wrong_shape"
    MISSING_FIELD = "missing_field"
    # Scripted only (not drawn by `malformed_rate`, so seeded fault sequences stay put):
    # a body gzip-labelled but not gzip, as a broken proxy sends; and JSON nested
    # deeper than any parser's stack.
    BAD_ENCODING = "bad_encoding"
    DEEP_NESTING = "deep_nesting"
    # Drawn by their own rates (`timeout_rate`, `truncated_rate`) or scripted: an answer
    # that never comes (held until the client hangs up, at most `hang_s` real seconds),
    # a body cut short of its Content-Length; and, scripted only, a 429 whatever the
    # bucket says (a storm from a client sharing the account).
    TIMEOUT = "timeout"
    TRUNCATED_BODY = "truncated_body"
    RATE_LIMITED = "rate_limited"


MALFORMED_KINDS = (FaultKind.MALFORMED_JSON, FaultKind.WRONG_SHAPE, FaultKind.MISSING_FIELD)


@dataclass
class Faults:
    """Injectable faults, changeable at runtime (tests flip them between calls).

    Rates are probabilities per request, drawn from the state's seeded RNG;
    `scripted` is a queue of faults the next requests get, in order, whatever the
    rates say — deterministic bursts for tests. `silent_drop_*` make ingest answer
    200 but never store the event: the leak leakwatch exists to catch.
    """

    server_error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_delay_s: float = 0.5
    drop_connection_rate: float = 0.0
    malformed_rate: float = 0.0
    timeout_rate: float = 0.0
    truncated_rate: float = 0.0
    hang_s: float = 30.0
    silent_drop_rate: float = 0.0
    silent_drop_ids: set[str] = field(default_factory=set)
    scripted: list[FaultKind] = field(default_factory=list)
    endpoints: frozenset[str] = frozenset({"search", "ingest"})

    def script(self, kind: FaultKind, count: int = 1) -> None:
        """Make the next `count` requests fail with `kind`."""
        self.scripted.extend([kind] * count)

    def clear(self) -> None:
        """Turn every fault off."""
        self.server_error_rate = self.slow_rate = self.drop_connection_rate = 0.0
        self.malformed_rate = self.silent_drop_rate = 0.0
        self.timeout_rate = self.truncated_rate = 0.0
        self.silent_drop_ids.clear()
        self.scripted.clear()


@dataclass(frozen=True)
class SimulatorOptions:
    """Sandbox quirks (see metronome-api-notes.md, "Observed in the sandbox")."""

    properties_as_strings: bool = False
    metrics_key: str = "matched_billable_metrics"
    searchable_after_s: float = 0.0


@dataclass
class Customer:
    id: str
    name: str
    ingest_aliases: set[str] = field(default_factory=set)


@dataclass
class BillableMetric:
    id: str
    name: str
    aggregation_type: str = "COUNT"
    aggregation_key: str | None = None
    event_type_in: tuple[str, ...] | None = None
    event_type_not_in: tuple[str, ...] | None = None
    property_filters: tuple[PropertyFilter, ...] = ()
    group_keys: tuple[tuple[str, ...], ...] | None = None
    created_at: datetime = LONG_AGO
    archived_at: datetime | None = None
    custom_fields: Mapping[str, str] = field(default_factory=dict)
    sql: str | None = None

    def matches(self, event_type: str, properties: Mapping[str, Any]) -> bool:
        return passes_filters(
            event_type,
            properties,
            event_type_in=self.event_type_in,
            event_type_not_in=self.event_type_not_in,
            property_filters=self.property_filters,
        )

    def to_json(self) -> dict[str, Any]:
        """Render as the search answer's `MatchedBillableMetric`."""
        event_type_filter: dict[str, Any] = {}
        if self.event_type_in is not None:
            event_type_filter["in_values"] = list(self.event_type_in)
        if self.event_type_not_in is not None:
            event_type_filter["not_in_values"] = list(self.event_type_not_in)
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "aggregation_type": self.aggregation_type,
            "event_type_filter": event_type_filter,
            "property_filters": [f.to_json() for f in self.property_filters],
        }
        if self.aggregation_key is not None:
            out["aggregation_key"] = self.aggregation_key
        if self.group_keys is not None:
            out["group_keys"] = [list(keys) for keys in self.group_keys]
        if self.archived_at is not None:
            out["archived_at"] = format_timestamp(self.archived_at)
        out["custom_fields"] = dict(self.custom_fields)
        if self.sql is not None:
            out["sql"] = self.sql
        # The deprecated spellings older integrations still read, mirrored from the
        # current fields (`filter` is left out: its shape is not documented).
        if self.aggregation_type != "custom_sql":
            out["aggregate"] = self.aggregation_type.lower()
        if self.aggregation_key is not None:
            out["aggregate_keys"] = [self.aggregation_key]
        if self.group_keys is not None:
            out["group_by"] = sorted({key for keys in self.group_keys for key in keys})
        return out


@dataclass(frozen=True)
class IngestRecord:
    """One copy of an event as ingest received it, and what became of it."""

    item_id: str
    transaction_id: str
    customer_id: str
    event_type: str
    timestamp: datetime
    properties: Mapping[str, Any]
    ingested_at: datetime
    fate: EventFate


class SimulatorState:
    """Hold everything the simulated Metronome knows; thread-safe."""

    def __init__(
        self,
        *,
        clock: Clock,
        options: SimulatorOptions | None = None,
        faults: Faults | None = None,
        seed: int = 0,
    ) -> None:
        self.clock = clock
        self.options = options or SimulatorOptions()
        self.faults = faults or Faults()
        self.rng = random.Random(seed)
        self._lock = threading.RLock()
        self._customers: dict[str, Customer] = {}
        self._metrics: dict[str, BillableMetric] = {}
        self._records: dict[str, list[IngestRecord]] = {}

    def __repr__(self) -> str:
        return (
            f"SimulatorState(customers={len(self._customers)}, metrics={len(self._metrics)}, "
            f"transaction_ids={len(self._records)})"
        )

    def new_uuid(self) -> str:
        """Draw a UUID4 from the seeded RNG, so seeded runs are reproducible."""
        with self._lock:
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def draw(self) -> float:
        """Draw a uniform number from the seeded RNG (the server uses it for faults)."""
        with self._lock:
            return self.rng.random()

    def choose(self, options: Sequence[FaultKind]) -> FaultKind:
        with self._lock:
            return self.rng.choice(list(options))

    # -- customers and metrics -------------------------------------------------------

    def add_customer(
        self, name: str, ingest_aliases: Iterable[str] = (), *, customer_id: str | None = None
    ) -> Customer:
        with self._lock:
            customer = Customer(
                id=customer_id or self.new_uuid(), name=name, ingest_aliases=set(ingest_aliases)
            )
            self._customers[customer.id] = customer
            return customer

    def add_alias(self, customer_id: str, alias: str) -> None:
        """Add an ingest alias; usage already sent under it matches from now on."""
        with self._lock:
            self._customers[customer_id].ingest_aliases.add(alias)

    def customers(self) -> list[Customer]:
        with self._lock:
            return list(self._customers.values())

    def add_metric(
        self,
        name: str,
        *,
        event_type_in: Iterable[str] | None = None,
        event_type_not_in: Iterable[str] | None = None,
        property_filters: Iterable[PropertyFilter] = (),
        aggregation_type: str = "COUNT",
        aggregation_key: str | None = None,
        group_keys: Iterable[Iterable[str]] | None = None,
        metric_id: str | None = None,
        created_at: datetime | None = None,
        custom_fields: Mapping[str, str] | None = None,
        sql: str | None = None,
    ) -> BillableMetric:
        """Create a billable metric; it matches usage ingested from `created_at` (default now).

        A `custom_sql` metric carries its `sql`; the simulator still matches it by the
        event-type and property filters given (it does not run the SQL).
        """
        if aggregation_type not in AGGREGATION_TYPES:
            raise ValueError(f"unknown aggregation_type {aggregation_type!r}")
        if (aggregation_type == "custom_sql") != (sql is not None):
            raise ValueError("sql is given exactly when aggregation_type is custom_sql")
        with self._lock:
            metric = BillableMetric(
                id=metric_id or self.new_uuid(),
                name=name,
                aggregation_type=aggregation_type,
                aggregation_key=aggregation_key,
                event_type_in=tuple(event_type_in) if event_type_in is not None else None,
                event_type_not_in=(
                    tuple(event_type_not_in) if event_type_not_in is not None else None
                ),
                property_filters=tuple(property_filters),
                group_keys=(
                    tuple(tuple(keys) for keys in group_keys) if group_keys is not None else None
                ),
                created_at=created_at if created_at is not None else self.clock.now(),
                custom_fields={str(k): str(v) for k, v in (custom_fields or {}).items()},
                sql=sql,
            )
            self._metrics[metric.id] = metric
            return metric

    def archive_metric(self, metric_id: str) -> None:
        """Archive a metric: from now on it matches nothing."""
        with self._lock:
            self._metrics[metric_id].archived_at = self.clock.now()

    def metrics(self) -> list[BillableMetric]:
        with self._lock:
            return list(self._metrics.values())

    # -- ingest ----------------------------------------------------------------------

    def ingest(self, body: Any) -> None:
        """Validate and store a batch, all or nothing, as `POST /v1/ingest` does.

        Raises InvalidIngest (→ 400) naming the first bad event's index and field.
        """
        now = self.clock.now()
        events = validate_batch(body, now)
        with self._lock:
            for event in events:
                self._store(event, now)

    def _store(self, event: "_ValidEvent", now: datetime) -> None:
        txn = event.transaction_id
        history = self._records.setdefault(txn, [])
        earlier_accepted = any(
            r.fate is EventFate.STORED and now - r.ingested_at <= DEDUP_WINDOW for r in history
        )
        dropped = txn in self.faults.silent_drop_ids or (
            self.faults.silent_drop_rate > 0 and self.rng.random() < self.faults.silent_drop_rate
        )
        if dropped:
            fate = EventFate.DROPPED
        elif earlier_accepted:
            fate = EventFate.DUPLICATE
        else:
            fate = EventFate.STORED
        history.append(
            IngestRecord(
                item_id=self.new_uuid(),
                transaction_id=txn,
                customer_id=event.customer_id,
                event_type=event.event_type,
                timestamp=event.timestamp,
                properties=event.properties,
                ingested_at=event.ingested_at or now,
                fate=fate,
            )
        )

    # -- search ----------------------------------------------------------------------

    def search(self, transaction_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Answer `POST /v1/events/search`: every searchable copy of each id, in id order."""
        now = self.clock.now()
        visible_after = timedelta(seconds=self.options.searchable_after_s)
        items: list[dict[str, Any]] = []
        with self._lock:
            seen: set[str] = set()
            for txn in transaction_ids:
                if txn in seen:
                    continue
                seen.add(txn)
                for record in self._records.get(txn, ()):
                    if record.fate is EventFate.DROPPED:
                        continue
                    if now - record.timestamp > SEARCH_WINDOW:
                        continue
                    if now < record.ingested_at + visible_after:
                        continue
                    items.append(self._render(record, now))
        return items

    def _resolve_customer(self, customer_id: str) -> Customer | None:
        customer = self._customers.get(customer_id)
        if customer is not None:
            return customer
        for candidate in self._customers.values():
            if customer_id in candidate.ingest_aliases:
                return candidate
        return None

    def _render(self, record: IngestRecord, now: datetime) -> dict[str, Any]:
        customer = self._resolve_customer(record.customer_id)
        metrics: list[dict[str, Any]] = []
        if customer is not None and record.fate is EventFate.STORED:
            metrics = [
                metric.to_json()
                for metric in self._metrics.values()
                if metric.created_at <= record.ingested_at
                and (metric.archived_at is None or metric.archived_at > now)
                and metric.matches(record.event_type, record.properties)
            ]
        properties: dict[str, Any] = dict(record.properties)
        if self.options.properties_as_strings:
            properties = {key: property_string(value) for key, value in properties.items()}
        item: dict[str, Any] = {
            "id": record.item_id,
            "customer_id": record.customer_id,
            "event_type": record.event_type,
            "timestamp": format_timestamp(record.timestamp),
            "transaction_id": record.transaction_id,
            "is_duplicate": record.fate is EventFate.DUPLICATE,
            self.options.metrics_key: metrics,
            "processed_at": format_timestamp(record.ingested_at),
            "properties": properties,
        }
        if customer is not None:
            item["matched_customer"] = {"id": customer.id, "name": customer.name}
        return item

    # -- usage aggregates ------------------------------------------------------------

    def usage(self, body: Any, next_page: str | None = None) -> dict[str, Any]:
        """Answer `POST /v1/usage`: one page of aggregates per customer × metric × window.

        Aggregates what billing holds: accepted copies (not dropped, not duplicates)
        whose customer resolves now (a late alias re-attributes earlier usage) and that
        a live metric matched, windowed by event time. Every customer × metric × window
        in scope has a row: 0 for COUNT/SUM/UNIQUE without events, null for the others
        (and always null for custom_sql, whose SQL the simulator does not run).
        Raises UsageQueryRejected (→ 400) for a body off the contract.
        """
        query = _usage_query(body)
        offset = _page_offset(next_page)
        now = self.clock.now()
        with self._lock:
            customers = [
                c
                for c in self._customers.values()
                if query.customer_ids is None or c.id in query.customer_ids
            ]
            metrics = [
                m
                for m in self._metrics.values()
                if (query.metric_ids is None or m.id in query.metric_ids)
                and (m.archived_at is None or m.archived_at > now)
            ]
            billed = self._billed_records(now)
        windows = query.windows()
        values: dict[tuple[str, str, int], list[Any]] = {}
        for customer, record in billed:
            for metric in metrics:
                if metric.created_at > record.ingested_at:
                    continue
                if not metric.matches(record.event_type, record.properties):
                    continue
                index = query.window_index(record.timestamp)
                if index is None:
                    continue
                values.setdefault((customer.id, metric.id, index), []).append(record)
        rows: list[dict[str, Any]] = []
        for customer in sorted(customers, key=lambda c: c.id):
            for metric in sorted(metrics, key=lambda m: m.id):
                for index, (start, end) in enumerate(windows):
                    records = values.get((customer.id, metric.id, index), [])
                    rows.append(
                        {
                            "customer_id": customer.id,
                            "billable_metric_id": metric.id,
                            "billable_metric_name": metric.name,
                            "start_timestamp": format_timestamp(start),
                            "end_timestamp": format_timestamp(end),
                            "value": _aggregate(metric, records),
                        }
                    )
        page = rows[offset : offset + USAGE_PAGE_SIZE]
        more = offset + USAGE_PAGE_SIZE < len(rows)
        return {"data": page, "next_page": _page_token(offset + USAGE_PAGE_SIZE) if more else None}

    def _billed_records(self, now: datetime) -> list[tuple[Customer, IngestRecord]]:
        billed: list[tuple[Customer, IngestRecord]] = []
        for history in self._records.values():
            for record in history:
                if record.fate is not EventFate.STORED:
                    continue
                customer = self._resolve_customer(record.customer_id)
                if customer is not None:
                    billed.append((customer, record))
        return billed

    # -- ground truth ----------------------------------------------------------------

    def history(self, transaction_id: str) -> tuple[IngestRecord, ...]:
        """Every copy ingest received under this id, oldest first (ground truth for tests)."""
        with self._lock:
            return tuple(self._records.get(transaction_id, ()))

    def fate(self, transaction_id: str) -> EventFate | None:
        """Say what happened to the first copy of this id; None if never ingested."""
        records = self.history(transaction_id)
        return records[0].fate if records else None

    def transaction_ids(self) -> list[str]:
        with self._lock:
            return list(self._records)


@dataclass(frozen=True)
class _ValidEvent:
    transaction_id: str
    customer_id: str
    event_type: str
    timestamp: datetime
    properties: Mapping[str, Any]
    ingested_at: datetime | None = None


def _require_string(event: Mapping[str, Any], index: int, name: str, max_chars: int) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidIngest(f"usage[{index}].{name}: required non-empty string")
    if len(value) > max_chars:
        raise InvalidIngest(f"usage[{index}].{name}: longer than {max_chars} characters")
    return value


def validate_batch(body: Any, now: datetime) -> list[_ValidEvent]:
    """Check an ingest body the way Metronome documents it; raise on the first bad event."""
    if not isinstance(body, list):
        raise InvalidIngest("body must be a JSON array of usage events")
    if not 1 <= len(body) <= MAX_BATCH_SIZE:
        raise InvalidIngest(f"body must hold 1 to {MAX_BATCH_SIZE} events, got {len(body)}")
    events: list[_ValidEvent] = []
    for index, event in enumerate(body):
        if not isinstance(event, dict):
            raise InvalidIngest(f"usage[{index}]: must be an object")
        txn = _require_string(event, index, "transaction_id", MAX_TRANSACTION_ID_CHARS)
        customer_id = _require_string(event, index, "customer_id", 1024)
        event_type = _require_string(event, index, "event_type", 1024)
        raw_ts = _require_string(event, index, "timestamp", 64)
        try:
            timestamp = parse_timestamp(raw_ts)
        except ValueError:
            raise InvalidIngest(
                f"usage[{index}].timestamp: not an RFC 3339 timestamp: {raw_ts!r}"
            ) from None
        if timestamp - now > MAX_FUTURE:
            raise InvalidIngest(f"usage[{index}].timestamp: more than 24 hours in the future")
        if now - timestamp > SEARCH_WINDOW:
            raise InvalidIngest(f"usage[{index}].timestamp: older than 34 days")
        properties = event.get("properties", {})
        if properties is None:
            properties = {}
        if not isinstance(properties, dict):
            raise InvalidIngest(f"usage[{index}].properties: must be an object")
        events.append(_ValidEvent(txn, customer_id, event_type, timestamp, properties))
    return events


# -- seeding ---------------------------------------------------------------------------


def _filters_from_json(raw: Iterable[Mapping[str, Any]]) -> list[PropertyFilter]:
    filters = []
    for f in raw:
        in_values = f.get("in_values")
        not_in_values = f.get("not_in_values")
        filters.append(
            PropertyFilter(
                name=str(f["name"]),
                exists=f.get("exists"),
                # Compared with property values by their string form, so `true` in a
                # seed matches a JSON `true` property ("true", not Python's "True").
                in_values=(
                    tuple(property_string(v) for v in in_values) if in_values is not None else None
                ),
                not_in_values=(
                    tuple(property_string(v) for v in not_in_values)
                    if not_in_values is not None
                    else None
                ),
            )
        )
    return filters


def state_from_seed(
    seed: Mapping[str, Any],
    *,
    clock: Clock,
    options: SimulatorOptions | None = None,
    faults: Faults | None = None,
    rng_seed: int = 0,
) -> SimulatorState:
    """Build a state from a seed document: `{"customers", "billable_metrics", "events"}`.

    Customers: `{id?, name, ingest_aliases?}`. Metrics: `{id?, name, aggregation_type?,
    aggregation_key?, event_type_filter?{in_values?, not_in_values?},
    property_filters?[...], group_keys?, custom_fields?, sql?, archived?}` — seeded
    metrics count as created long ago. Events: the ingest shape, plus an optional
    `ingested_at` (RFC 3339).
    """
    state = SimulatorState(clock=clock, options=options, faults=faults, seed=rng_seed)
    for raw in seed.get("customers", []):
        state.add_customer(
            str(raw["name"]), raw.get("ingest_aliases", []), customer_id=raw.get("id")
        )
    for raw in seed.get("billable_metrics", []):
        type_filter = raw.get("event_type_filter") or {}
        metric = state.add_metric(
            str(raw["name"]),
            event_type_in=type_filter.get("in_values"),
            event_type_not_in=type_filter.get("not_in_values"),
            property_filters=_filters_from_json(raw.get("property_filters", [])),
            aggregation_type=raw.get("aggregation_type", "COUNT"),
            aggregation_key=raw.get("aggregation_key"),
            group_keys=raw.get("group_keys"),
            metric_id=raw.get("id"),
            created_at=LONG_AGO,
            custom_fields=raw.get("custom_fields"),
            sql=raw.get("sql"),
        )
        if raw.get("archived"):
            state.archive_metric(metric.id)
    events = list(seed.get("events", []))
    now = clock.now()
    for start in range(0, len(events), MAX_BATCH_SIZE):
        batch = events[start : start + MAX_BATCH_SIZE]
        valid = validate_batch(batch, now)
        with state._lock:
            for raw, event in zip(batch, valid, strict=True):
                ingested_at = raw.get("ingested_at")
                state._store(
                    replace(event, ingested_at=parse_timestamp(ingested_at))
                    if ingested_at
                    else event,
                    now,
                )
    return state


def load_seed_file(
    path: Path | str,
    *,
    clock: Clock,
    options: SimulatorOptions | None = None,
    faults: Faults | None = None,
    rng_seed: int = 0,
) -> SimulatorState:
    """Read a JSON seed file (see `state_from_seed`)."""
    seed = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(seed, dict):
        raise ValueError(f"{path}: a seed file holds a JSON object")
    return state_from_seed(seed, clock=clock, options=options, faults=faults, rng_seed=rng_seed)


DEMO_CUSTOMERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("5a1f6a0e-7c43-4d35-9a5b-2a4f0e1c9b01", "Acme Corp", ("acme", "billing@acme.example")),
    ("0c9d7c52-1e8b-4b8e-8f4e-61f3b2d7a802", "Globex", ("globex",)),
    ("b7e2e3f4-9a1d-4c7b-a2f0-7d5e6c4b3a03", "Initech", ("initech",)),
    ("e4d3c2b1-a0f9-4e8d-b7c6-5a4b3c2d1e04", "Umbrella", ("umbrella",)),
)


def build_demo_state(
    *,
    clock: Clock,
    options: SimulatorOptions | None = None,
    faults: Faults | None = None,
    rng_seed: int = 0,
) -> SimulatorState:
    """Build the demo's Metronome: four customers (with aliases) and four billable metrics.

    Event types `api_request`, `gpu_seconds` and `tokens` have metrics; `storage_gb` has
    none (an `unmatched_metric` leak waiting to happen); the alias `hooli` belongs to no
    customer until someone adds it (`unmatched_customer`, fixable).
    """
    state = SimulatorState(clock=clock, options=options, faults=faults, seed=rng_seed)
    for customer_id, name, aliases in DEMO_CUSTOMERS:
        state.add_customer(name, aliases, customer_id=customer_id)
    state.add_metric(
        "API requests",
        metric_id="6f0e5d4c-3b2a-4190-8877-665544332201",
        event_type_in=["api_request"],
        property_filters=[PropertyFilter("endpoint", exists=True)],
        group_keys=[["endpoint"]],
        created_at=LONG_AGO,
    )
    state.add_metric(
        "GPU seconds",
        metric_id="6f0e5d4c-3b2a-4190-8877-665544332202",
        event_type_in=["gpu_seconds"],
        property_filters=[
            PropertyFilter("seconds", exists=True),
            PropertyFilter("gpu", in_values=("a100", "h100")),
        ],
        aggregation_type="SUM",
        aggregation_key="seconds",
        group_keys=[["gpu"]],
        created_at=LONG_AGO,
    )
    state.add_metric(
        "Tokens",
        metric_id="6f0e5d4c-3b2a-4190-8877-665544332203",
        event_type_in=["tokens"],
        property_filters=[
            PropertyFilter("count", exists=True),
            PropertyFilter("model", not_in_values=("internal-test",)),
        ],
        aggregation_type="SUM",
        aggregation_key="count",
        created_at=LONG_AGO,
    )
    state.add_metric(
        "Unique API users",
        metric_id="6f0e5d4c-3b2a-4190-8877-665544332204",
        event_type_in=["api_request"],
        property_filters=[PropertyFilter("user_id", exists=True)],
        aggregation_type="UNIQUE",
        aggregation_key="user_id",
        created_at=LONG_AGO,
    )
    return state


@dataclass(frozen=True)
class _UsageQuery:
    starting_on: datetime
    ending_before: datetime
    window: timedelta | None
    customer_ids: frozenset[str] | None
    metric_ids: frozenset[str] | None

    def windows(self) -> list[tuple[datetime, datetime]]:
        if self.window is None:
            return [(self.starting_on, self.ending_before)]
        out: list[tuple[datetime, datetime]] = []
        start = self.starting_on
        while start < self.ending_before:
            end = min(start + self.window, self.ending_before)
            out.append((start, end))
            start = end
        return out

    def window_index(self, ts: datetime) -> int | None:
        if not self.starting_on <= ts < self.ending_before:
            return None
        if self.window is None:
            return 0
        return int((ts - self.starting_on) // self.window)


def _usage_query(body: Any) -> _UsageQuery:
    if not isinstance(body, Mapping):
        raise UsageQueryRejected("body: expected a JSON object")
    bounds: dict[str, datetime] = {}
    for name in ("starting_on", "ending_before"):
        raw = body.get(name)
        try:
            if not isinstance(raw, str):
                raise TypeError(name)
            bounds[name] = parse_timestamp(raw)
        except (ValueError, TypeError):
            raise UsageQueryRejected(f"{name}: required RFC 3339 timestamp") from None
    if bounds["ending_before"] <= bounds["starting_on"]:
        raise UsageQueryRejected("ending_before must be after starting_on")
    size = body.get("window_size")
    if not isinstance(size, str) or size.upper() not in {"DAY", "HOUR", "NONE"}:
        raise UsageQueryRejected("window_size: one of HOUR, DAY, NONE")
    customer_ids = body.get("customer_ids")
    if customer_ids is not None and (
        not isinstance(customer_ids, list) or not all(isinstance(c, str) for c in customer_ids)
    ):
        raise UsageQueryRejected("customer_ids: an array of strings")
    metrics = body.get("billable_metrics")
    if metrics is not None and (
        not isinstance(metrics, list)
        or not all(isinstance(m, Mapping) and isinstance(m.get("id"), str) for m in metrics)
    ):
        raise UsageQueryRejected("billable_metrics: an array of objects with an id")
    return _UsageQuery(
        starting_on=bounds["starting_on"],
        ending_before=bounds["ending_before"],
        window=USAGE_WINDOWS.get(size.upper()),
        customer_ids=frozenset(customer_ids) if customer_ids is not None else None,
        metric_ids=frozenset(m["id"] for m in metrics) if metrics is not None else None,
    )


def _aggregate(metric: BillableMetric, records: Sequence[IngestRecord]) -> float | None:
    """The value billing holds for `records` under `metric`'s aggregation."""
    kind = metric.aggregation_type
    if kind == "COUNT":
        return float(len(records))
    if kind == "custom_sql":
        return None
    key = metric.aggregation_key or ""
    present = [r for r in records if r.properties.get(key) is not None]
    if kind == "UNIQUE":
        return float(len({property_string(r.properties[key]) for r in present}))
    numbers = [
        (r.timestamp, n) for r in present if (n := quantity_value(r.properties, key)) is not None
    ]
    if kind == "SUM":
        return float(sum(n for _, n in numbers))
    if not numbers:
        return None if kind not in ZERO_WHEN_EMPTY else 0.0
    if kind == "MAX":
        return max(n for _, n in numbers)
    return max(numbers, key=lambda pair: pair[0])[1]  # LATEST


def _page_token(offset: int) -> str:
    return f"page-{offset}"


def _page_offset(token: str | None) -> int:
    if token is None or token == "":
        return 0
    prefix, _, number = token.partition("-")
    if prefix != "page" or not number.isdigit():
        raise UsageQueryRejected("next_page: not a cursor this API returned")
    return int(number)
