"""Notification rows (the outbox table): every query the outbox runs. I/O (database).

`notify/outbox.py` owns the stage — enqueue with the cause, claim → look up → send →
mark — and each of its transactions; this module holds the statements it runs inside
them, and `outbox_summary`, what `leakwatch status` reads. Claims are optimistic: an
update guarded by the attempts value read, so two senders never both take a row.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from leakwatch.store.models import Alert, Notification

ERROR_MAX_CHARS = 2000


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"
    # Never to be sent: no Slack configured, a silence, or nothing to edit.
    SKIPPED = "skipped"


def insert_once(session: Session, values: Mapping[str, Any]) -> Notification:
    """Insert a row unless its `dedup_key` exists (both backends); return the stored row."""
    dialect = session.get_bind().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert_fn(Notification)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
    )
    return session.exec(
        select(Notification).where(Notification.dedup_key == values["dedup_key"])
    ).one()


def pending(session: Session) -> list[tuple[int, int | None, datetime]]:
    """(id, alert id, next attempt) of every pending row, in id order."""
    found = session.exec(
        select(Notification.id, Notification.alert_id, Notification.next_attempt_at)
        .where(Notification.status == NotificationStatus.PENDING.value)
        .order_by(col(Notification.id))
    ).all()
    return [(row_id, alert_id, at) for row_id, alert_id, at in found if row_id is not None]


def claim(
    session: Session, row_id: int, *, now: datetime, lease: timedelta
) -> tuple[Notification, int] | None:
    """Take a due pending row: bump its attempts and lease it; None if another sender did.

    Returns the row as read and its attempts after the claim.
    """
    row = session.get(Notification, row_id)
    if row is None or row.status != NotificationStatus.PENDING.value:
        return None
    if row.next_attempt_at > now:
        return None
    seen_attempts = row.attempts
    claimed = session.execute(
        update(Notification)
        .where(
            col(Notification.id) == row_id,
            col(Notification.status) == NotificationStatus.PENDING.value,
            col(Notification.attempts) == seen_attempts,
        )
        .values(attempts=seen_attempts + 1, next_attempt_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return row, seen_attempts + 1


def by_dedup_key(session: Session, dedup_key: str) -> Notification | None:
    return session.exec(select(Notification).where(Notification.dedup_key == dedup_key)).first()


def schedule_retry(
    session: Session, row_id: int, *, attempts: int, at: datetime, error: str | None
) -> None:
    """Set the next attempt of a row still pending at `attempts` (a later claim wins)."""
    session.execute(
        update(Notification)
        .where(
            col(Notification.id) == row_id,
            col(Notification.attempts) == attempts,
            col(Notification.status) == NotificationStatus.PENDING.value,
        )
        .values(next_attempt_at=at, last_error=(error or "")[:ERROR_MAX_CHARS])
    )


def release(session: Session, row_id: int, *, attempts: int, now: datetime) -> None:
    """Give a claim back: the attempt did not happen."""
    session.execute(
        update(Notification)
        .where(col(Notification.id) == row_id, col(Notification.attempts) == attempts)
        .values(attempts=attempts - 1, next_attempt_at=now)
    )


def finish(session: Session, row_id: int, status: NotificationStatus, *, error: str | None) -> None:
    session.execute(
        update(Notification)
        .where(col(Notification.id) == row_id)
        .values(status=status.value, last_error=(error or "")[:ERROR_MAX_CHARS] or None)
    )


def mark_sent(
    session: Session,
    row_id: int,
    *,
    now: datetime,
    channel: str | None,
    ts: str | None,
    alert_id: int | None,
    is_root: bool,
    episode: int | None,
) -> None:
    """Record a delivery; a root also gives its alert the thread to reply in."""
    session.execute(
        update(Notification)
        .where(col(Notification.id) == row_id)
        .values(
            status=NotificationStatus.SENT.value,
            sent_at=now,
            slack_channel=channel,
            slack_ts=ts,
            last_error=None,
        )
    )
    if alert_id is None:
        return
    alert = session.get(Alert, alert_id)
    if alert is None:
        return
    alert.last_notified_at = now
    if is_root and ts is not None and episode in (None, alert.episode):
        alert.slack_channel = channel
        alert.slack_ts = ts
    session.add(alert)


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    """The outbox at a glance, for `leakwatch status`."""

    counts: Mapping[str, int]
    oldest_pending_at: datetime | None
    dead: tuple[tuple[int, str, str | None], ...]


def unsent_counts(session: Session) -> dict[str, int]:
    """Rows not sent, per status (pending, dead, skipped)."""
    return {
        str(status): int(count)
        for status, count in session.execute(
            select(col(Notification.status), func.count())
            .where(col(Notification.status) != NotificationStatus.SENT.value)
            .group_by(col(Notification.status))
        )
    }


def outbox_summary(session: Session, *, dead_limit: int = 10) -> OutboxSummary:
    """Count rows by status and list the newest dead letters (id, dedup key, error)."""
    counts = {
        str(status): int(count)
        for status, count in session.execute(
            select(Notification.status, func.count()).group_by(col(Notification.status))
        ).all()
    }
    oldest = session.exec(
        select(func.min(Notification.created_at)).where(
            Notification.status == NotificationStatus.PENDING.value
        )
    ).one()
    dead_rows = session.exec(
        select(Notification)
        .where(Notification.status == NotificationStatus.DEAD.value)
        .order_by(col(Notification.id).desc())
        .limit(dead_limit)
    ).all()
    return OutboxSummary(
        counts=counts,
        oldest_pending_at=oldest,
        dead=tuple((r.id or 0, r.dedup_key, r.last_error) for r in dead_rows),
    )
