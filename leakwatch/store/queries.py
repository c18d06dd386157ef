"""Questions answered by SQL aggregation in the database, never by loading rows.

Windows are on `sampled_at` (when leakwatch drew the event): "the leak rate over the
last 24 h" is the rate among the samples of the last 24 h, which spans the whole
sampling window of event time. The weekly report groups by event time instead.

Outcome tallies over a window (overall, per source, per event type, per segment, per
cycle) are summed from `outcome_rollup`, a few rows per cycle kept equal to the
samples by triggers, so a refresh after every cycle costs the same on a day of history
as on a year of it; per customer they are summed from the samples (see
`OutcomeRollup`). Either way the sums are those `OutcomeTally` estimates from.
"""

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import case, func, literal_column, select
from sqlmodel import Session, col

from leakwatch.core.events import DECIDED_OUTCOMES, Outcome
from leakwatch.core.exposure import Segment, VolumeRow
from leakwatch.core.report_content import Example
from leakwatch.core.sampling import STRATUM_FIELDS, probe_stratum
from leakwatch.core.stats import OutcomeTally
from leakwatch.store.models import BadLineCount, OutcomeRollup, SampledEvent, VolumeCount

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


@dataclass(frozen=True, slots=True)
class _Summed:
    """A table that tallies are summed from, and each of its rows' share of the sums."""

    sampled_at: Any
    outcome: Any
    groups: dict[str, Any]
    samples: Any
    weight: Any
    weight_sq: Any
    weighted_quantity: Any


_w = col(SampledEvent.weight)
# The samples themselves: every row is one sample.
_SAMPLES = _Summed(
    sampled_at=col(SampledEvent.sampled_at),
    outcome=col(SampledEvent.outcome),
    groups={name: col(column) for name, column in GROUP_COLUMNS.items()},
    samples=literal_column("1"),
    weight=_w,
    weight_sq=_w * _w,
    weighted_quantity=_w * func.coalesce(col(SampledEvent.quantity), 0.0),
)
# The roll-up: a row per cycle, source, event type and outcome, holding the same sums.
_ROLLUP = _Summed(
    sampled_at=col(OutcomeRollup.sampled_at),
    outcome=col(OutcomeRollup.outcome),
    groups={"source": col(OutcomeRollup.source), "event_type": col(OutcomeRollup.event_type)},
    samples=col(OutcomeRollup.samples),
    weight=col(OutcomeRollup.weight_sum),
    weight_sq=col(OutcomeRollup.weight_sq_sum),
    weighted_quantity=col(OutcomeRollup.weighted_quantity_sum),
)


def _summed_from(*columns: str | None) -> _Summed:
    """The roll-up when it has every column asked for, else the samples (per customer).

    Both give the same sums (the roll-up is kept equal to a GROUP BY of the samples);
    the roll-up reads a few rows per cycle instead of every sample of the window.
    """
    for name in columns:
        _group_column(name)  # an unknown name is a ValueError either way
    return _ROLLUP if all(c is None or c in _ROLLUP.groups for c in columns) else _SAMPLES


def outcome_counts(
    session: Session, *, since: datetime, until: datetime, by: str | None = None
) -> list[OutcomeCounts]:
    """Count outcomes of events sampled in [since, until), optionally per group."""
    if by is None or by in _SEGMENT_KEY:
        return pooled_counts(segment_counts(session, since=since, until=until), by)
    groups: dict[str | None, OutcomeCounts] = {}
    for key, outcome, sums in _tally_rows(session, [by], since=since, until=until):
        groups.setdefault(key[0], OutcomeCounts(group=key[0])).add(outcome, *sums)
    return sorted(groups.values(), key=lambda g: g.group or "")


# Groupings a segment belongs to whole: all (None), its source, its event type.
_SEGMENT_KEY: dict[str | None, int | None] = {None: None, "source": 0, "event_type": 1}


def pooled_counts(
    segments: Mapping[Segment, OutcomeTally], by: str | None = None
) -> list[OutcomeCounts]:
    """Pool segments' tallies per group (all, per source or per event type).

    How `outcome_counts` answers those groupings, for a caller that already read the
    window's segments: the same sums, without reading the window again.
    """
    if by not in _SEGMENT_KEY:
        raise ValueError(f"cannot pool segments by {by!r}; use source or event_type")
    position = _SEGMENT_KEY[by]
    groups: dict[str | None, OutcomeCounts] = {}
    for segment, tally in sorted(segments.items()):
        group = None if position is None else segment[position]
        groups.setdefault(group, OutcomeCounts(group=group)).merge(tally)
    if by is None and not groups:
        return [OutcomeCounts(group=None)]
    return sorted(groups.values(), key=lambda g: (g.group is None, g.group or ""))


