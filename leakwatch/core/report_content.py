"""The weekly report's content: numbers, estimates and the summary sentence. Pure.

`build_content` takes what the store's aggregation queries returned (the `*Row`
dataclasses below), the prices and the week, and returns a `ReportContent` that every
renderer (Markdown, HTML, JSON, Slack) reads. No I/O, no clock: `generated_at` and
`now` are values.

Every number comes from the rules every view shares: rates (the leak rate and each
outcome's) from `core.stats.OutcomeTally.rate` — Horvitz–Thompson weighted, with a
Wilson interval on the Kish effective size — per (source, event type) segment and
pooled over all segments for the totals; volume over the week, leaked events and
revenue at risk from `core.exposure` (each segment at its own rate; totals add the
segments, bounds included, which is conservative).
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from leakwatch.core.events import (
    DECIDED_OUTCOMES,
    LEAKING_OUTCOMES,
    Outcome,
    format_timestamp,
)
from leakwatch.core.exposure import (
    Exposure,
    Segment,
    Volume,
    VolumeRow,
    scope_exposure,
    segment_exposure,
    volumes_in,
)
from leakwatch.core.formatting import (
    format_count,
    format_money,
    format_percent,
    format_rate_interval,
)
from leakwatch.core.pricing import Price
from leakwatch.core.reconcile import billed_ratio
from leakwatch.core.stats import Estimate, OutcomeTally, RateEstimate, rate_from_weight_sums
from leakwatch.core.text import code_text
from leakwatch.core.weeks import IsoWeek

CONFIDENCE = 0.95
# Below this many decided samples an interval is too wide to act on; the report says so.
FEW_SAMPLES = 100
# Below this many the summary gives no rate at all: "About 100.0%" of 7 samples misleads.
HANDFUL_SAMPLES = 30
TREND_WEEKS = 8
# Leaking outcomes in a fixed order, so tables and charts read the same every week.
LEAK_ORDER: tuple[Outcome, ...] = (
    Outcome.MISSING,
    Outcome.UNMATCHED_CUSTOMER,
    Outcome.UNMATCHED_METRIC,
    Outcome.DUPLICATE,
    Outcome.MISMATCH,
)
OUTCOME_ORDER: tuple[Outcome, ...] = (
    Outcome.MATCHED,
    *LEAK_ORDER,
    Outcome.PENDING,
    Outcome.EXPIRED,
    Outcome.ERROR,
)
OPENED_TRANSITIONS = frozenset({"fire", "fired", "firing", "open", "opened"})
RESOLVED_TRANSITIONS = frozenset({"resolve", "resolved"})


# --------------------------------------------------------------- query result rows


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """Sampled events of one week bucket, source, event type and outcome, aggregated."""

    week_index: int
    source: str
    event_type: str
    outcome: str
    count: int
    weight_sum: float
    weight_sq_sum: float
    # Σ weight·quantity over rows that carry a quantity, for per-unit prices.
    weighted_quantity_sum: float = 0.0


@dataclass(frozen=True, slots=True)
class BadLineRow:
    source: str
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class CycleRow:
    status: str
    runs: int
    search_requests: int
    search_rate_limited: int
    search_errors: int


@dataclass(frozen=True, slots=True)
class AlertTransitionRow:
    rule_name: str
    scope: str
    kind: str
    transition: str
    episode: int
    at: datetime


@dataclass(frozen=True, slots=True)
class CustomerRow:
    customer_id: str
    event_type: str
    decided: int
    leaking: int
    decided_weight: float
    leaking_weight: float
    decided_weight_sq: float


@dataclass(frozen=True, slots=True)
class LeakKeyRow:
    """Leaking samples of the report week per outcome, segment and customer id."""

    outcome: str
    source: str
    event_type: str
    customer_id: str
    count: int
    weight_sum: float


@dataclass(frozen=True, slots=True)
class Example:
    """A transaction id that proves a leaking outcome, as the query found it."""

    outcome: str
    transaction_id: str
    source: str
    event_type: str
    customer_id: str
    event_timestamp: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class BilledDayRow:
    """One reconciled customer × billable metric × UTC day (from the store)."""

    day: date
    customer: str
    metric: str
    expected: float
    billed: float | None
    status: str


@dataclass(frozen=True, slots=True)
class ReportInputs:
    """Everything the queries return for one report: the week and the 8 before it."""

    weeks: tuple[IsoWeek, ...]
    outcome_rows: Sequence[OutcomeRow]
    volume_rows: Sequence[VolumeRow]
    bad_lines: Sequence[BadLineRow]
    cycles: Sequence[CycleRow]
    alert_transitions: Sequence[AlertTransitionRow]
    top_customers: Sequence[CustomerRow]
    leak_keys: Sequence[LeakKeyRow]
    examples: Sequence[Example]
    # Sources whose tail was still counting their history at the week's last cycle.
    volumes_estimated: Sequence[str] = ()
    reconciled: Sequence[BilledDayRow] = ()


# ------------------------------------------------------------------ report content


@dataclass(frozen=True, slots=True)
class OutcomeStat:
    outcome: str
    count: int
    # Share of decided samples (weighted); None for outcomes kept apart from rates.
    rate: RateEstimate | None


@dataclass(frozen=True, slots=True)
class Cause:
    """Why a segment leaked, as far as the samples tell."""

    outcome: str
    share_of_leaks: float
    description: str
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class SegmentReport:
    source: str
    event_type: str
    sampled: int
    decided: int
    leaking: int
    outcomes: list[OutcomeStat]
    leak_rate: RateEstimate | None
    volume_events: float | None
    estimated_leaked_events: Estimate | None
    price: str | None
    leaked_quantity: Estimate | None
    revenue_at_risk: Estimate | None
    previous_leak_rate: RateEstimate | None
    leak_rate_change_pp: float | None
    previous_estimated_leaked_events: float | None
    previous_revenue_at_risk: float | None
    trend_leak_rate: list[float | None]
    main_cause: Cause | None
    few_samples: bool


@dataclass(frozen=True, slots=True)
class TrendPoint:
    week: str
    sampled: int
    decided: int
    leak_rate: RateEstimate | None
    # Share of decided samples per leaking outcome (volume-weighted across segments).
    by_outcome: dict[str, float]


@dataclass(frozen=True, slots=True)
class Totals:
    sampled: int
    decided: int
    leaking: int
    leak_rate: RateEstimate | None
    volume_events: float | None
    estimated_leaked_events: Estimate | None
    revenue_at_risk: Estimate | None
    previous_leak_rate: RateEstimate | None
    previous_estimated_leaked_events: float | None
    previous_revenue_at_risk: float | None


@dataclass(frozen=True, slots=True)
class CustomerStat:
    customer_id: str
    event_type: str
    decided: int
    leaking: int
    leak_rate: RateEstimate | None


@dataclass(frozen=True, slots=True)
class BadLineStat:
    source: str
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class Health:
    bad_lines: list[BadLineStat]
    bad_lines_total: int
    cycles_run: int
    cycles_failed: int
    cycles_expected: int | None
    cycles_missed: int | None
    search_requests: int
    search_rate_limited: int
    search_errors: int


@dataclass(frozen=True, slots=True)
class BilledDay:
    """Expected and billed for one metric on one UTC day, summed over customers."""

    day: date
    metric: str
    expected: float
    billed: float
    billed_ratio: float | None


@dataclass(frozen=True, slots=True)
class BilledGap:
    day: date
    customer: str
    metric: str
    expected: float
    billed: float
    difference: float
    billed_ratio: float | None


@dataclass(frozen=True, slots=True)
class BilledVsSent:
    """The week's totals reconciliation: exact, for the metrics leakwatch can reproduce."""

    by_day: list[BilledDay]
    biggest_gaps: list[BilledGap]
    flagged: int
    rows: int


