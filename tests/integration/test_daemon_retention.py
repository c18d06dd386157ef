"""Retention on Postgres and SQLite: old settled detail goes, aggregates and live work stay."""

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlmodel import col

from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import (
    Alert,
    BadLineCount,
    Notification,
    SampledEvent,
    SamplingRun,
    VolumeCount,
    WeeklyReport,
)
from leakwatch.store.retention import drop_old_detail

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=400)
OLD = CUTOFF - timedelta(days=1)
RECENT = CUTOFF + timedelta(days=1)


def _event(
    txn: str, outcome: str, sampled_at: datetime, run_id: int, **extra: object
) -> SampledEvent:
    return SampledEvent(
        source="gateway",
        transaction_id=txn,
        payload_hash=f"h-{txn}",
        customer_id="acme",
        event_type="api_request",
        event_timestamp=sampled_at - timedelta(hours=1),
        outcome=outcome,
        sampled_at=sampled_at,
        run_id=run_id,
        **extra,  # type: ignore[arg-type]
    )


def _notification(key: str, status: str, sent_at: datetime | None) -> Notification:
    return Notification(
        dedup_key=key,
        kind="fire",
        status=status,
        created_at=OLD,
        next_attempt_at=OLD,
        sent_at=sent_at,
        delivery_marker=f"m-{key}",
    )


def test_old_settled_detail_is_dropped_and_the_rest_is_kept(sessions: SessionFactory) -> None:
    with transaction(sessions) as session:
        old_run = SamplingRun(started_at=OLD, finished_at=OLD, status="finished")
        old_run_with_live_event = SamplingRun(started_at=OLD, finished_at=OLD, status="finished")
        new_run = SamplingRun(started_at=RECENT, finished_at=RECENT, status="finished")
        session.add_all([old_run, old_run_with_live_event, new_run])
        session.flush()
        assert old_run.id and old_run_with_live_event.id and new_run.id
        live = old_run_with_live_event.id
        session.add_all(
            [
                _event("old-matched", "matched", OLD, old_run.id),
                _event("old-missing", "missing", OLD, old_run.id),
                _event("old-expired", "expired", OLD, old_run.id),
                # Unmatched customers stop being re-checked eventually; then they go too.
                _event("old-unmatched-done", "unmatched_customer", OLD, old_run.id),
                _event("old-pending", "pending", OLD, live, next_check_at=NOW),
                _event("old-unmatched-live", "unmatched_customer", OLD, live, next_check_at=NOW),
                _event("new-matched", "matched", RECENT, new_run.id),
                _notification("old-sent", "sent", OLD),
                _notification("new-sent", "sent", RECENT),
                _notification("old-pending", "pending", None),
                _notification("old-dead", "dead", None),
                VolumeCount(
                    source="gateway", event_type="api_request", day=date(2025, 1, 1), events=9
                ),
                BadLineCount(source="gateway", reason="not_json", day=date(2025, 1, 1), count=2),
                Alert(rule_name="leak", scope="", opened_at=OLD),
                WeeklyReport(week="2025-W01", created_at=OLD),
            ]
        )
    with transaction(sessions) as session:
        dropped = drop_old_detail(session, before=CUTOFF)
    with transaction(sessions) as session:
        events = sorted(session.execute(select(col(SampledEvent.transaction_id))).scalars())
        runs = set(session.execute(select(col(SamplingRun.id))).scalars())
        notifications = sorted(session.execute(select(col(Notification.dedup_key))).scalars())
        kept = [
            len(list(session.execute(select(model)).scalars()))
            for model in (VolumeCount, BadLineCount, Alert, WeeklyReport)
        ]
    assert events == ["new-matched", "old-pending", "old-unmatched-live"]
    assert runs == {old_run_with_live_event.id, new_run.id}
    assert notifications == ["new-sent", "old-dead", "old-pending"]
    assert kept == [1, 1, 1, 1]
    assert dropped == 4 + 1 + 1
    with transaction(sessions) as session:
        assert drop_old_detail(session, before=CUTOFF) == 0
