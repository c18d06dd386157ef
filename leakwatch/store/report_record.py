"""The WeeklyReport row: the computed content and whether it reached Slack. I/O.

One row per week (unique), written by upsert, so a report built twice — by the
scheduled job and by hand, or by two replicas in a split-brain moment — stays one row.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import WeeklyReport


@dataclass(frozen=True, slots=True)
class ReportRecord:
    week: str
    content: dict[str, Any]
    sent_at: datetime | None
    slack_channel: str | None
    slack_ts: str | None


def _find(session: Session, week: str) -> WeeklyReport | None:
    return session.exec(select(WeeklyReport).where(WeeklyReport.week == week)).first()


def _as_record(row: WeeklyReport) -> ReportRecord:
    return ReportRecord(row.week, dict(row.content), row.sent_at, row.slack_channel, row.slack_ts)


def save_content(
    sessions: SessionFactory, week: str, content: dict[str, Any], now: datetime
) -> ReportRecord:
    """Insert or update the week's content; keep what is known about its Slack post."""
    for _attempt in range(2):
        try:
            with transaction(sessions) as session:
                row = _find(session, week)
                if row is None:
                    row = WeeklyReport(week=week, created_at=now, content=content)
                else:
                    row.content = content
                session.add(row)
                session.flush()
                return _as_record(row)
        except IntegrityError:
            # Another writer inserted the week between our read and write; update it.
            continue
    raise RuntimeError(f"could not save the report for {week}")


def load_record(sessions: SessionFactory, week: str) -> ReportRecord | None:
    with transaction(sessions) as session:
        row = _find(session, week)
        return _as_record(row) if row is not None else None


def mark_posted(sessions: SessionFactory, week: str, channel: str, ts: str) -> None:
    """Remember the root message as soon as it exists, before the uploads."""
    with transaction(sessions) as session:
        row = _find(session, week)
        if row is None:
            raise LookupError(f"no saved report for {week}")
        row.slack_channel = channel
        row.slack_ts = ts
        row.sent_at = None
        session.add(row)


def mark_sent(sessions: SessionFactory, week: str, now: datetime) -> None:
    with transaction(sessions) as session:
        row = _find(session, week)
        if row is None:
            raise LookupError(f"no saved report for {week}")
        row.sent_at = now
        session.add(row)
