"""`leakwatch status`: how much are we leaking? Reads the store; computes nothing by hand.

Counts come from SQL aggregation (`store.queries.outcome_counts`); rates and intervals
from `core.stats`; estimated leaked events per day multiply a rate by the source's
mean daily volume over the last 7 full days (from the tailer's exact counts); revenue
at risk per day multiplies each event type's rate by its daily volume (or daily quantity,
when priced per unit) and its configured price.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from leakwatch.core.events import LEAKING_OUTCOMES, Outcome
from leakwatch.core.reconcile import RECONCILED_WINDOW, billed_ratio
from leakwatch.core.stats import RateEstimate, rate_from_weight_sums
from leakwatch.pipeline.alert import Price
from leakwatch.store.alerts import OpenAlert, list_open
from leakwatch.store.billing import reconciled_totals
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import SamplingRun, VolumeCount
from leakwatch.store.outbox import outbox_summary
from leakwatch.store.queries import OutcomeCounts, outcome_counts

VOLUME_DAYS = 7
TOP_CUSTOMERS = 10


@dataclass
class RateRow:
    """One group's outcomes with its leak rate and estimates."""

    group: str
    counts: dict[str, int]
    sampled: int
    decided: int
    leaks: int
    leak_rate: float
    lower: float
    upper: float
    leaked_per_day: float | None = None
    rates: dict[str, float] = field(default_factory=dict)
    # Only where a price and a volume are known (event types, and their sum overall).
    revenue_at_risk_per_day: float | None = None


@dataclass(frozen=True)
class ReconciledMetric:
    """One billable metric's reconciled totals over the last week (exact, not sampled)."""

    metric: str
    expected: float
    billed: float
    difference: float
    billed_ratio: float | None
    flagged_days: int
    days: int


@dataclass
class StatusView:
    now: datetime
    window: timedelta
    overall: RateRow
    by_source: list[RateRow]
    by_event_type: list[RateRow]
    top_customers: list[RateRow]
    open_alerts: list[OpenAlert]
    outbox: dict[str, int]
    last_cycle: dict[str, Any] | None
    currency: str = "$"
    # Per source, as of the last cycle: "counted" (the tail's exact volumes) or
    # "estimated" (the tail is still reading the history; volume from the draw).
    volumes: dict[str, str] = field(default_factory=dict)
    reconciled: list[ReconciledMetric] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "window_s": self.window.total_seconds(),
            "overall": asdict(self.overall),
            "by_source": [asdict(r) for r in self.by_source],
            "by_event_type": [asdict(r) for r in self.by_event_type],
            "top_customers": [asdict(r) for r in self.top_customers],
            "open_alerts": [
                {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(a).items()}
                for a in self.open_alerts
            ],
            "outbox": self.outbox,
            "last_cycle": self.last_cycle,
            "volumes": self.volumes,
            "reconciled_last_7_days": [asdict(r) for r in self.reconciled],
            "currency": self.currency,
        }


def estimate_of(counts: OutcomeCounts, confidence: float = 0.95) -> RateEstimate:
    decided = [o for o in Outcome if o.is_decided]
    return rate_from_weight_sums(
        counts.leaks,
        counts.decided,
        counts.weight(LEAKING_OUTCOMES),
        counts.weight(decided),
        sum(counts.weights_squared.get(o, 0.0) for o in decided),
        confidence,
    )


def rate_row(counts: OutcomeCounts, *, label: str, daily_volume: float | None) -> RateRow:
    estimate = estimate_of(counts)
    decided = counts.decided
    return RateRow(
        group=label,
        counts={o.value: counts.counts.get(o, 0) for o in Outcome if counts.counts.get(o)},
        sampled=counts.total,
        decided=decided,
        leaks=counts.leaks,
        leak_rate=estimate.rate,
        lower=estimate.interval.lo,
        upper=estimate.interval.hi,
        leaked_per_day=None if daily_volume is None else estimate.rate * daily_volume,
        rates={
            f"{o.value}_rate": counts.counts.get(o, 0) / decided
            for o in LEAKING_OUTCOMES
            if decided and counts.counts.get(o)
        },
    )


def _daily_volumes(
    sessions: SessionFactory, now: datetime, by: str, *, measure: str = "events"
) -> dict[str, float]:
    today = now.date()
    first = today - timedelta(days=VOLUME_DAYS)
    column = col(VolumeCount.source) if by == "source" else col(VolumeCount.event_type)
    summed = col(VolumeCount.quantity_sum) if measure == "quantity" else col(VolumeCount.events)
    with transaction(sessions) as session:
        rows = session.execute(
            select(column, func.sum(summed))
            .where(col(VolumeCount.day) >= first, col(VolumeCount.day) < today)
            .group_by(column)
        ).all()
    return {str(group): float(total or 0) / VOLUME_DAYS for group, total in rows}


