"""The weekly report's questions, answered by aggregation in the database. I/O.

Every query groups in SQL and returns a handful of rows per segment, never the sampled
events themselves, so a report over millions of samples stays cheap. The SQL is plain
(CASE, SUM, GROUP BY, ROW_NUMBER) and runs the same on Postgres and SQLite.

Samples belong to the week of their *event timestamp* (the usage that went unbilled
that week), not of when leakwatch sampled them. Week buckets are computed with a CASE
over the weeks' UTC bounds, so DST-shortened weeks are exact.
"""

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, literal, select
from sqlmodel import Session, col

from leakwatch.core.events import DECIDED_OUTCOMES, LEAKING_OUTCOMES
from leakwatch.core.report_content import (
    TREND_WEEKS,
    AlertTransitionRow,
    BadLineRow,
    BilledDayRow,
    CustomerRow,
    CycleRow,
    Example,
    LeakKeyRow,
    OutcomeRow,
    ReportInputs,
)
from leakwatch.core.weeks import IsoWeek, utc_days_touching, week_utc_dates
from leakwatch.store.billing import load_reconciled
from leakwatch.store.models import (
    Alert,
    AlertTransition,
    BadLineCount,
    SampledEvent,
    SamplingRun,
)
from leakwatch.store.queries import volume_rows

EXAMPLES_PER_OUTCOME = 3
TOP_CUSTOMERS = 10

_LEAKING = sorted(o.value for o in LEAKING_OUTCOMES)
_DECIDED = sorted(o.value for o in DECIDED_OUTCOMES)


def _in_range(column: Any, start: datetime, end: datetime) -> Any:
    return and_(column >= start, column < end)


def fetch_outcome_rows(
    session: Session, bounds: Sequence[tuple[datetime, datetime]]
) -> list[OutcomeRow]:
    """Sampled events per week bucket (index into `bounds`), source, type and outcome."""
    ts = col(SampledEvent.event_timestamp)
    weight = col(SampledEvent.weight)
    bucket = case(
        *[(_in_range(ts, start, end), literal(i)) for i, (start, end) in enumerate(bounds)],
        else_=literal(-1),
    ).label("bucket")
    # The bucket is labelled in a subquery and grouped outside it: Postgres will not
    # group by a CASE whose bound parameters are rendered twice.
    inner = (
        select(
            bucket,
            col(SampledEvent.source).label("source"),
            col(SampledEvent.event_type).label("event_type"),
            col(SampledEvent.outcome).label("outcome"),
            weight.label("weight"),
            (weight * func.coalesce(col(SampledEvent.quantity), 0.0)).label("wq"),
        )
        .where(_in_range(ts, bounds[0][0], bounds[-1][1]))
        .subquery()
    )
    query = (
        select(
            inner.c.bucket,
            inner.c.source,
            inner.c.event_type,
            inner.c.outcome,
            func.count(),
            func.coalesce(func.sum(inner.c.weight), 0.0),
            func.coalesce(func.sum(inner.c.weight * inner.c.weight), 0.0),
            func.coalesce(func.sum(inner.c.wq), 0.0),
        )
        .where(inner.c.bucket >= 0)
        .group_by(inner.c.bucket, inner.c.source, inner.c.event_type, inner.c.outcome)
    )
    return [
        OutcomeRow(
            week_index=int(b),
            source=str(s),
            event_type=str(t),
            outcome=str(o),
            count=int(n),
            weight_sum=float(w),
            weight_sq_sum=float(w2),
            weighted_quantity_sum=float(wq),
        )
        for b, s, t, o, n, w, w2, wq in session.execute(query)
    ]


def fetch_bad_lines(session: Session, first_day: date, last_day: date) -> list[BadLineRow]:
    day = col(BadLineCount.day)
    query = (
        select(
            col(BadLineCount.source),
            col(BadLineCount.reason),
            func.coalesce(func.sum(col(BadLineCount.count)), 0),
        )
        .where(day >= first_day, day <= last_day)
        .group_by(col(BadLineCount.source), col(BadLineCount.reason))
    )
    return [BadLineRow(str(s), str(r), int(n)) for s, r, n in session.execute(query)]


