"""What leakwatch learned about billing, and the reconciled days. I/O (database).

Metric definitions and customer aliases are learned from search answers (each lookup
refreshes them) and read back by reconciliation. Reconciled days are written by
upsert on their natural key (customer × metric × day), so a reconciliation run twice
— by the daemon and by hand — stays one row per key; a settled day is never rewritten.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import case, delete, func
from sqlalchemy import select as sql_select
from sqlmodel import Session, col, select

from leakwatch.core.reconcile import (
    CustomerAlias,
    Gap,
    LearnedBilling,
    MetricDefinition,
    metric_definition_from_search,
)
from leakwatch.store.models import (
    BillableMetricDefinition,
    CustomerAliasRow,
    ReconciledDay,
    SampledEvent,
)


def save_learned_billing(session: Session, learned: LearnedBilling, now: datetime) -> None:
    """Insert or refresh each definition and alias (the newest answer wins)."""
    if learned.definitions:
        existing = {
            row.metric_id: row
            for row in session.exec(
                select(BillableMetricDefinition).where(
                    col(BillableMetricDefinition.metric_id).in_(list(learned.definitions))
                )
            )
        }
        for metric_id, definition in learned.definitions.items():
            row = existing.get(metric_id) or BillableMetricDefinition(
                metric_id=metric_id, name=definition.name, first_seen_at=now, last_seen_at=now
            )
            row.name = definition.name
            row.definition = definition.to_json()
            row.last_seen_at = now
            session.add(row)
    if learned.aliases:
        known = {
            row.alias: row
            for row in session.exec(
                select(CustomerAliasRow).where(
                    col(CustomerAliasRow.alias).in_(list(learned.aliases))
                )
            )
        }
        for alias, customer in learned.aliases.items():
            alias_row = known.get(alias) or CustomerAliasRow(
                alias=alias, customer_id=customer.customer_id, first_seen_at=now, last_seen_at=now
            )
            alias_row.customer_id = customer.customer_id
            alias_row.customer_name = customer.customer_name
            alias_row.last_seen_at = now
            session.add(alias_row)
    session.flush()


def load_definitions(session: Session) -> dict[str, MetricDefinition]:
    definitions: dict[str, MetricDefinition] = {}
    for row in session.exec(select(BillableMetricDefinition)):
        definition = metric_definition_from_search(row.definition)
        if definition is not None:
            definitions[definition.id] = definition
    return definitions


def load_aliases(session: Session) -> dict[str, CustomerAlias]:
    return {
        row.alias: CustomerAlias(row.alias, row.customer_id, row.customer_name)
        for row in session.exec(select(CustomerAliasRow))
    }


def settled_keys(session: Session, days: Sequence[date]) -> set[tuple[str, str, date]]:
    """Keys of days already settled: reconciliation leaves them as they are."""
    if not days:
        return set()
    rows = session.exec(
        select(ReconciledDay).where(
            col(ReconciledDay.day).in_(list(days)), col(ReconciledDay.settled).is_(True)
        )
    )
    return {(row.customer_id, row.metric_id, row.day) for row in rows}


def save_reconciled(
    session: Session,
    gaps: Iterable[Gap],
    *,
    days: Sequence[date],
    settled_before: date,
    now: datetime,
) -> int:
    """Replace the unsettled rows of `days` with `gaps`; return how many rows were written.

    A key that no longer has a gap row (its usage vanished) is deleted, unless settled.
    """
    settled = settled_keys(session, days)
    if days:
        session.execute(
            delete(ReconciledDay).where(
                col(ReconciledDay.day).in_(list(days)), col(ReconciledDay.settled).is_(False)
            )
        )
    written = 0
    for gap in gaps:
        if (gap.customer_id, gap.metric_id, gap.day) in settled:
            continue
        session.add(
            ReconciledDay(
                customer_id=gap.customer_id,
                customer_name=gap.customer_name,
                metric_id=gap.metric_id,
                metric_name=gap.metric_name,
                day=gap.day,
                expected=gap.expected,
                events=gap.events,
                billed=gap.billed,
                status=gap.status.value,
                settled=gap.day < settled_before,
                computed_at=now,
            )
        )
        written += 1
    session.flush()
    return written


def load_reconciled(
    session: Session,
    *,
    since: date,
    until: date | None = None,
    customer: str | None = None,
) -> list[ReconciledDay]:
    """Reconciled rows from `since` (inclusive) to `until` (exclusive), newest day first."""
    query = select(ReconciledDay).where(col(ReconciledDay.day) >= since)
    if until is not None:
        query = query.where(col(ReconciledDay.day) < until)
    if customer is not None:
        query = query.where(
            (col(ReconciledDay.customer_id) == customer)
            | (col(ReconciledDay.customer_name) == customer)
        )
    return list(
        session.exec(
            query.order_by(
                col(ReconciledDay.day).desc(),
                col(ReconciledDay.customer_id),
                col(ReconciledDay.metric_name),
            )
        )
    )


def sample_outcomes(
    session: Session, *, start: datetime, end: datetime
) -> dict[tuple[str, str, date], dict[str, int]]:
    """Sampled events with event time in [start, end), counted per alias, type, day, outcome."""
    rows = session.execute(
        select(
            col(SampledEvent.customer_id),
            col(SampledEvent.event_type),
            col(SampledEvent.event_timestamp),
            col(SampledEvent.outcome),
        ).where(col(SampledEvent.event_timestamp) >= start, col(SampledEvent.event_timestamp) < end)
    )
    counts: dict[tuple[str, str, date], dict[str, int]] = {}
    for alias, event_type, at, outcome in rows:
        slot = counts.setdefault((alias, event_type, at.date()), {})
        slot[outcome] = slot.get(outcome, 0) + 1
    return counts


@dataclass(frozen=True, slots=True)
class MetricTotals:
    """Expected and billed summed over reconciled days, and the days flagged."""

    metric_name: str
    expected: float
    billed: float
    flagged: int
    rows: int


def reconciled_totals(session: Session, *, since: date) -> list[MetricTotals]:
    """Per billable metric, over the reconciled days from `since` (one GROUP BY)."""
    flagged = func.sum(case((col(ReconciledDay.status) != "ok", 1), else_=0))
    rows = session.execute(
        sql_select(
            col(ReconciledDay.metric_name),
            func.sum(ReconciledDay.expected),
            func.sum(func.coalesce(ReconciledDay.billed, 0.0)),
            flagged,
            func.count(),
        )
        .where(col(ReconciledDay.day) >= since)
        .group_by(col(ReconciledDay.metric_name))
        .order_by(col(ReconciledDay.metric_name))
    )
    return [
        MetricTotals(str(name), float(expected or 0), float(billed or 0), int(bad or 0), int(n))
        for name, expected, billed, bad, n in rows
    ]


@dataclass(frozen=True, slots=True)
class ScopeTotals:
    """Expected and billed for one metric over reconciled days, overall or per customer."""

    group: str | None  # the Metronome customer id, or None for all customers
    name: str | None
    metric: str
    expected: float
    billed: float
    days: int


def reconciled_scope_totals(
    session: Session, *, since: date, by_customer: bool
) -> list[ScopeTotals]:
    """Sum reconciled rows from `since` per metric, overall or per customer.

    Per metric because metrics count different units (calls, seconds, tokens): a
    shortfall is a share of one metric's expected total, never of a sum across them.
    """
    groups: dict[tuple[str | None, str], list[ReconciledDay]] = {}
    for row in session.exec(select(ReconciledDay).where(col(ReconciledDay.day) >= since)):
        key = (row.customer_id if by_customer else None, row.metric_name)
        groups.setdefault(key, []).append(row)
    return [
        ScopeTotals(
            group=group,
            name=next((r.customer_name for r in rows if r.customer_name), None),
            metric=metric,
            expected=sum(r.expected for r in rows),
            billed=sum(r.billed or 0.0 for r in rows),
            days=len({r.day for r in rows}),
        )
        for (group, metric), rows in sorted(
            groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])
        )
    ]
