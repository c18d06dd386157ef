"""Totals reconciliation: what Metronome should hold, what it holds, and the gap. Pure.

Sampling says *why* events leak, with an interval. Reconciliation says *how much*,
exactly, for the metrics whose aggregation leakwatch can reproduce from the company's
own record: for each Metronome customer × billable metric × UTC day,

    expected = the metric's aggregation over the source events that its filters match,
               for every ingest alias that resolves to that customer
    billed   = the value `POST /v1/usage` returns for the same customer, metric and day
    gap      = billed − expected   (negative: usage never billed)

Only COUNT and SUM (and MAX where kept) are reproducible from per-event values; UNIQUE
needs the distinct values, LATEST the order Metronome saw, custom_sql its SQL — those
are named as skipped, never guessed.

Matching follows Metronome's rules as the simulator and the API notes describe them:
an event type filter (`in_values` / `not_in_values`) and property filters (`exists`,
`in_values`, `not_in_values`) all pass; property values compare by their string form.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from leakwatch.core.events import quantity_value

REPRODUCIBLE = frozenset({"COUNT", "SUM", "MAX"})


class GapStatus(StrEnum):
    OK = "ok"  # within tolerance
    UNDER = "under_billed"  # Metronome holds less than was sent
    OVER = "over_billed"  # Metronome holds more (double sends, another producer)


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    name: str
    exists: bool | None = None
    in_values: tuple[str, ...] | None = None
    not_in_values: tuple[str, ...] | None = None

    def passes(self, properties: Mapping[str, Any]) -> bool:
        present = properties.get(self.name) is not None
        if self.exists is not None and present is not self.exists:
            return False
        value = property_string(properties[self.name]) if present else None
        if self.in_values is not None and (value is None or value not in self.in_values):
            return False
        return not (self.not_in_values is not None and value in self.not_in_values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.exists is not None:
            out["exists"] = self.exists
        if self.in_values is not None:
            out["in_values"] = list(self.in_values)
        if self.not_in_values is not None:
            out["not_in_values"] = list(self.not_in_values)
        return out


def passes_filters(
    event_type: str,
    properties: Mapping[str, Any],
    *,
    event_type_in: tuple[str, ...] | None,
    event_type_not_in: tuple[str, ...] | None,
    property_filters: Iterable[PropertyFilter],
) -> bool:
    """Does an event pass a billable metric's event-type and property filters?"""
    if event_type_in is not None and event_type not in event_type_in:
        return False
    if event_type_not_in is not None and event_type in event_type_not_in:
        return False
    return all(f.passes(properties) for f in property_filters)


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    """A billable metric as search answers describe it (learned from samples or pinned)."""

    id: str
    name: str
    aggregation_type: str | None = None
    aggregation_key: str | None = None
    event_type_in: tuple[str, ...] | None = None
    event_type_not_in: tuple[str, ...] | None = None
    property_filters: tuple[PropertyFilter, ...] = ()

    @property
    def reproducible(self) -> bool:
        if self.aggregation_type not in REPRODUCIBLE:
            return False
        return self.aggregation_type == "COUNT" or bool(self.aggregation_key)

    @property
    def why_not_reproducible(self) -> str | None:
        if self.reproducible:
            return None
        if self.aggregation_type is None:
            return "its aggregation is not known yet"
        if self.aggregation_type in REPRODUCIBLE:
            return f"{self.aggregation_type} without an aggregation key"
        return {
            "custom_sql": "custom SQL cannot be reproduced from events",
            "LATEST": "LATEST depends on the order Metronome received events",
            "UNIQUE": "UNIQUE needs every distinct value, not per-event sums",
        }.get(self.aggregation_type, f"{self.aggregation_type} is not reproducible")

    def matches(self, event_type: str, properties: Mapping[str, Any]) -> bool:
        return passes_filters(
            event_type,
            properties,
            event_type_in=self.event_type_in,
            event_type_not_in=self.event_type_not_in,
            property_filters=self.property_filters,
        )

    def contribution(self, properties: Mapping[str, Any]) -> float | None:
        """What one matching event adds: 1 for COUNT, its key's number for SUM and MAX."""
        if self.aggregation_type == "COUNT":
            return 1.0
        return quantity_value(properties, self.aggregation_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "aggregation_type": self.aggregation_type,
            "aggregation_key": self.aggregation_key,
            "event_type_in": list(self.event_type_in) if self.event_type_in is not None else None,
            "event_type_not_in": (
                list(self.event_type_not_in) if self.event_type_not_in is not None else None
            ),
            "property_filters": [f.to_json() for f in self.property_filters],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "MetricDefinition":
        def strings(value: Any) -> tuple[str, ...] | None:
            return tuple(str(v) for v in value) if isinstance(value, list) else None

        return cls(
            id=str(raw["id"]),
            name=str(raw.get("name") or raw["id"]),
            aggregation_type=raw.get("aggregation_type"),
            aggregation_key=raw.get("aggregation_key"),
            event_type_in=strings(raw.get("event_type_in")),
            event_type_not_in=strings(raw.get("event_type_not_in")),
            property_filters=tuple(
                PropertyFilter(
                    name=str(f["name"]),
                    exists=f.get("exists") if isinstance(f.get("exists"), bool) else None,
                    in_values=strings(f.get("in_values")),
                    not_in_values=strings(f.get("not_in_values")),
                )
                for f in raw.get("property_filters") or ()
                if isinstance(f, Mapping) and isinstance(f.get("name"), str)
            ),
        )


@dataclass(frozen=True, slots=True)
class UsageAggregate:
    """One row of `POST /v1/usage`: a customer × metric × window and its value."""

    customer_id: str
    billable_metric_id: str
    billable_metric_name: str
    start: datetime
    end: datetime
    value: float | None


@dataclass(frozen=True, slots=True)
class ExpectedKey:
    customer_id: str  # Metronome's customer id
    metric_id: str
    day: date


@dataclass
class Expectation:
    """What the source says Metronome should hold for one key."""

    value: float = 0.0
    events: int = 0

    def add(self, aggregation_type: str | None, contribution: float) -> None:
        self.events += 1
        if aggregation_type == "MAX":
            self.value = contribution if self.events == 1 else max(self.value, contribution)
        else:
            self.value += contribution


@dataclass(frozen=True, slots=True)
class Gap:
    customer_id: str
    customer_name: str | None
    metric_id: str
    metric_name: str
    day: date
    expected: float
    billed: float | None
    events: int
    status: GapStatus

    @property
    def difference(self) -> float:
        return (self.billed or 0.0) - self.expected

    @property
    def ratio(self) -> float | None:
        """billed / expected; None when nothing was expected."""
        if self.expected == 0:
            return None
        return (self.billed or 0.0) / self.expected


@dataclass
class ExpectedTotals:
    """Accumulates expectations from source events, one event at a time.

    `aliases` maps the source's customer id (an ingest alias or Metronome's own id) to
    Metronome's customer id; an event under an alias not in it is usage no customer
    can be billed for, counted in `unattributed` per alias and day.
    """

    definitions: Sequence[MetricDefinition]
    aliases: Mapping[str, str]
    totals: dict[ExpectedKey, Expectation] = field(default_factory=dict)
    unattributed: dict[tuple[str, date], int] = field(default_factory=dict)

    def add(
        self,
        *,
        customer_id: str,
        event_type: str,
        day: date,
        properties: Mapping[str, Any],
    ) -> None:
        customer = self.aliases.get(customer_id)
        if customer is None:
            key = (customer_id, day)
            self.unattributed[key] = self.unattributed.get(key, 0) + 1
            return
        for definition in self.definitions:
            if not definition.reproducible or not definition.matches(event_type, properties):
                continue
            contribution = definition.contribution(properties)
            if contribution is None:
                continue
            slot = self.totals.setdefault(ExpectedKey(customer, definition.id, day), Expectation())
            slot.add(definition.aggregation_type, contribution)


def billed_by_key(rows: Iterable[UsageAggregate]) -> dict[ExpectedKey, float | None]:
    """Index `/v1/usage` day rows by customer × metric × the day they start on (UTC)."""
    return {ExpectedKey(r.customer_id, r.billable_metric_id, r.start.date()): r.value for r in rows}


def compute_gaps(
    expected: Mapping[ExpectedKey, Expectation],
    billed: Mapping[ExpectedKey, float | None],
    *,
    definitions: Mapping[str, MetricDefinition],
    customer_names: Mapping[str, str],
    days: Sequence[date],
    customers: Iterable[str],
    tolerance: float,
    absolute_tolerance: float = 0.0,
) -> list[Gap]:
    """Compare per key; a gap is flagged when |billed − expected| exceeds the tolerance.

    `tolerance` is relative to the expected value; `absolute_tolerance` absorbs float
    noise in SUMs. Every reproducible metric × customer × day in scope gets a row, so
    "billed 0 where 40 were sent" and "billed 40 where none were sent" both show.
    """
    rows: list[Gap] = []
    reproducible = [d for d in definitions.values() if d.reproducible]
    for customer in sorted(set(customers)):
        for definition in sorted(reproducible, key=lambda d: d.name):
            for day in days:
                key = ExpectedKey(customer, definition.id, day)
                expectation = expected.get(key, Expectation())
                value = billed.get(key)
                if expectation.events == 0 and not value:
                    continue
                rows.append(
                    Gap(
                        customer_id=customer,
                        customer_name=customer_names.get(customer),
                        metric_id=definition.id,
                        metric_name=definition.name,
                        day=day,
                        expected=expectation.value,
                        billed=value,
                        events=expectation.events,
                        status=gap_status(expectation.value, value, tolerance, absolute_tolerance),
                    )
                )
    return rows


def gap_status(
    expected: float, billed: float | None, tolerance: float, absolute_tolerance: float = 0.0
) -> GapStatus:
    difference = (billed or 0.0) - expected
    allowed = max(abs(expected) * tolerance, absolute_tolerance)
    if abs(difference) <= allowed + 1e-9 * max(1.0, abs(expected)):
        return GapStatus.OK
    return GapStatus.UNDER if difference < 0 else GapStatus.OVER


def property_string(value: Any) -> str:
    """A value's string form, as Metronome compares property values."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
