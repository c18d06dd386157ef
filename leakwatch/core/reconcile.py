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
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from leakwatch.core.events import quantity_value
from leakwatch.core.formatting import format_percent
from leakwatch.core.pricing import Price

REPRODUCIBLE = frozenset({"COUNT", "SUM", "MAX"})
# What status and /metrics sum reconciled days over.
RECONCILED_WINDOW = timedelta(days=7)


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
        """In the search answer's shape, so one parser reads both (see from_search)."""
        type_filter: dict[str, Any] = {}
        if self.event_type_in is not None:
            type_filter["in_values"] = list(self.event_type_in)
        if self.event_type_not_in is not None:
            type_filter["not_in_values"] = list(self.event_type_not_in)
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "event_type_filter": type_filter,
            "property_filters": [f.to_json() for f in self.property_filters],
        }
        if self.aggregation_type is not None:
            out["aggregation_type"] = self.aggregation_type
        if self.aggregation_key is not None:
            out["aggregation_key"] = self.aggregation_key
        return out


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
        return billed_ratio(self.expected, self.billed)


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
    resends: int = 0
    # Identities seen per event day: a resend (same transaction id and payload, so the
    # same timestamp and day) is billed once by Metronome's dedup, so it counts once.
    _seen: dict[date, set[int]] = field(default_factory=dict, repr=False)

    def add(
        self,
        *,
        customer_id: str,
        event_type: str,
        day: date,
        properties: Mapping[str, Any],
        expected_metrics: frozenset[str] = frozenset(),
        identity: int | None = None,
    ) -> None:
        """Count one source event toward every metric that should bill it.

        A metric should bill an event that its filters match, and also one whose
        event type the source config expects it in (`expected_metrics`): that is how a
        filter missing a property value shows as a gap instead of vanishing. `identity`
        (transaction id and payload) makes a logged resend count once; two different
        events sharing a transaction id both count, and Metronome's dedup drops one.
        """
        if identity is not None:
            seen = self._seen.setdefault(day, set())
            if identity in seen:
                self.resends += 1
                return
            seen.add(identity)
        customer = self.aliases.get(customer_id)
        if customer is None:
            key = (customer_id, day)
            self.unattributed[key] = self.unattributed.get(key, 0) + 1
            return
        for definition in self.definitions:
            if not definition.reproducible:
                continue
            if definition.name not in expected_metrics and not definition.matches(
                event_type, properties
            ):
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


def billed_ratio(expected: float, billed: float | None) -> float | None:
    """billed / expected (1.0: all billed); None when nothing was expected."""
    if expected == 0:
        return None
    return (billed or 0.0) / expected


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


@dataclass(frozen=True, slots=True)
class CustomerAlias:
    """A customer id as the source writes it, and the Metronome customer it resolved to."""

    alias: str
    customer_id: str
    customer_name: str | None


@dataclass(frozen=True)
class LearnedBilling:
    """What search answers taught about billing: metric definitions and alias → customer."""

    definitions: Mapping[str, MetricDefinition] = field(default_factory=dict)
    aliases: Mapping[str, CustomerAlias] = field(default_factory=dict)


METRIC_KEYS = ("matched_billable_metrics", "billable_metrics")


def learn_billing(items: Iterable[Any]) -> LearnedBilling:
    """Read metric definitions and customer aliases out of search answer items.

    Each item is a `SearchItem` (its `raw` JSON holds the full metric objects) or a raw
    dict. Metrics without an id are ignored; a malformed filter is dropped, not guessed.
    Only accepted copies (not duplicates) that matched a customer teach an alias.
    """
    definitions: dict[str, MetricDefinition] = {}
    aliases: dict[str, CustomerAlias] = {}
    for item in items:
        raw = getattr(item, "raw", item)
        if not isinstance(raw, Mapping):
            continue
        for key in METRIC_KEYS:
            for metric in raw.get(key) or ():
                definition = metric_definition_from_search(metric)
                if definition is not None:
                    definitions[definition.id] = definition
        customer = raw.get("matched_customer")
        alias = raw.get("customer_id")
        if (
            isinstance(customer, Mapping)
            and isinstance(customer.get("id"), str)
            and isinstance(alias, str)
            and not raw.get("is_duplicate")
        ):
            name = customer.get("name")
            aliases[alias] = CustomerAlias(
                alias, customer["id"], name if isinstance(name, str) else None
            )
            aliases.setdefault(
                customer["id"],
                CustomerAlias(
                    customer["id"], customer["id"], name if isinstance(name, str) else None
                ),
            )
    return LearnedBilling(definitions=definitions, aliases=aliases)