def fetch_cycles(session: Session, start: datetime, end: datetime) -> list[CycleRow]:
    """Check cycles started in the week, per final status, with what they spent."""
    query = (
        select(
            col(SamplingRun.status),
            func.count(),
            func.coalesce(func.sum(col(SamplingRun.search_requests)), 0),
            func.coalesce(func.sum(col(SamplingRun.search_rate_limited)), 0),
            func.coalesce(func.sum(col(SamplingRun.search_errors)), 0),
        )
        .where(_in_range(col(SamplingRun.started_at), start, end))
        .group_by(col(SamplingRun.status))
    )
    return [
        CycleRow(str(s), int(n), int(r), int(rl), int(e))
        for s, n, r, rl, e in session.execute(query)
    ]


def fetch_volumes_estimated(session: Session, start: datetime, end: datetime) -> tuple[str, ...]:
    """Sources whose volumes the week's last cycle still estimated (tail catching up)."""
    last = session.execute(
        select(col(SamplingRun.summary))
        .where(_in_range(col(SamplingRun.started_at), start, end))
        .order_by(col(SamplingRun.started_at).desc())
        .limit(1)
    ).scalar_one_or_none()
    sources = last.get("sources") if isinstance(last, dict) else None
    if not isinstance(sources, dict):
        return ()
    return tuple(
        sorted(
            name
            for name, report in sources.items()
            if isinstance(report, dict) and report.get("volumes") == "estimated"
        )
    )


def fetch_alert_transitions(
    session: Session, start: datetime, end: datetime
) -> list[AlertTransitionRow]:
    query = (
        select(
            col(Alert.rule_name),
            col(Alert.scope),
            col(Alert.kind),
            col(AlertTransition.transition),
            col(AlertTransition.episode),
            col(AlertTransition.at),
        )
        .join(Alert, col(Alert.id) == col(AlertTransition.alert_id))
        .where(_in_range(col(AlertTransition.at), start, end))
        .order_by(col(AlertTransition.at), col(AlertTransition.id))
    )
    return [
        AlertTransitionRow(str(r), str(s), str(k), str(t), int(e), at)
        for r, s, k, t, e, at in session.execute(query)
    ]


def fetch_top_customers(
    session: Session, start: datetime, end: datetime, limit: int = TOP_CUSTOMERS
) -> list[CustomerRow]:
    """Customers with the most (weighted) leaking samples in the week."""
    is_leak = col(SampledEvent.outcome).in_(_LEAKING)
    is_decided = col(SampledEvent.outcome).in_(_DECIDED)
    weight = col(SampledEvent.weight)
    leaking_weight = func.sum(case((is_leak, weight), else_=0.0))
    query = (
        select(
            col(SampledEvent.customer_id),
            col(SampledEvent.event_type),
            func.sum(case((is_decided, 1), else_=0)),
            func.sum(case((is_leak, 1), else_=0)),
            func.sum(case((is_decided, weight), else_=0.0)),
            leaking_weight,
            func.sum(case((is_decided, weight * weight), else_=0.0)),
        )
        .where(_in_range(col(SampledEvent.event_timestamp), start, end))
        .group_by(col(SampledEvent.customer_id), col(SampledEvent.event_type))
        .having(func.sum(case((is_leak, 1), else_=0)) > 0)
        .order_by(
            leaking_weight.desc(), col(SampledEvent.customer_id), col(SampledEvent.event_type)
        )
        .limit(limit)
    )
    return [
        CustomerRow(str(c), str(t), int(d), int(lk), float(dw), float(lw), float(dw2))
        for c, t, d, lk, dw, lw, dw2 in session.execute(query)
    ]


