"""What the store knows of each source's reading: bad lines with examples, where the
tail stands in each file, when it last read. Read only; for `leakwatch sources`.
"""

from dataclasses import dataclass
from datetime import date, datetime

from sqlmodel import Session, col, select

from leakwatch.store.models import BadLineCount, SourceFileCheckpoint, SourceState

EXAMPLES_SHOWN = 3


@dataclass(frozen=True, slots=True)
class BadLines:
    """One reason's unusable lines over some days, with up to three examples."""

    reason: str
    count: int
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReadPosition:
    """Where the tail stands in one file (or, for a table, its watermark), and when."""

    path: str
    offset: int
    size: int
    lines: int
    first_event_at: datetime | None
    last_event_at: datetime | None
    updated_at: datetime


def bad_lines_with_examples(
    session: Session, source: str, first_day: date, last_day: date
) -> list[BadLines]:
    """Bad lines per reason over [first_day, last_day], newest examples first."""
    rows = session.exec(
        select(BadLineCount)
        .where(
            BadLineCount.source == source,
            col(BadLineCount.day) >= first_day,
            col(BadLineCount.day) <= last_day,
        )
        .order_by(col(BadLineCount.day).desc())
    ).all()
    counts: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    for row in rows:
        counts[row.reason] = counts.get(row.reason, 0) + row.count
        kept = examples.setdefault(row.reason, [])
        for example in row.examples or []:
            if len(kept) < EXAMPLES_SHOWN and example not in kept:
                kept.append(example)
    return [
        BadLines(reason, count, tuple(examples.get(reason, ())))
        for reason, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def read_positions(session: Session, source: str) -> list[ReadPosition]:
    """The tail's checkpoints for a source, one per file it follows."""
    rows = session.exec(
        select(SourceFileCheckpoint)
        .where(SourceFileCheckpoint.source == source)
        .order_by(col(SourceFileCheckpoint.path))
    ).all()
    return [
        ReadPosition(
            path=row.path,
            offset=row.offset,
            size=row.size,
            lines=row.lines,
            first_event_at=row.first_event_at,
            last_event_at=row.last_event_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ]


def source_state(session: Session, source: str) -> SourceState | None:
    """What the daemon last saw of a source (last scan, last draw), if anything."""
    return session.get(SourceState, source)