def metric_definition_from_search(raw: Any) -> MetricDefinition | None:
    """A `MatchedBillableMetric` (current or deprecated spellings) as a definition."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
        return None

    def strings(value: Any) -> tuple[str, ...] | None:
        if not isinstance(value, list):
            return None
        return tuple(v if isinstance(v, str) else property_string(v) for v in value)

    aggregation = raw.get("aggregation_type")
    if not isinstance(aggregation, str):
        deprecated = raw.get("aggregate")
        aggregation = deprecated.upper() if isinstance(deprecated, str) else None
    key = raw.get("aggregation_key")
    if not isinstance(key, str):
        keys = raw.get("aggregate_keys")
        key = keys[0] if isinstance(keys, list) and keys and isinstance(keys[0], str) else None
    type_filter = raw.get("event_type_filter")
    type_filter = type_filter if isinstance(type_filter, Mapping) else {}
    filters = []
    for rule in raw.get("property_filters") or ():
        if not isinstance(rule, Mapping) or not isinstance(rule.get("name"), str):
            continue
        exists = rule.get("exists")
        filters.append(
            PropertyFilter(
                name=rule["name"],
                exists=exists if isinstance(exists, bool) else None,
                in_values=strings(rule.get("in_values")),
                not_in_values=strings(rule.get("not_in_values")),
            )
        )
    name = raw.get("name")
    return MetricDefinition(
        id=raw["id"],
        name=name if isinstance(name, str) else raw["id"],
        aggregation_type=aggregation,
        aggregation_key=key,
        event_type_in=strings(type_filter.get("in_values")),
        event_type_not_in=strings(type_filter.get("not_in_values")),
        property_filters=tuple(filters),
    )


def reconcile_days(now: datetime, days: int, *, search_window_days: int = 34) -> list[date]:
    """The last `days` complete UTC days before `now`, oldest first, within the window.

    Today is never reconciled: its usage is still arriving.
    """
    today = now.astimezone(UTC).date()
    oldest = today - timedelta(days=search_window_days - 1)
    return [d for d in (today - timedelta(days=k) for k in range(days, 0, -1)) if d >= oldest]


def gap_money(
    definition: MetricDefinition, difference: float, prices: Mapping[str, "Price"]
) -> float | None:
    """The money a gap is worth, where a price says it: None when no price fits the metric.

    A metric filtered to one event type is priced by that type's price: per event for
    COUNT, per unit for a SUM of the priced property.
    """
    if definition.event_type_in is None or len(definition.event_type_in) != 1:
        return None
    price = prices.get(definition.event_type_in[0])
    if price is None:
        return None
    if definition.aggregation_type == "COUNT" and price.unit_property is None:
        return float(difference * price.amount)
    if definition.aggregation_type == "SUM" and price.unit_property == definition.aggregation_key:
        return float(difference * price.amount)
    return None


def explain_with_samples(outcomes: Mapping[str, int]) -> str:
    """Say what sampling saw for the same customer and metric, leaks first.

    E.g. "samples: 3 of 71 missing, 1 unmatched_metric" or "samples: none yet".
    """
    decided = {k: v for k, v in outcomes.items() if k not in ("pending", "error", "expired")}
    total = sum(decided.values())
    if total == 0:
        return "samples: none decided yet"
    leaks = sorted(
        ((k, v) for k, v in decided.items() if k != "matched" and v), key=lambda kv: -kv[1]
    )
    if not leaks:
        return f"samples: all {total} matched"
    first, *rest = leaks
    parts = [f"{first[1]} of {total} {first[0]}"] + [f"{v} {k}" for k, v in rest]
    return "samples: " + ", ".join(parts)


@dataclass(frozen=True)
class ReconciledRow:
    """One customer × metric × day, with its money and what sampling saw."""

    gap: Gap
    money: float | None
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        gap = self.gap
        return {
            "day": gap.day.isoformat(),
            "customer_id": gap.customer_id,
            "customer_name": gap.customer_name,
            "metric_id": gap.metric_id,
            "metric_name": gap.metric_name,
            "expected": gap.expected,
            "billed": gap.billed,
            "difference": gap.difference,
            "ratio": gap.ratio,
            "events": gap.events,
            "status": gap.status.value,
            "money": self.money,
            "explanation": self.explanation,
        }


@dataclass
class ReconcileResult:
    days: list[date]
    rows: list[ReconciledRow] = field(default_factory=list)
    skipped_metrics: dict[str, str] = field(default_factory=dict)  # name -> why
    unattributed: dict[str, int] = field(default_factory=dict)  # alias -> events
    notes: list[str] = field(default_factory=list)
    settled_before: date | None = None

    @property
    def flagged(self) -> list[ReconciledRow]:
        return [r for r in self.rows if r.gap.status is not GapStatus.OK]

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": [d.isoformat() for d in self.days],
            "rows": [r.to_dict() for r in self.rows],
            "flagged": len(self.flagged),
            "skipped_metrics": dict(self.skipped_metrics),
            "unattributed_events": dict(self.unattributed),
            "notes": list(self.notes),
            "settled_before": self.settled_before.isoformat() if self.settled_before else None,
        }


@dataclass(frozen=True, slots=True)
class MetricShortfall:
    """How much of one metric's expected usage Metronome did not bill, over some days."""

    metric: str
    expected: float
    billed: float
    days: int

    @property
    def share(self) -> float:
        """(expected − billed) / expected, floored at 0 (over-billing is not a leak)."""
        if self.expected <= 0:
            return 0.0
        return max(0.0, (self.expected - self.billed) / self.expected)

    def describe(self) -> str:
        return (
            f"{self.metric}: billed {self.billed:,.6g} of {self.expected:,.6g} expected over "
            f"{self.days} reconciled day{'s' if self.days != 1 else ''} "
            f"({format_percent(self.share)} short), exact from Metronome's /v1/usage"
        )


def worst_shortfall(rows: Iterable[MetricShortfall]) -> MetricShortfall | None:
    """The metric billed furthest short of what was sent (None when nothing was expected)."""
    candidates = [r for r in rows if r.expected > 0]
    return max(candidates, key=lambda r: (r.share, r.expected - r.billed), default=None)
