"""The `CheckpointStore` on the store's tables: checkpoints, volumes, bad lines.

Does I/O through the SQLModel session it is given (the caller owns the transaction,
so a scan's increments and its new checkpoints commit together — a crash between them
would count appended lines twice or never).
"""

from datetime import UTC, date, datetime

from sqlmodel import Session, col, select

from leakwatch.sources.base import (
    MAX_EXAMPLES_PER_REASON,
    BadLineReason,
    FileCheckpoint,
    ScanResult,
)
from leakwatch.store.models import BadLineCount, SourceFileCheckpoint, VolumeCount


class SqlCheckpointStore:
    """Keep tailing state in `source_file_checkpoint`, `volume_count`, `bad_line_count`."""

    def __init__(self, session: Session, *, updated_at: datetime) -> None:
        self._session = session
        self._updated_at = updated_at.astimezone(UTC)

    def load(self, source: str) -> tuple[FileCheckpoint, ...]:
        rows = self._session.exec(
            select(SourceFileCheckpoint)
            .where(SourceFileCheckpoint.source == source)
            .order_by(col(SourceFileCheckpoint.file_key))
        ).all()
        return tuple(
            FileCheckpoint(
                file_key=row.file_key,
                path=row.path,
                offset=row.offset,
                size=row.size,
                mtime=row.mtime,
                lines=row.lines,
                head_fingerprint=row.head_fingerprint,
                first_event_at=row.first_event_at,
                last_event_at=row.last_event_at,
            )
            for row in rows
        )

    def apply(self, result: ScanResult, *, day: date) -> None:
        """Add the scan's counts and make its checkpoints the source's only ones."""
        session = self._session
        for key, delta in result.volumes.items():
            volume = session.exec(
                select(VolumeCount).where(
                    VolumeCount.source == result.source,
                    VolumeCount.event_type == key.event_type,
                    VolumeCount.day == key.day,
                )
            ).first()
            if volume is None:
                volume = VolumeCount(source=result.source, event_type=key.event_type, day=key.day)
            volume.events += delta.events
            volume.quantity_sum += delta.quantity_sum
            session.add(volume)
        for reason, count in result.bad_lines.items():
            self._add_bad(result, reason, count, day)
        existing = {
            row.file_key: row
            for row in session.exec(
                select(SourceFileCheckpoint).where(SourceFileCheckpoint.source == result.source)
            ).all()
        }
        keep = {checkpoint.file_key for checkpoint in result.checkpoints}
        for file_key, row in existing.items():
            if file_key not in keep:
                session.delete(row)
        for checkpoint in result.checkpoints:
            row = existing.get(checkpoint.file_key) or SourceFileCheckpoint(
                source=result.source,
                file_key=checkpoint.file_key,
                path=checkpoint.path,
                updated_at=self._updated_at,
            )
            row.path = checkpoint.path
            row.offset = checkpoint.offset
            row.size = checkpoint.size
            row.mtime = checkpoint.mtime
            row.lines = checkpoint.lines
            row.head_fingerprint = checkpoint.head_fingerprint
            row.first_event_at = checkpoint.first_event_at
            row.last_event_at = checkpoint.last_event_at
            row.updated_at = self._updated_at
            session.add(row)
        session.flush()

    def _add_bad(self, result: ScanResult, reason: BadLineReason, count: int, day: date) -> None:
        row = self._session.exec(
            select(BadLineCount).where(
                BadLineCount.source == result.source,
                BadLineCount.reason == reason.value,
                BadLineCount.day == day,
            )
        ).first()
        if row is None:
            row = BadLineCount(source=result.source, reason=reason.value, day=day)
        row.count += count
        room = MAX_EXAMPLES_PER_REASON - len(row.examples)
        if room > 0:
            # A new list, so the JSON column sees the change.
            row.examples = [*row.examples, *result.bad_examples.get(reason, ())[:room]]
        self._session.add(row)
