"""Where checkpoints, volume counts and bad-line counts are kept between cycles.

`CheckpointStore` is the role; `InMemoryCheckpointStore` serves tests and `leakwatch
sample`; `leakwatch.store.checkpoint_repo.SqlCheckpointStore` is the real one.
"""

from collections import Counter
from datetime import date
from typing import Protocol

from leakwatch.sources.base import (
    MAX_EXAMPLES_PER_REASON,
    BadLineReason,
    FileCheckpoint,
    ScanResult,
    VolumeKey,
)


class CheckpointStore(Protocol):
    """Load a source's checkpoints; apply a scan's result atomically and idempotently."""

    def load(self, source: str) -> tuple[FileCheckpoint, ...]: ...

    def apply(self, result: ScanResult, *, day: date) -> None:
        """Add the scan's increments and replace the source's checkpoints.

        `day` is the UTC day bad lines are filed under (a bad line has no trusted time).
        """
        ...


class InMemoryCheckpointStore:
    """A `CheckpointStore` in a dict, for tests and one-off runs."""

    def __init__(self) -> None:
        self.checkpoints: dict[str, tuple[FileCheckpoint, ...]] = {}
        self.volumes: dict[tuple[str, VolumeKey], int] = {}
        self.quantities: dict[tuple[str, VolumeKey], float] = {}
        self.bad_lines: Counter[tuple[str, BadLineReason, date]] = Counter()
        self.bad_examples: dict[tuple[str, BadLineReason, date], list[str]] = {}

    def load(self, source: str) -> tuple[FileCheckpoint, ...]:
        return self.checkpoints.get(source, ())

    def apply(self, result: ScanResult, *, day: date) -> None:
        for key, delta in result.volumes.items():
            slot = (result.source, key)
            self.volumes[slot] = self.volumes.get(slot, 0) + delta.events
            self.quantities[slot] = self.quantities.get(slot, 0.0) + delta.quantity_sum
        for reason, count in result.bad_lines.items():
            bad_slot = (result.source, reason, day)
            self.bad_lines[bad_slot] += count
            kept = self.bad_examples.setdefault(bad_slot, [])
            for example in result.bad_examples.get(reason, ()):
                if len(kept) < MAX_EXAMPLES_PER_REASON:
                    kept.append(example)
        self.checkpoints[result.source] = result.checkpoints

    def volume(self, source: str, event_type: str, day: date) -> int:
        return self.volumes.get((source, VolumeKey(event_type, day)), 0)
