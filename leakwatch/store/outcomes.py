"""Recording sampled events and their verdicts: idempotent, bulk, crash-safe. I/O.

A new sample is written once, after its lookup, with its verdict (or as `pending`
when its lookup did not happen in time, or `error` when it failed): one insert keyed
by identity, so an event drawn again is left as it is. Re-checks of recorded events
are updates by primary key. A cycle killed before its write records nothing of its
draw (the next cycle draws afresh); killed during it, what was committed stays and a
rerun skips it. Nothing is recorded twice.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from leakwatch.core.classify import Verdict
from leakwatch.core.events import (
    DrawnEvent,
    MatchedMetric,
    Outcome,
    SourceEvent,
    quantity_value,
)
from leakwatch.store import pg_bulk
from leakwatch.store.models import SampledEvent as SampledEventRow

# Outcomes that are looked at again: undecided ones, and unmatched customers (an
# ingest alias added later re-attributes the usage, so they can heal).
RECHECKED_OUTCOMES = (Outcome.PENDING, Outcome.ERROR, Outcome.UNMATCHED_CUSTOMER)
_DECIDED_VALUES = frozenset(o.value for o in Outcome if o.is_decided)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _insert_for(session: Session) -> Any:
    return pg_insert if _dialect(session) == "postgresql" else sqlite_insert


def quantity_of(event: SourceEvent, quantity_properties: Mapping[str, str]) -> float | None:
    """The event's priced quantity, when its event type is priced per unit."""
    return quantity_value(event.properties, quantity_properties.get(event.event_type))


def sample_row(
    sample: DrawnEvent,
    *,
    now: datetime,
    run_id: int | None,
    quantity_properties: Mapping[str, str],
) -> dict[str, Any]:
    """The row of a newly drawn event, not yet looked up: pending and due now."""
    event = sample.event
    return {
        "source": sample.source,
        "transaction_id": event.transaction_id,
        "payload_hash": event.payload_hash,
        "customer_id": event.customer_id,
        "event_type": event.event_type,
        "event_timestamp": event.timestamp,
        "properties": dict(event.properties),
        "weight": sample.weight,
        "stratum": sample.stratum,
        "quantity": quantity_of(event, quantity_properties),
        "outcome": Outcome.PENDING.value,
        "reason": "not looked up yet",
        "evidence": {},
        "matched_customer_id": None,
        "matched_customer_name": None,
        "matched_metrics": [],
        "differing_fields": [],
        "duplicate_count": 0,
        "healed": False,
        "attempts": 0,
        "sampled_at": now,
        "first_checked_at": None,
        "last_checked_at": None,
        "decided_at": None,
        "next_check_at": now,
        "run_id": run_id,
    }