@dataclass(frozen=True, slots=True)
class ReportContent:
    """One week's report, ready for any renderer."""

    week: str
    timezone: str
    start_utc: datetime
    end_utc: datetime
    # Local wall-clock dates of Monday and Sunday, for titles.
    first_day: date
    last_day: date
    generated_at: datetime
    currency: str
    has_data: bool
    summary: str
    totals: Totals
    segments: list[SegmentReport]
    trend: list[TrendPoint]
    top_customers: list[CustomerStat]
    alerts: list[AlertTransitionRow]
    alerts_opened: int
    alerts_resolved: int
    health: Health
    examples: dict[str, list[Example]]
    notes: list[str] = field(default_factory=list)
    billed_vs_sent: BilledVsSent | None = None
    # The week had not ended when the report was made: its data runs through `through_day`
    # (the local date of `generated_at`).
    partial: bool = False
    through_day: date | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: instants in RFC 3339 with `Z`, dates as `YYYY-MM-DD`."""
        result: dict[str, Any] = _jsonable(asdict(self))
        return result


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------ building


def _tally_of(rows: Iterable[OutcomeRow]) -> OutcomeTally:
    tally = OutcomeTally()
    for row in rows:
        try:
            outcome = Outcome(row.outcome)
        except ValueError:
            continue
        tally.add(outcome, row.count, row.weight_sum, row.weight_sq_sum, row.weighted_quantity_sum)
    return tally


def _rate(tally: OutcomeTally, outcomes: Iterable[Outcome]) -> RateEstimate | None:
    """The one weighted estimator (`OutcomeTally.rate`); None when nothing is decided."""
    return tally.rate(outcomes, CONFIDENCE) if tally.decided > 0 else None


@dataclass(frozen=True, slots=True)
class _SegmentWeek:
    leak_rate: RateEstimate | None
    exposure: Exposure
    volume: Volume | None


def _segment_week(tally: OutcomeTally, volume: Volume | None, price: Price | None) -> _SegmentWeek:
    return _SegmentWeek(
        _rate(tally, LEAKING_OUTCOMES),
        segment_exposure(tally, volume, price, confidence=CONFIDENCE),
        volume,
    )


def build_content(
    inputs: ReportInputs,
    *,
    timezone: ZoneInfo,
    prices: Mapping[str, Price],
    generated_at: datetime,
    checks_every: timedelta | None,
    currency: str = "$",
) -> ReportContent:
    """Turn aggregated query results into the report for the last week in `inputs.weeks`."""
    weeks = inputs.weeks
    report_index = len(weeks) - 1
    week = weeks[report_index]
    start_utc, end_utc = week.bounds_utc(timezone)

    rows_by_week: list[dict[Segment, list[OutcomeRow]]] = [{} for _ in weeks]
    for row in inputs.outcome_rows:
        if 0 <= row.week_index < len(weeks):
            key = (row.source, row.event_type)
            rows_by_week[row.week_index].setdefault(key, []).append(row)
    sums_by_week = [{k: _tally_of(v) for k, v in w.items()} for w in rows_by_week]
    volumes_by_week = [
        volumes_in(inputs.volume_rows, *w.bounds_utc(timezone), now=generated_at) for w in weeks
    ]

    current = sums_by_week[report_index]
    previous = sums_by_week[report_index - 1] if report_index >= 1 else {}
    leak_keys = list(inputs.leak_keys)

    segments: list[SegmentReport] = []
    for key in sorted(current):
        source, event_type = key
        sums = current[key]
        price = prices.get(event_type)
        now_week = _segment_week(sums, volumes_by_week[report_index].get(key), price)
        prev_sums = previous.get(key)
        prev_week = (
            _segment_week(prev_sums, volumes_by_week[report_index - 1].get(key), price)
            if prev_sums is not None
            else None
        )
        prev_rate = prev_week.leak_rate if prev_week is not None else None
        change_pp = (
            (now_week.leak_rate.rate - prev_rate.rate) * 100
            if now_week.leak_rate is not None and prev_rate is not None
            else None
        )
        trend: list[float | None] = []
        for week_sums in sums_by_week[-TREND_WEEKS:]:
            seg = week_sums.get(key)
            rate = _rate(seg, LEAKING_OUTCOMES) if seg is not None else None
            trend.append(rate.rate if rate is not None else None)
        segments.append(
            SegmentReport(
                source=source,
                event_type=event_type,
                sampled=sums.total,
                decided=sums.decided,
                leaking=sums.leaks,
                outcomes=[
                    OutcomeStat(
                        o.value,
                        sums.counts.get(o, 0),
                        _rate(sums, [o]) if o in DECIDED_OUTCOMES else None,
                    )
                    for o in OUTCOME_ORDER
                ],
                leak_rate=now_week.leak_rate,
                volume_events=now_week.volume.events if now_week.volume else None,
                estimated_leaked_events=now_week.exposure.leaked_events,
                price=price.describe(currency) if price is not None else None,
                leaked_quantity=now_week.exposure.leaked_quantity,
                revenue_at_risk=now_week.exposure.revenue_at_risk,
                previous_leak_rate=prev_rate,
                leak_rate_change_pp=change_pp,
                previous_estimated_leaked_events=(
                    prev_week.exposure.leaked_events.point
                    if prev_week is not None and prev_week.exposure.leaked_events is not None
                    else None
                ),
                previous_revenue_at_risk=(
                    prev_week.exposure.revenue_at_risk.point
                    if prev_week is not None and prev_week.exposure.revenue_at_risk is not None
                    else None
                ),
                trend_leak_rate=trend,
                main_cause=_main_cause(sums, source, event_type, leak_keys),
                few_samples=sums.decided < FEW_SAMPLES,
            )
        )

    totals = _totals(
        current,
        previous,
        volumes_by_week[report_index],
        volumes_by_week[report_index - 1] if report_index >= 1 else {},
        prices,
    )
    trend_points = [
        _trend_point(str(w), s)
        for w, s in list(zip(weeks, sums_by_week, strict=True))[-TREND_WEEKS:]
    ]
    # A week still in progress expects only the cycles due so far.
    health = _health(inputs, start_utc, min(end_utc, generated_at), checks_every)
    alerts = [a for a in sorted(inputs.alert_transitions, key=lambda a: (a.at, a.rule_name))]
    examples: dict[str, list[Example]] = {}
    for ex in inputs.examples:
        examples.setdefault(ex.outcome, []).append(ex)
    examples = {o.value: examples[o.value] for o in LEAK_ORDER if o.value in examples}
    customers = [
        CustomerStat(
            c.customer_id,
            c.event_type,
            c.decided,
            c.leaking,
            rate_from_weight_sums(
                c.leaking,
                c.decided,
                c.leaking_weight,
                c.decided_weight,
                c.decided_weight_sq,
                CONFIDENCE,
            )
            if c.decided > 0 and c.decided_weight > 0
            else None,
        )
        for c in inputs.top_customers
    ]
    notes = _notes(segments, prices, inputs.volumes_estimated)
    first_day = week.monday
    has_data = totals.sampled > 0
    partial = start_utc <= generated_at < end_utc
    content = ReportContent(
        week=str(week),
        timezone=timezone.key,
        start_utc=start_utc,
        end_utc=end_utc,
        first_day=first_day,
        last_day=first_day + timedelta(days=6),
        generated_at=generated_at,
        currency=currency,
        has_data=has_data,
        summary="",
        totals=totals,
        segments=segments,
        trend=trend_points,
        top_customers=customers,
        alerts=alerts,
        alerts_opened=sum(1 for a in alerts if a.transition in OPENED_TRANSITIONS),
        alerts_resolved=sum(1 for a in alerts if a.transition in RESOLVED_TRANSITIONS),
        health=health,
        examples=examples,
        notes=notes,
        billed_vs_sent=billed_vs_sent(inputs.reconciled),
        partial=partial,
        through_day=generated_at.astimezone(timezone).date() if partial else None,
    )
    summary = summarize(content, is_last_week=week == IsoWeek.last_complete(generated_at, timezone))
    return _replace_summary(content, summary)


BIGGEST_GAPS = 5


def billed_vs_sent(rows: Sequence[BilledDayRow]) -> BilledVsSent | None:
    """Sum reconciled rows per metric and day; the biggest flagged gaps, largest first."""
    if not rows:
        return None
    days: dict[tuple[date, str], list[float]] = {}
    for row in rows:
        slot = days.setdefault((row.day, row.metric), [0.0, 0.0])
        slot[0] += row.expected
        slot[1] += row.billed or 0.0
    flagged = [r for r in rows if r.status != "ok"]
    flagged.sort(key=lambda r: (-abs((r.billed or 0.0) - r.expected), r.day, r.customer))
    return BilledVsSent(
        by_day=[
            BilledDay(day, metric, expected, billed, billed_ratio(expected, billed))
            for (day, metric), (expected, billed) in sorted(days.items())
        ],
        biggest_gaps=[
            BilledGap(
                r.day,
                r.customer,
                r.metric,
                r.expected,
                r.billed or 0.0,
                (r.billed or 0.0) - r.expected,
                billed_ratio(r.expected, r.billed),
            )
            for r in flagged[:BIGGEST_GAPS]
        ],
        flagged=len(flagged),
        rows=len(rows),
    )


def _replace_summary(content: ReportContent, summary: str) -> ReportContent:
    return replace(content, summary=summary)


def _pooled(sums: Mapping[Segment, OutcomeTally]) -> OutcomeTally:
    """All segments' samples as one tally: weights are 1 / inclusion probability in every
    source, so they add across sources and the pooled rate is the same estimator."""
    pooled = OutcomeTally()
    for tally in sums.values():
        pooled.merge(tally)
    return pooled


def _trend_point(week: str, sums: Mapping[Segment, OutcomeTally]) -> TrendPoint:
    pooled = _pooled(sums)
    return TrendPoint(
        week=week,
        sampled=pooled.total,
        decided=pooled.decided,
        leak_rate=_rate(pooled, LEAKING_OUTCOMES),
        by_outcome={o.value: (pooled.rate([o]).rate if pooled.decided else 0.0) for o in LEAK_ORDER}
        if pooled.decided
        else {},
    )


def _totals(
    current: Mapping[Segment, OutcomeTally],
    previous: Mapping[Segment, OutcomeTally],
    volumes: Mapping[Segment, Volume],
    previous_volumes: Mapping[Segment, Volume],
    prices: Mapping[str, Price],
) -> Totals:
    now_week = scope_exposure(current, volumes, prices, confidence=CONFIDENCE)
    prev_week = scope_exposure(previous, previous_volumes, prices, confidence=CONFIDENCE)
    pooled = _pooled(current)
    known_volumes = [volumes[k].events for k in current if k in volumes]
    return Totals(
        sampled=pooled.total,
        decided=pooled.decided,
        leaking=pooled.leaks,
        leak_rate=_rate(pooled, LEAKING_OUTCOMES),
        volume_events=sum(known_volumes) if known_volumes else None,
        estimated_leaked_events=now_week.leaked_events,
        revenue_at_risk=now_week.revenue_at_risk,
        previous_leak_rate=_rate(_pooled(previous), LEAKING_OUTCOMES),
        previous_estimated_leaked_events=(
            prev_week.leaked_events.point if prev_week.leaked_events else None
        ),
        previous_revenue_at_risk=(
            prev_week.revenue_at_risk.point if prev_week.revenue_at_risk else None
        ),
    )


# What each leaking outcome means, in the words the report and alerts both use.
CAUSE_TEXT = {
    Outcome.MISSING.value: "events never reached Metronome",
    Outcome.UNMATCHED_CUSTOMER.value: "events for a customer id Metronome does not know",
    Outcome.UNMATCHED_METRIC.value: "events that match no billable metric",
    Outcome.DUPLICATE.value: "events discarded as duplicates of different events",
    Outcome.MISMATCH.value: "Metronome's copy differs from what was sent",
}


def _main_cause(
    sums: OutcomeTally, source: str, event_type: str, leak_keys: Sequence[LeakKeyRow]
) -> Cause | None:
    """The dominant leaking outcome of a segment, with its most frequent customer id."""
    leak_weight = sums.weight(LEAKING_OUTCOMES)
    if sums.leaks == 0 or leak_weight <= 0:
        return None
    top = max(
        (o for o in LEAK_ORDER if sums.counts.get(o, 0) > 0),
        key=lambda o: (sums.weights.get(o, 0.0), sums.counts.get(o, 0)),
    )
    share = sums.weights.get(top, 0.0) / leak_weight
    outcome = top.value
    by_customer: dict[str, float] = defaultdict(float)
    for row in leak_keys:
        if row.outcome == outcome and row.source == source and row.event_type == event_type:
            by_customer[row.customer_id] += row.weight_sum
    customer = max(by_customer, key=lambda c: (by_customer[c], c)) if by_customer else None
    customer_share = by_customer[customer] / sum(by_customer.values()) if customer else 0.0
    if outcome == Outcome.UNMATCHED_CUSTOMER.value and customer is not None:
        description = f"unknown customer alias `{code_text(customer)}`"
        if customer_share < 0.999:
            description += f" ({format_percent(customer_share)} of these; others too)"
    elif customer is not None and customer_share >= 0.5:
        description = f"{CAUSE_TEXT[outcome]} (mostly customer `{code_text(customer)}`)"
    else:
        description = CAUSE_TEXT[outcome]
    return Cause(outcome, share, description, customer)


def _health(
    inputs: ReportInputs, start_utc: datetime, end_utc: datetime, checks_every: timedelta | None
) -> Health:
    bad = sorted(
        (BadLineStat(b.source, b.reason, b.count) for b in inputs.bad_lines if b.count > 0),
        key=lambda b: (-b.count, b.source, b.reason),
    )
    runs = sum(c.runs for c in inputs.cycles)
    expected = (
        max(0, int((end_utc - start_utc) / checks_every))
        if checks_every is not None and checks_every > timedelta(0)
        else None
    )
    return Health(
        bad_lines=bad,
        bad_lines_total=sum(b.count for b in bad),
        cycles_run=runs,
        cycles_failed=sum(c.runs for c in inputs.cycles if c.status == "failed"),
        cycles_expected=expected,
        cycles_missed=max(0, expected - runs) if expected is not None else None,
        search_requests=sum(c.search_requests for c in inputs.cycles),
        search_rate_limited=sum(c.search_rate_limited for c in inputs.cycles),
        search_errors=sum(c.search_errors for c in inputs.cycles),
    )


def _notes(
    segments: Sequence[SegmentReport],
    prices: Mapping[str, Price],
    volumes_estimated: Sequence[str] = (),
) -> list[str]:
    notes = [
        "Samples count in the week of their event timestamp. Rates are leaking / decided "
        "samples (pending, expired and errored lookups excluded), weighted by inverse "
        "inclusion probability, with 95% Wilson intervals.",
        "Volume is counted per UTC day; days straddling the week's start or end are "
        "split by the hours inside the week (assumes even traffic within those days).",
    ]
    few = [
        f"{s.source}/{code_text(s.event_type)}" for s in segments if s.few_samples and s.decided > 0
    ]
    if few:
        notes.append(
            f"Fewer than {FEW_SAMPLES} decided samples for {', '.join(few)}: "
            "intervals are wide, read the point estimates with care."
        )
    no_volume = [
        f"{s.source}/{code_text(s.event_type)}" for s in segments if s.volume_events is None
    ]
    if no_volume:
        notes.append(
            f"No volume counts for {', '.join(no_volume)}: leaked events cannot be estimated."
        )
    if volumes_estimated:
        names = ", ".join(code_text(name) for name in sorted(volumes_estimated))
        notes.append(
            f"Volumes of {names} are estimated, not counted: the tail was still reading "
            "their history at the week's last cycle, so leaked events are understated."
        )
    unpriced = sorted({code_text(s.event_type) for s in segments if s.event_type not in prices})
    if unpriced:
        notes.append(f"No price configured for {', '.join(unpriced)}: no revenue estimate.")
    return notes


# ------------------------------------------------------------------------ wording


def partial_words(content: ReportContent) -> str:
    """`partial week, through Tue 01 Dec` for a week not yet over; empty otherwise."""
    if not content.partial or content.through_day is None:
        return ""
    return f"partial week, through {content.through_day:%a %d %b}"


def short_title(content: ReportContent) -> str:
    """`Leakage report 2026-W49`, marked when the week is not over (page and Slack titles)."""
    return f"Leakage report {content.week}" + (" (partial week)" if content.partial else "")


def week_label(content: ReportContent) -> str:
    partial = partial_words(content)
    return (
        f"{content.week} ({content.first_day:%a %d %b} – {content.last_day:%a %d %b %Y}, "
        f"{content.timezone}{'; ' + partial if partial else ''})"
    )


def headline_segment(segments: Sequence[SegmentReport]) -> SegmentReport | None:
    """The segment that matters most: most revenue at risk, else most leaked events."""
    leaking = [s for s in segments if s.leaking > 0 and s.leak_rate is not None]
    if not leaking:
        return None

    def key(s: SegmentReport) -> tuple[float, float, float, int]:
        return (
            s.revenue_at_risk.point if s.revenue_at_risk is not None else -1.0,
            s.estimated_leaked_events.point if s.estimated_leaked_events is not None else -1.0,
            s.leak_rate.rate if s.leak_rate is not None else -1.0,
            s.leaking,
        )

    return max(leaking, key=key)


def _change_words(segment: SegmentReport) -> str:
    """Call a week-over-week change up or down only when the two intervals do not overlap.

    Point estimates from a few hundred samples move by chance; a reader told "up" will
    act on it, so an overlap is reported as what it is.
    """
    current, previous = segment.leak_rate, segment.previous_leak_rate
    assert current is not None and previous is not None
    if current.interval.lo > previous.interval.hi:
        return "clearly up"
    if current.interval.hi < previous.interval.lo:
        return "clearly down"
    return "no clear change"


def _clearly_worse_segment(
    headline: SegmentReport, others: Sequence[SegmentReport]
) -> SegmentReport | None:
    """A segment leaking at a rate clearly above the headline's (no price, few events).

    The headline follows the money; a segment without a price, or with little volume,
    can still be the worst-hit part of billing, and the summary must not hide it.
    """
    assert headline.leak_rate is not None
    candidates = [
        s
        for s in others
        if s.leak_rate is not None and s.leak_rate.interval.lo > headline.leak_rate.interval.hi
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda s: s.leak_rate.interval.lo if s.leak_rate else 0.0)


def summarize(content: ReportContent, *, is_last_week: bool) -> str:
    """The plain-language paragraph at the top of every format."""
    if content.partial:
        when = f"this week so far ({partial_words(content)})"
    elif is_last_week:
        when = "last week"
    else:
        when = f"in week {content.week}"
    health = content.health
    totals = content.totals
    cycles = (
        f"{health.cycles_run} of {health.cycles_expected} expected check cycles ran"
        if health.cycles_expected is not None
        else f"{health.cycles_run} check cycles ran"
    )
    if not content.has_data:
        return (
            f"No data for {week_label(content)}: no sampled event has its timestamp in "
            f"this week, so this report cannot say whether usage went unbilled. "
            f"{cycles[0].upper()}{cycles[1:]}."
        )
    if totals.decided == 0:
        return (
            f"No verdict yet for {week_label(content)}: {totals.sampled:,} events were "
            "sampled but none is decided (still pending, expired or failed lookups)."
        )
    headline = headline_segment(content.segments)
    if headline is None:
        upper = totals.leak_rate.interval.hi if totals.leak_rate is not None else 1.0
        return (
            f"No unbilled usage found {when}: none of {totals.decided:,} checked events "
            f"leaked; the leak rate is below {format_percent(upper)} (95% upper bound)."
        )
    assert headline.leak_rate is not None
    segment_name = f"{code_text(headline.event_type)} events"
    if len({s.source for s in content.segments}) > 1:
        segment_name += f" from `{headline.source}`"
    if headline.decided < HANDFUL_SAMPLES:
        # A rate from a handful of samples reads as news ("About 100.0%"); the count first.
        sentence = (
            f"Only {headline.decided:,} {_samples(headline.decided)} of {segment_name} "
            f"decided {when}: too few to estimate a rate; {headline.leaking:,} of them leaked."
        )
    else:
        lead = (
            f"Based on only {headline.decided:,} decided samples, about"
            if headline.few_samples
            else "About"
        )
        amounts = []
        if headline.estimated_leaked_events is not None:
            amounts.append(f"≈ {format_count(headline.estimated_leaked_events.point)} events")
        if headline.revenue_at_risk is not None:
            amounts.append(
                f"≈ {format_money(headline.revenue_at_risk.point, content.currency)} at list price"
            )
        sentence = (
            f"{lead} {format_rate_interval(headline.leak_rate)} of {segment_name} were not "
            f"billed {when}" + (": " + ", ".join(amounts) if amounts else "") + "."
        )
    if headline.main_cause is not None:
        sentence += f" Main cause: {headline.main_cause.description}."
    others = [s for s in content.segments if s.leaking > 0 and s is not headline]
    if others and totals.estimated_leaked_events is not None:
        total = f"≈ {format_count(totals.estimated_leaked_events.point)} events"
        if totals.revenue_at_risk is not None:
            total += f", ≈ {format_money(totals.revenue_at_risk.point, content.currency)}"
        sentence += f" All event types together: {total}."
    worse = _clearly_worse_segment(headline, others)
    if worse is not None and worse.leak_rate is not None:
        sentence += (
            f" Worst rate: {format_rate_interval(worse.leak_rate)} of "
            f"{code_text(worse.event_type)} events"
        )
        if len({s.source for s in content.segments}) > 1:
            sentence += f" from `{worse.source}`"
        if worse.main_cause is not None:
            sentence += f" ({worse.main_cause.description})"
        sentence += "."
    previous = headline.previous_leak_rate
    if previous is not None and headline.leak_rate_change_pp is not None:
        sentence += (
            f" The week before: {format_rate_interval(previous)}, {_change_words(headline)}."
        )
    return sentence


def _samples(count: int) -> str:
    return "sample" if count == 1 else "samples"
