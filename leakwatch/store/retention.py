"""Retention: drop per-event detail older than the configured age, keep aggregates. I/O.

What goes: sampled events drawn before the cutoff whose verdict is settled (a pending
event, a failed lookup or an unmatched customer that is still scheduled for a re-check
stays, whatever its age), sampling runs no kept event points at, and notifications
already delivered. What stays: volume counts, bad-line counts, alerts and their
transitions, weekly reports — the report and the trend lines are built from those, so
a year of history costs a few rows per day, not one per sampled event.

`outcome_rollup` sums the samples that remain: its triggers take the dropped ones out
in the same statement.
"""

from datetime import datetime

from sqlalchemy import and_, delete, exists, not_, select
from sqlmodel import Session, col

from leakwatch.store.models import Notification, SampledEvent, SamplingRun
from leakwatch.store.outcomes import RECHECKED_OUTCOMES


def drop_old_detail(session: Session, *, before: datetime) -> int:
    """Delete detail rows older than `before` in the caller's transaction; return the count."""
    if before.tzinfo is None:
        raise ValueError("`before` must be an aware datetime")
    still_rechecked = and_(
        col(SampledEvent.outcome).in_([o.value for o in RECHECKED_OUTCOMES]),
        col(SampledEvent.next_check_at).is_not(None),
    )
    events = session.execute(
        delete(SampledEvent)
        .where(col(SampledEvent.sampled_at) < before, not_(still_rechecked))
        .execution_options(synchronize_session=False)
    )
    referenced = exists(
        select(col(SampledEvent.id)).where(col(SampledEvent.run_id) == col(SamplingRun.id))
    )
    runs = session.execute(
        delete(SamplingRun)
        .where(col(SamplingRun.started_at) < before, not_(referenced))
        .execution_options(synchronize_session=False)
    )
    notifications = session.execute(
        delete(Notification)
        .where(col(Notification.status) == "sent", col(Notification.sent_at) < before)
        .execution_options(synchronize_session=False)
    )
    return sum(int(getattr(r, "rowcount", 0) or 0) for r in (events, runs, notifications))


__all__ = ["drop_old_detail"]