def record_samples(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert sample rows, ignoring identities already recorded; return how many were new."""
    # The same event drawn twice in one batch would collide with itself.
    unique = {(r["source"], r["transaction_id"], r["payload_hash"]): r for r in rows}
    if not unique:
        return 0
    if _dialect(session) == "postgresql":
        return pg_bulk.insert_samples(session, list(unique.values()))
    # One cached statement, executed as "insertmanyvalues" batches: compiling a giant
    # VALUES list per call costs far more than the database's work.
    statement = (
        _insert_for(session)(SampledEventRow)
        .on_conflict_do_nothing(index_elements=["source", "transaction_id", "payload_hash"])
        .returning(col(SampledEventRow.id))
    )
    return len(session.execute(statement, list(unique.values())).all())


def recorded_identities(
    session: Session, samples: Sequence[DrawnEvent]
) -> set[tuple[str, str, str]]:
    """Which of these samples' identities the store already holds (to skip their lookup)."""
    found: set[tuple[str, str, str]] = set()
    ids = sorted({s.event.transaction_id for s in samples})
    for start in range(0, len(ids), 1000):
        query = select(
            col(SampledEventRow.source),
            col(SampledEventRow.transaction_id),
            col(SampledEventRow.payload_hash),
        ).where(col(SampledEventRow.transaction_id).in_(ids[start : start + 1000]))
        found.update((str(a), str(b), str(c)) for a, b, c in session.execute(query))
    return found


# ANALYZE the samples table once this many rows (or this share of it) changed since
# its statistics were taken: plans for the identity lookup and the due rows must not
# wait for autovacuum, which may be off or behind (a whole-table scan per draw, seen).
ANALYZE_AFTER_CHANGES = 10_000
ANALYZE_AFTER_SHARE = 0.1


def refresh_statistics_if_stale(session: Session) -> bool:
    """ANALYZE `sampled_event` when its statistics are missing or stale (Postgres).

    One catalog lookup per call; the ANALYZE itself samples a fixed number of rows,
    so it costs about the same at any table size. Returns whether it ran.
    """
    if _dialect(session) != "postgresql":
        return False  # SQLite plans by its indexes without statistics
    row = session.execute(
        text(
            "SELECT n_mod_since_analyze, n_live_tup, "
            "coalesce(last_analyze, last_autoanalyze) IS NULL "
            "FROM pg_stat_user_tables WHERE relname = 'sampled_event'"
        )
    ).one_or_none()
    if row is None:
        return False
    changed, live, never = int(row[0] or 0), int(row[1] or 0), bool(row[2])
    if changed == 0 or (
        not never and changed < max(ANALYZE_AFTER_CHANGES, ANALYZE_AFTER_SHARE * live)
    ):
        return False
    session.execute(text("ANALYZE sampled_event"))
    return True


def count_due(session: Session, *, now: datetime) -> int:
    query = select(func.count()).where(
        col(SampledEventRow.outcome).in_([o.value for o in RECHECKED_OUTCOMES]),
        col(SampledEventRow.next_check_at) <= now,
    )
    return int(session.execute(query).scalar_one())


def due_rows(session: Session, *, now: datetime, limit: int) -> list[SampledEventRow]:
    """Rows due for a (re-)check, the oldest events first.

    The oldest are the most urgent: past the missing grace a look decides them, and
    near the end of the 34-day search window one missed look leaves them expired.
    """
    if limit <= 0:
        return []
    query = (
        select(SampledEventRow)
        .where(
            col(SampledEventRow.outcome).in_([o.value for o in RECHECKED_OUTCOMES]),
            col(SampledEventRow.next_check_at) <= now,
        )
        .order_by(col(SampledEventRow.event_timestamp), col(SampledEventRow.id))
        .limit(limit)
    )
    return list(session.execute(query).scalars())


def source_event_of(row: SampledEventRow) -> SourceEvent:
    return SourceEvent(
        transaction_id=row.transaction_id,
        customer_id=row.customer_id,
        event_type=row.event_type,
        timestamp=row.event_timestamp,
        properties=row.properties or {},
    )


@dataclass(frozen=True, slots=True)
class RecheckPolicy:
    """When each kind of outcome is looked at again."""

    pending_every: timedelta
    unmatched_customer_every: timedelta


class Recorded(Protocol):
    """What a verdict's columns depend on of the row they replace."""

    @property
    def id(self) -> int | None: ...
    @property
    def outcome(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def healed(self) -> bool: ...
    @property
    def first_checked_at(self) -> datetime | None: ...
    @property
    def decided_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class NewRow:
    """A sample not recorded yet: pending, never looked up."""

    id: int | None = None
    outcome: str = Outcome.PENDING.value
    attempts: int = 0
    healed: bool = False
    first_checked_at: datetime | None = None
    decided_at: datetime | None = None


NEW_ROW = NewRow()


def verdict_update(
    row: Recorded,
    verdict: Verdict,
    *,
    now: datetime,
    recheck: RecheckPolicy,
    counted_attempt: bool,
) -> dict[str, Any]:
    """The column values that record `verdict` over `row` (a pure mapping of the verdict)."""
    outcome = verdict.outcome
    evidence = verdict.evidence
    customer = evidence.get("matched_customer") if isinstance(evidence, dict) else None
    metrics = evidence.get("matched_metrics") if isinstance(evidence, dict) else None
    if outcome is Outcome.PENDING or outcome is Outcome.ERROR:
        next_check: datetime | None = now + recheck.pending_every
    elif outcome is Outcome.UNMATCHED_CUSTOMER:
        next_check = now + recheck.unmatched_customer_every
    else:
        next_check = None
    was_decided = row.outcome in _DECIDED_VALUES
    changed = row.outcome != outcome.value
    decided_at = row.decided_at
    if outcome.is_decided and (changed or not was_decided or decided_at is None):
        decided_at = now
    return {
        "id": row.id,
        "outcome": outcome.value,
        "reason": verdict.reason[:2000],
        "evidence": evidence,
        "matched_customer_id": _text(customer, "id"),
        "matched_customer_name": _text(customer, "name"),
        "matched_metrics": _metric_names(metrics),
        "duplicate_count": verdict.duplicate_count,
        "differing_fields": list(verdict.differing_fields),
        "healed": row.healed or verdict.healed,
        "attempts": row.attempts + (1 if counted_attempt else 0),
        "first_checked_at": row.first_checked_at or now,
        "last_checked_at": now,
        "decided_at": decided_at,
        "next_check_at": next_check,
    }


def record_verdicts(session: Session, updates: Iterable[dict[str, Any]]) -> int:
    """Write verdicts by primary key in bulk; idempotent (the same values twice is a no-op)."""
    batch = list(updates)
    if not batch:
        return 0
    if _dialect(session) == "postgresql":
        return pg_bulk.update_verdicts(session, batch)
    session.execute(update(SampledEventRow), batch)
    return len(batch)


def _text(value: Any, key: str) -> str | None:
    if isinstance(value, dict):
        found = value.get(key)
        return str(found)[:500] if found is not None else None
    return None


def _metric_names(metrics: Any) -> list[str]:
    if not isinstance(metrics, list):
        return []
    names: list[str] = []
    for metric in metrics:
        if isinstance(metric, dict):
            names.append(str(metric.get("name") or metric.get("id") or ""))
        elif isinstance(metric, MatchedMetric):
            names.append(metric.name)
        else:
            names.append(str(metric))
    return names
