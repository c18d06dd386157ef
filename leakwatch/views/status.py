"""`leakwatch status`: how much are we leaking? Reads the store; computes nothing by hand.

Counts come from SQL aggregation (`store.queries`); the leak rate and every per-outcome
rate from the one weighted estimator (`core.stats.OutcomeTally`), so per-outcome rates
add up to the leak rate; leaked events and revenue at risk from the one rule in
`core.exposure` — each (source, event type) segment's rate × its volume over the same
window as the samples (`--window`), priced — shown per day (window figure × 1 day /
window), as alerts, the report and `/metrics` compute them.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from leakwatch.core.events import Outcome, format_timestamp
from leakwatch.core.exposure import (
    Exposure,
    Segment,
    VolumeRow,
    per_day,
    scope_exposure,
    segments_of,
    volumes_in,
    with_source_total,
)
from leakwatch.core.pricing import Price
from leakwatch.core.reconcile import RECONCILED_WINDOW, billed_ratio
from leakwatch.core.report_content import BadLineRow
from leakwatch.core.stats import OutcomeTally
from leakwatch.store import runs
from leakwatch.store.alerts import OpenAlert, list_open
from leakwatch.store.billing import reconciled_totals
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import SamplingRun
from leakwatch.store.outbox import outbox_summary
from leakwatch.store.queries import (
    OutcomeCounts,
    outcome_counts,
    pooled_counts,
    segment_counts,
    volume_rows,
)
from leakwatch.store.report_queries import fetch_bad_lines
from leakwatch.views.sources import bad_line_rate

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


@dataclass(frozen=True)
class BadLineShare:
    """A source's unusable lines against its usable events over the same days."""

    bad: int
    usable: int
    rate: float | None


def bad_line_shares(
    bad: Iterable[BadLineRow], usable: Iterable[VolumeRow]
) -> dict[str, BadLineShare]:
    """Per source: bad lines as a share of everything read (days as filed)."""
    bad_by: dict[str, int] = {}
    for row in bad:
        bad_by[row.source] = bad_by.get(row.source, 0) + row.count
    usable_by: dict[str, int] = {}
    for volume in usable:
        usable_by[volume.source] = usable_by.get(volume.source, 0) + volume.events
    return {
        name: BadLineShare(
            bad_by.get(name, 0),
            usable_by.get(name, 0),
            bad_line_rate(bad_by.get(name, 0), usable_by.get(name, 0)),
        )
        for name in sorted(set(bad_by) | set(usable_by))
    }


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
    # Per source over the window's UTC days: bad lines, usable events, bad share.
    bad_lines: dict[str, BadLineShare] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "now": format_timestamp(self.now),
            "window_s": self.window.total_seconds(),
            "overall": asdict(self.overall),
            "by_source": [asdict(r) for r in self.by_source],
            "by_event_type": [asdict(r) for r in self.by_event_type],
            "top_customers": [asdict(r) for r in self.top_customers],
            "open_alerts": [
                {
                    k: (format_timestamp(v) if isinstance(v, datetime) else v)
                    for k, v in asdict(a).items()
                }
                for a in self.open_alerts
            ],
            "outbox": self.outbox,
            "last_cycle": self.last_cycle,
            "volumes": self.volumes,
            "reconciled_last_7_days": [asdict(r) for r in self.reconciled],
            "currency": self.currency,
            "bad_lines": {name: asdict(share) for name, share in self.bad_lines.items()},
        }


def rate_row(
    counts: OutcomeTally,
    *,
    label: str,
    exposure: Exposure | None = None,
    window: timedelta = timedelta(days=1),
) -> RateRow:
    """One group's row: the weighted leak rate and per-outcome rates, and its cost per day."""
    estimate = counts.leak_rate()
    exposure = exposure or Exposure()
    leaked = per_day(exposure.leaked_events, window)
    revenue = per_day(exposure.revenue_at_risk, window)
    return RateRow(
        group=label,
        counts={o.value: counts.counts.get(o, 0) for o in Outcome if counts.counts.get(o)},
        sampled=counts.total,
        decided=counts.decided,
        leaks=counts.leaks,
        leak_rate=estimate.rate,
        lower=estimate.interval.lo,
        upper=estimate.interval.hi,
        leaked_per_day=leaked.point if leaked is not None else None,
        rates={f"{o.value}_rate": r.rate for o, r in counts.outcome_rates().items()},
        revenue_at_risk_per_day=revenue.point if revenue is not None else None,
    )


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
        segments = segment_counts(session, since=since, until=now)
        customers = outcome_counts(session, since=since, until=now, by="customer_id")
        counted = volume_rows(session, since.date(), now.date())
        volumes = volumes_in(counted, since, now, now)
        bad_rows = fetch_bad_lines(session, since.date(), now.date())
        outbox = outbox_summary(session)
        reconciled = reconciled_totals(session, since=(now - RECONCILED_WINDOW).date())
        last = runs.latest_run(session)
    overall = pooled_counts(segments)[0]
    sources = pooled_counts(segments, "source")
    types = pooled_counts(segments, "event_type")
    volume_states = _volume_states(last)
    for name, per_day_events in _estimated_daily_volumes(last).items():
        # Partial counts would understate the volume: the draw's estimate sets the
        # level, the counts so far the mix of event types.
        volumes = with_source_total(volumes, name, per_day_events * (window / timedelta(days=1)))

    def row(counts: OutcomeCounts, within: Callable[[Segment], bool] | None) -> RateRow:
        exposure = (
            None
            if within is None
            else scope_exposure(segments, volumes, prices or {}, within=within)
        )
        return rate_row(counts, label=counts.group or "", exposure=exposure, window=window)

    customers.sort(key=lambda c: (-c.leaks, -c.total, c.group or ""))
    overall_row = row(overall, segments_of())
    overall_row.group = "all"
    return StatusView(
        now=now,
        window=window,
        overall=overall_row,
        by_source=[row(c, segments_of(source=c.group)) for c in sources],
        by_event_type=[row(c, segments_of(event_type=c.group)) for c in types],
        # No volume is counted per customer, so a customer's cost is unknown.
        top_customers=[row(c, None) for c in customers[:TOP_CUSTOMERS] if c.leaks],
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
            "started_at": format_timestamp(last.started_at),
            "finished_at": format_timestamp(last.finished_at) if last.finished_at else None,
            "sampled": last.sampled,
            "search_requests": last.search_requests,
            "search_rate_limited": last.search_rate_limited,
            "error": last.error,
        },
        currency=currency,
        volumes=volume_states,
        bad_lines=bad_line_shares(bad_rows, counted),
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