def _revenue_per_day(
    row: RateRow,
    price: Price | None,
    events_per_day: float | None,
    quantity_per_day: float | None,
) -> float | None:
    if price is None or not row.decided:
        return None
    if isinstance(price, int | float):
        return None if events_per_day is None else row.leak_rate * events_per_day * float(price)
    return None if quantity_per_day is None else row.leak_rate * quantity_per_day * price.per_unit


def build_status(
    sessions: SessionFactory,
    *,
    now: datetime,
    window: timedelta,
    prices: Mapping[str, Price] | None = None,
    currency: str = "$",
) -> StatusView:
    since = now - window
    with transaction(sessions) as session:
        overall = outcome_counts(session, since=since, until=now)[0]
        sources = outcome_counts(session, since=since, until=now, by="source")
        types = outcome_counts(session, since=since, until=now, by="event_type")
        customers = outcome_counts(session, since=since, until=now, by="customer_id")
        outbox = outbox_summary(session)
        reconciled = reconciled_totals(session, since=(now - RECONCILED_WINDOW).date())
        last = session.execute(
            select(SamplingRun).order_by(col(SamplingRun.started_at).desc()).limit(1)
        ).scalar_one_or_none()
    source_volume = _daily_volumes(sessions, now, "source")
    volumes = _volume_states(last)
    for name, per_day in _estimated_daily_volumes(last).items():
        # Partial counts would understate the volume: the draw's estimate stands in.
        source_volume[name] = per_day
    type_volume = _daily_volumes(sessions, now, "event_type")
    type_quantity = _daily_volumes(sessions, now, "event_type", measure="quantity")
    customers.sort(key=lambda c: (-c.leaks, -c.total, c.group or ""))
    by_event_type = [
        rate_row(c, label=c.group or "", daily_volume=type_volume.get(c.group or "")) for c in types
    ]
    for row in by_event_type:
        row.revenue_at_risk_per_day = _revenue_per_day(
            row,
            (prices or {}).get(row.group),
            type_volume.get(row.group),
            type_quantity.get(row.group),
        )
    overall_row = rate_row(overall, label="all", daily_volume=sum(source_volume.values()) or None)
    priced = [r.revenue_at_risk_per_day for r in by_event_type]
    if any(v is not None for v in priced):
        # Each type at its own rate and price; a blended rate would misprice the mix.
        overall_row.revenue_at_risk_per_day = sum(v for v in priced if v is not None)
    return StatusView(
        now=now,
        window=window,
        overall=overall_row,
        by_source=[
            rate_row(c, label=c.group or "", daily_volume=source_volume.get(c.group or ""))
            for c in sources
        ],
        by_event_type=by_event_type,
        top_customers=[
            rate_row(c, label=c.group or "", daily_volume=None)
            for c in customers[:TOP_CUSTOMERS]
            if c.leaks
        ],
        open_alerts=list_open(sessions, now),
        reconciled=[
            ReconciledMetric(
                metric=t.metric_name,
                expected=t.expected,
                billed=t.billed,
                difference=t.billed - t.expected,
                billed_ratio=billed_ratio(t.expected, t.billed),
                flagged_days=t.flagged,
                days=t.rows,
            )
            for t in reconciled
        ],
        outbox=dict(outbox.counts),
        last_cycle=None
        if last is None
        else {
            "run_id": last.id,
            "status": last.status,
            "started_at": last.started_at.isoformat(),
            "finished_at": last.finished_at.isoformat() if last.finished_at else None,
            "sampled": last.sampled,
            "search_requests": last.search_requests,
            "search_rate_limited": last.search_rate_limited,
            "error": last.error,
        },
        currency=currency,
        volumes=volumes,
    )


def _last_sources(last: SamplingRun | None) -> dict[str, dict[str, Any]]:
    sources = (last.summary or {}).get("sources") if last is not None else None
    return sources if isinstance(sources, dict) else {}


def _volume_states(last: SamplingRun | None) -> dict[str, str]:
    """Each source's volume state in the last cycle (older runs did not say: counted)."""
    return {
        name: str(report.get("volumes", "counted"))
        for name, report in _last_sources(last).items()
        if isinstance(report, dict)
    }


def _estimated_daily_volumes(last: SamplingRun | None) -> dict[str, float]:
    """Daily volume estimated from the last draw, for sources still being counted."""
    return {
        name: float(report["events_per_day"])
        for name, report in _last_sources(last).items()
        if isinstance(report, dict)
        and report.get("volumes") == "estimated"
        and isinstance(report.get("events_per_day"), int | float)
    }
