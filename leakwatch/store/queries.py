"""Questions answered by SQL aggregation in the database, never by loading rows.

Windows are on `sampled_at` (when leakwatch drew the event): "the leak rate over the
last 24 h" is the rate among the samples of the last 24 h, which spans the whole
sampling window of event time. The weekly report groups by event time instead.
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import case, false, func, select
from sqlmodel import Session, col

from leakwatch.core.events import DECIDED_OUTCOMES, Outcome
from leakwatch.core.exposure import Segment, VolumeRow
from leakwatch.core.report_content import Example
from leakwatch.core.sampling import STRATUM_FIELDS, probe_stratum
from leakwatch.core.stats import OutcomeTally
from leakwatch.store.models import BadLineCount, SampledEvent, VolumeCount

GROUP_COLUMNS = {
    "source": SampledEvent.source,
    "event_type": SampledEvent.event_type,
    "customer_id": SampledEvent.customer_id,
}


@dataclass
class OutcomeCounts(OutcomeTally):
    """Outcome counts (and Horvitz–Thompson weight sums) for one group."""

    group: str | None = None


def _group_column(by: str | None) -> Any:
    if by is None:
        return None
    try:
        return GROUP_COLUMNS[by]
    except KeyError:
        raise ValueError(f"cannot group by {by!r}; use one of {sorted(GROUP_COLUMNS)}") from None


def outcome_counts(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    by: str | None = None,
    source: str | None = None,
) -> list[OutcomeCounts]:
    """Count outcomes of events sampled in [since, until), optionally per group."""
    group_col = _group_column(by)
    groups: dict[str | None, OutcomeCounts] = {}
    keys = [] if group_col is None else [group_col]
    for key, outcome, sums in _tally_rows(session, keys, since=since, until=until, source=source):
        group = None if group_col is None else key[0]
        groups.setdefault(group, OutcomeCounts(group=group)).add(outcome, *sums)
    if group_col is None and not groups:
        return [OutcomeCounts(group=None)]
    return sorted(groups.values(), key=lambda g: (g.group is None, g.group or ""))


def segment_counts(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    source: str | None = None,
    event_type: str | None = None,
) -> dict[Segment, OutcomeTally]:
    """Outcomes of events sampled in [since, until) per (source, event type) segment.

    The grain at which volumes are counted, so each segment's rate meets its own volume.
    """
    segments: dict[Segment, OutcomeTally] = {}
    keys = [col(SampledEvent.source), col(SampledEvent.event_type)]
    for key, outcome, sums in _tally_rows(
        session, keys, since=since, until=until, source=source, event_type=event_type
    ):
        segments.setdefault((str(key[0]), str(key[1])), OutcomeTally()).add(outcome, *sums)
    return segments


def _tally_rows(
    session: Session,
    keys: list[Any],
    *,
    since: datetime,
    until: datetime,
    source: str | None = None,
    event_type: str | None = None,
) -> Iterable[tuple[tuple[Any, ...], Outcome, tuple[int, float, float, float]]]:
    """(group key, outcome, (count, Σw, Σw², Σw·quantity)) per group and outcome."""
    outcome_col = col(SampledEvent.outcome)
    weight_col = col(SampledEvent.weight)
    quantity = func.coalesce(col(SampledEvent.quantity), 0.0)
    query = select(
        *keys,
        outcome_col,
        func.count(),
        func.coalesce(func.sum(weight_col), 0.0),
        func.coalesce(func.sum(weight_col * weight_col), 0.0),
        func.coalesce(func.sum(weight_col * quantity), 0.0),
    ).where(col(SampledEvent.sampled_at) >= since, col(SampledEvent.sampled_at) < until)
    if source is not None:
        query = query.where(col(SampledEvent.source) == source)
    if event_type is not None:
        query = query.where(col(SampledEvent.event_type) == event_type)
    query = query.group_by(*keys, outcome_col)
    width = len(keys)
    for row in session.execute(query):
        try:
            outcome = Outcome(row[width])
        except ValueError:
            continue
        count, weight, weight_sq, weighted_q = row[width + 1 :]
        yield (
            tuple(row[:width]),
            outcome,
            (int(count), float(weight), float(weight_sq), float(weighted_q)),
        )


def volume_rows(session: Session, first_day: date, last_day: date) -> list[VolumeRow]:
    """Event counts (and summed quantity) per source, type and UTC day in [first_day, last_day]."""
    day = col(VolumeCount.day)
    query = (
        select(
            col(VolumeCount.source),
            col(VolumeCount.event_type),
            day,
            func.coalesce(func.sum(col(VolumeCount.events)), 0),
            func.coalesce(func.sum(col(VolumeCount.quantity_sum)), 0.0),
        )
        .where(day >= first_day, day <= last_day)
        .group_by(col(VolumeCount.source), col(VolumeCount.event_type), day)
    )
    return [
        VolumeRow(str(s), str(t), d, int(n), float(q)) for s, t, d, n, q in session.execute(query)
    ]


def example_transactions(
    session: Session,
    *,
    outcomes: Iterable[Outcome],
    since: datetime,
    until: datetime,
    by: str | None = None,
    group: str | None = None,
    source: str | None = None,
    limit: int = 5,
) -> list[Example]:
    """A few sampled events with one of `outcomes`, most recently checked first."""
    query = select(SampledEvent).where(
        col(SampledEvent.outcome).in_([o.value for o in outcomes]),
        col(SampledEvent.sampled_at) >= since,
        col(SampledEvent.sampled_at) < until,
    )
    group_col = _group_column(by)
    if group_col is not None and group is not None:
        query = query.where(group_col == group)
    if source is not None:
        query = query.where(col(SampledEvent.source) == source)
    query = query.order_by(
        col(SampledEvent.last_checked_at).desc(), col(SampledEvent.id).desc()
    ).limit(limit)
    return [
        Example(
            outcome=row.outcome,
            transaction_id=row.transaction_id,
            source=row.source,
            event_type=row.event_type,
            customer_id=row.customer_id,
            event_timestamp=row.event_timestamp,
            reason=row.reason,
        )
        for row in session.execute(query).scalars()
    ]


@dataclass(frozen=True, slots=True)
class Batch:
    """One cycle's decided samples in a group: counts and Horvitz–Thompson weight sums."""

    sampled_at: datetime
    leaks: int
    decided: int
    weighted_leaks: float
    weighted_decided: float
    weighted_decided_squares: float
    # Follow-up probes drawn within this group (weight 0: in no Horvitz–Thompson sum).
    probe_leaks: int = 0
    probe_decided: int = 0


