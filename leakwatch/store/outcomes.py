"""Recording sampled events and their verdicts: idempotent, bulk, crash-safe. I/O.

A cycle writes in two steps. First the draw: each sampled event is inserted as
`pending` (an event drawn again is left as it is: the identity constraint makes the
insert a no-op). Then the verdicts: an UPDATE by primary key per checked row. A cycle
killed between the two leaves pending rows that the next cycle finds due and checks;
a cycle killed after leaves nothing to redo. Nothing is recorded twice.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from leakwatch.core.classify import Verdict
from leakwatch.core.events import (
    MatchedMetric,
    Outcome,
    SampledEvent,
    SourceEvent,
    quantity_value,
)
from leakwatch.store.models import SampledEvent as SampledEventRow

# Outcomes that are looked at again: undecided ones, and unmatched customers (an
# ingest alias added later re-attributes the usage, so they can heal).
RECHECKED_OUTCOMES = (Outcome.PENDING, Outcome.ERROR, Outcome.UNMATCHED_CUSTOMER)
_INSERT_CHUNK = 2_000


def _insert_for(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return pg_insert if dialect == "postgresql" else sqlite_insert


def quantity_of(event: SourceEvent, quantity_properties: Mapping[str, str]) -> float | None:
    """The event's priced quantity, when its event type is priced per unit."""
    return quantity_value(event.properties, quantity_properties.get(event.event_type))


def record_samples(
    session: Session,
    samples: Sequence[SampledEvent],
    *,
    now: datetime,
    run_id: int | None,
    quantity_properties: Mapping[str, Mapping[str, str]] | None = None,
) -> int:
    """Insert newly drawn events as pending, due now; return how many were new."""
    quantity_properties = quantity_properties or {}
    rows: list[dict[str, Any]] = [
        {
            "source": sample.source,
            "transaction_id": sample.event.transaction_id,
            "payload_hash": sample.event.payload_hash,
            "customer_id": sample.event.customer_id,
            "event_type": sample.event.event_type,
            "event_timestamp": sample.event.timestamp,
            "properties": dict(sample.event.properties),
            "weight": sample.weight,
            "stratum": sample.stratum,
            "quantity": quantity_of(sample.event, quantity_properties.get(sample.source, {})),
            "outcome": Outcome.PENDING.value,
            "reason": "not looked up yet",
            "evidence": {},
            "matched_metrics": [],
            "differing_fields": [],
            "duplicate_count": 0,
            "healed": False,
            "attempts": 0,
            "sampled_at": now,
            "next_check_at": now,
            "run_id": run_id,
        }
        for sample in samples
    ]
    # The same event drawn twice in one batch would collide with itself.
    unique = {(r["source"], r["transaction_id"], r["payload_hash"]): r for r in rows}
    inserted = 0
    insert = _insert_for(session)
    values = list(unique.values())
    for start in range(0, len(values), _INSERT_CHUNK):
        chunk = values[start : start + _INSERT_CHUNK]
        statement = (
            insert(SampledEventRow)
            .values(chunk)
            .on_conflict_do_nothing(index_elements=["source", "transaction_id", "payload_hash"])
            .returning(col(SampledEventRow.id))
        )
        inserted += len(session.execute(statement).all())
    return inserted


def count_due(session: Session, *, now: datetime) -> int:
    query = select(func.count()).where(
        col(SampledEventRow.outcome).in_([o.value for o in RECHECKED_OUTCOMES]),
        col(SampledEventRow.next_check_at) <= now,
    )
    return int(session.execute(query).scalar_one())


def due_rows(
    session: Session, *, now: datetime, limit: int, exclude_run: int | None = None
) -> list[SampledEventRow]:
    """Rows due for a (re-)check, the longest-waiting first."""
    if limit <= 0:
        return []
    query = (
        select(SampledEventRow)
        .where(
            col(SampledEventRow.outcome).in_([o.value for o in RECHECKED_OUTCOMES]),
            col(SampledEventRow.next_check_at) <= now,
        )
        .order_by(col(SampledEventRow.next_check_at), col(SampledEventRow.id))
        .limit(limit)
    )
    if exclude_run is not None:
        query = query.where(
            (col(SampledEventRow.run_id) != exclude_run) | col(SampledEventRow.run_id).is_(None)
        )
    return list(session.execute(query).scalars())


def rows_of_run(session: Session, run_id: int) -> list[SampledEventRow]:
    query = select(SampledEventRow).where(
        col(SampledEventRow.run_id) == run_id,
        col(SampledEventRow.attempts) == 0,
        col(SampledEventRow.outcome) == Outcome.PENDING.value,
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


def verdict_update(
    row: SampledEventRow,
    verdict: Verdict,
    *,
    now: datetime,
    recheck: RecheckPolicy,
    counted_attempt: bool,
) -> dict[str, Any]:
    """The column values that record `verdict` on `row` (a pure mapping of the verdict)."""
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
    was_decided = row.outcome in {o.value for o in Outcome if o.is_decided}
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
    if batch:
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