def segment_counts(
    session: Session, *, since: datetime, until: datetime
) -> dict[Segment, OutcomeTally]:
    """Outcomes of events sampled in [since, until) per (source, event type) segment.

    The grain at which volumes are counted, so each segment's rate meets its own volume;
    a scope's figures select its segments (`core.exposure.segments_of`).
    """
    segments: dict[Segment, OutcomeTally] = {}
    keys = ["source", "event_type"]
    for key, outcome, sums in _tally_rows(session, keys, since=since, until=until):
        segments.setdefault((str(key[0]), str(key[1])), OutcomeTally()).add(outcome, *sums)
    return segments


def _tally_rows(
    session: Session,
    keys: list[str],
    *,
    since: datetime,
    until: datetime,
) -> Iterable[tuple[tuple[Any, ...], Outcome, tuple[int, float, float, float]]]:
    """(group key, outcome, (count, Σw, Σw², Σw·quantity)) per group and outcome."""
    table = _summed_from(*keys)
    key_columns = [table.groups[k] for k in keys]
    query = select(
        *key_columns,
        table.outcome,
        func.sum(table.samples),
        func.coalesce(func.sum(table.weight), 0.0),
        func.coalesce(func.sum(table.weight_sq), 0.0),
        func.coalesce(func.sum(table.weighted_quantity), 0.0),
    ).where(table.sampled_at >= since, table.sampled_at < until)
    query = query.group_by(*key_columns, table.outcome)
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


def _probe_batches(
    session: Session,
    *,
    outcomes: Iterable[Outcome],
    since: datetime,
    until: datetime,
    by: str | None,
) -> dict[tuple[str | None, datetime], tuple[int, int]]:
    """(leaks, decided) of the probes drawn within each group of `by`, per cycle.

    Only the samples hold the stratum a probe is recorded under; the window's rows are
    found by `sampled_at` as for a per-customer tally, and only probes are summed.
    """
    if by not in STRATUM_FIELDS:
        return {}
    group_col = col(GROUP_COLUMNS[by])
    sampled_at = col(SampledEvent.sampled_at)
    leaking = col(SampledEvent.outcome).in_([o.value for o in outcomes])
    query = (
        select(
            group_col,
            sampled_at,
            func.coalesce(func.sum(case((leaking, 1), else_=0)), 0),
            func.count(),
        )
        .where(
            sampled_at >= since,
            sampled_at < until,
            col(SampledEvent.stratum) == probe_stratum(by),
            col(SampledEvent.outcome).in_([o.value for o in DECIDED_OUTCOMES]),
        )
        .group_by(group_col, sampled_at)
    )
    return {
        (group, at): (int(leaks), int(decided))
        for group, at, leaks, decided in session.execute(query)
    }


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
    a group of `by` (`core.sampling.probe_stratum`) are in the counts with weight 0,
    and counted apart too, for that group's test only.
    """
    probes = _probe_batches(session, outcomes=outcomes, since=since, until=until, by=by)
    table = _summed_from(by)
    leaking = table.outcome.in_([o.value for o in outcomes])
    columns: list[Any] = [
        table.sampled_at,
        func.sum(table.samples),
        func.coalesce(func.sum(case((leaking, table.samples), else_=0)), 0),
        func.coalesce(func.sum(table.weight), 0.0),
        func.coalesce(func.sum(case((leaking, table.weight), else_=0.0)), 0.0),
        func.coalesce(func.sum(table.weight_sq), 0.0),
    ]
    group_by: list[Any] = [table.sampled_at]
    if by is not None:
        columns.insert(0, table.groups[by])
        group_by.insert(0, table.groups[by])
    query = (
        select(*columns)
        .where(
            table.sampled_at >= since,
            table.sampled_at < until,
            table.outcome.in_([o.value for o in DECIDED_OUTCOMES]),
        )
        .group_by(*group_by)
        .order_by(*group_by)
    )
    found: dict[str | None, list[Batch]] = {}
    for row in session.execute(query):
        group = row[0] if by is not None else None
        at, decided, leaks, w_decided, w_leaks, w_squares = row[1:] if by is not None else row
        p_leaks, p_decided = probes.get((group, at), (0, 0))
        found.setdefault(group, []).append(
            Batch(
                sampled_at=at,
                leaks=int(leaks),
                decided=int(decided),
                weighted_leaks=float(w_leaks),
                weighted_decided=float(w_decided),
                weighted_decided_squares=float(w_squares),
                probe_leaks=p_leaks,
                probe_decided=p_decided,
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