def outcome_batches(
    session: Session,
    *,
    outcomes: Iterable[Outcome],
    since: datetime,
    until: datetime,
    by: str | None = None,
) -> dict[str | None, list[Batch]]:
    """Decided samples per group and per cycle (`sampled_at`), oldest cycle first.

    A sequential test reads the window as the stream it arrived in, one batch per
    check cycle; `outcomes` are the ones the rule counts as leaks. Probes drawn within
    a group of `by` (`core.sampling.probe_stratum`) are counted apart, for that
    group's test only.
    """
    group_col = _group_column(by)
    sampled_at = col(SampledEvent.sampled_at)
    weight = col(SampledEvent.weight)
    leaking = col(SampledEvent.outcome).in_([o.value for o in outcomes])
    probe: Any = col(SampledEvent.stratum) == probe_stratum(by) if by in STRATUM_FIELDS else false()
    columns: list[Any] = [
        sampled_at,
        func.count(),
        func.coalesce(func.sum(case((leaking, 1), else_=0)), 0),
        func.coalesce(func.sum(weight), 0.0),
        func.coalesce(func.sum(case((leaking, weight), else_=0.0)), 0.0),
        func.coalesce(func.sum(weight * weight), 0.0),
        func.coalesce(func.sum(case((probe & leaking, 1), else_=0)), 0),
        func.coalesce(func.sum(case((probe, 1), else_=0)), 0),
    ]
    group_by: list[Any] = [sampled_at]
    if group_col is not None:
        columns.insert(0, group_col)
        group_by.insert(0, group_col)
    query = (
        select(*columns)
        .where(
            sampled_at >= since,
            sampled_at < until,
            col(SampledEvent.outcome).in_([o.value for o in DECIDED_OUTCOMES]),
        )
        .group_by(*group_by)
        .order_by(*group_by)
    )
    found: dict[str | None, list[Batch]] = {}
    for row in session.execute(query):
        group = row[0] if group_col is not None else None
        at, decided, leaks, w_decided, w_leaks, w_squares, p_leaks, p_decided = (
            row[1:] if group_col is not None else row
        )
        found.setdefault(group, []).append(
            Batch(
                sampled_at=at,
                leaks=int(leaks),
                decided=int(decided),
                weighted_leaks=float(w_leaks),
                weighted_decided=float(w_decided),
                weighted_decided_squares=float(w_squares),
                probe_leaks=int(p_leaks),
                probe_decided=int(p_decided),
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class SampleFilter:
    """Which sampled events to read: since an instant, optionally of some outcomes, one
    source, one event type, one customer (what `leakwatch export` filters by)."""

    since: datetime
    outcomes: Sequence[str] = ()
    source: str | None = None
    event_type: str | None = None
    customer_id: str | None = None


def stream_sampled_events(
    session: Session, which: SampleFilter, *, chunk: int = 1000
) -> Iterator[SampledEvent]:
    """The sampled events `which` selects, oldest first, fetched `chunk` rows at a time."""
    query = select(SampledEvent).where(col(SampledEvent.sampled_at) >= which.since)
    if which.outcomes:
        query = query.where(col(SampledEvent.outcome).in_(list(which.outcomes)))
    if which.source:
        query = query.where(col(SampledEvent.source) == which.source)
    if which.event_type:
        query = query.where(col(SampledEvent.event_type) == which.event_type)
    if which.customer_id:
        query = query.where(col(SampledEvent.customer_id) == which.customer_id)
    query = query.order_by(col(SampledEvent.sampled_at), col(SampledEvent.id))
    yield from session.execute(query.execution_options(yield_per=chunk)).scalars()


def sampled_events_of(session: Session, transaction_ids: Sequence[str]) -> list[SampledEvent]:
    """Every recorded sample of these transaction ids."""
    return list(
        session.execute(
            select(SampledEvent).where(col(SampledEvent.transaction_id).in_(transaction_ids))
        ).scalars()
    )


def bad_line_totals(session: Session) -> dict[tuple[str, str], int]:
    """Bad lines ever counted, per (source, reason)."""
    return {
        (str(source), str(reason)): int(total or 0)
        for source, reason, total in session.execute(
            select(
                col(BadLineCount.source), col(BadLineCount.reason), func.sum(BadLineCount.count)
            ).group_by(col(BadLineCount.source), col(BadLineCount.reason))
        )
    }