def fetch_leak_keys(session: Session, start: datetime, end: datetime) -> list[LeakKeyRow]:
    """Leaking samples per outcome, segment and customer: the evidence for main causes."""
    query = (
        select(
            col(SampledEvent.outcome),
            col(SampledEvent.source),
            col(SampledEvent.event_type),
            col(SampledEvent.customer_id),
            func.count(),
            func.coalesce(func.sum(col(SampledEvent.weight)), 0.0),
        )
        .where(
            _in_range(col(SampledEvent.event_timestamp), start, end),
            col(SampledEvent.outcome).in_(_LEAKING),
        )
        .group_by(
            col(SampledEvent.outcome),
            col(SampledEvent.source),
            col(SampledEvent.event_type),
            col(SampledEvent.customer_id),
        )
    )
    return [
        LeakKeyRow(str(o), str(s), str(t), str(c), int(n), float(w))
        for o, s, t, c, n, w in session.execute(query)
    ]


def fetch_examples(
    session: Session, start: datetime, end: datetime, per_outcome: int = EXAMPLES_PER_OUTCOME
) -> list[Example]:
    """The latest few leaking transaction ids per outcome in the week."""
    rank = (
        func.row_number()
        .over(
            partition_by=col(SampledEvent.outcome),
            order_by=(col(SampledEvent.event_timestamp).desc(), col(SampledEvent.id).desc()),
        )
        .label("rank")
    )
    inner = (
        select(
            col(SampledEvent.outcome).label("outcome"),
            col(SampledEvent.transaction_id).label("transaction_id"),
            col(SampledEvent.source).label("source"),
            col(SampledEvent.event_type).label("event_type"),
            col(SampledEvent.customer_id).label("customer_id"),
            col(SampledEvent.event_timestamp).label("event_timestamp"),
            col(SampledEvent.reason).label("reason"),
            rank,
        )
        .where(
            _in_range(col(SampledEvent.event_timestamp), start, end),
            col(SampledEvent.outcome).in_(_LEAKING),
        )
        .subquery()
    )
    query = (
        select(
            inner.c.outcome,
            inner.c.transaction_id,
            inner.c.source,
            inner.c.event_type,
            inner.c.customer_id,
            inner.c.event_timestamp,
            inner.c.reason,
        )
        .where(inner.c.rank <= per_outcome)
        .order_by(inner.c.outcome, inner.c.rank)
    )
    return [
        Example(str(o), str(t), str(s), str(e), str(c), ts, str(r))
        for o, t, s, e, c, ts, r in session.execute(query)
    ]


def fetch_report_inputs(
    session: Session, week: IsoWeek, timezone: ZoneInfo, trend_weeks: int = TREND_WEEKS
) -> ReportInputs:
    """Run every report query for `week` and the weeks of its trend."""
    weeks = tuple(week.shifted(-i) for i in reversed(range(trend_weeks)))
    bounds = [w.bounds_utc(timezone) for w in weeks]
    start, end = bounds[-1]
    first_volume_day, last_volume_day = utc_days_touching(bounds[0][0], bounds[-1][1])
    first_bad_day, last_bad_day = week_utc_dates(week)
    return ReportInputs(
        weeks=weeks,
        outcome_rows=fetch_outcome_rows(session, bounds),
        volume_rows=volume_rows(session, first_volume_day, last_volume_day),
        bad_lines=fetch_bad_lines(session, first_bad_day, last_bad_day),
        cycles=fetch_cycles(session, start, end),
        alert_transitions=fetch_alert_transitions(session, start, end),
        top_customers=fetch_top_customers(session, start, end),
        leak_keys=fetch_leak_keys(session, start, end),
        examples=fetch_examples(session, start, end),
        volumes_estimated=fetch_volumes_estimated(session, start, end),
        reconciled=fetch_reconciled(session, first_bad_day, last_bad_day),
    )


def fetch_reconciled(session: Session, first_day: date, last_day: date) -> list[BilledDayRow]:
    """Reconciled customer × metric × UTC days from `first_day` to `last_day` inclusive."""
    return [
        BilledDayRow(
            day=row.day,
            customer=row.customer_name or row.customer_id,
            metric=row.metric_name,
            expected=row.expected,
            billed=row.billed,
            status=row.status,
        )
        for row in load_reconciled(session, since=first_day, until=last_day + timedelta(days=1))
    ]
