"""The `Source` protocol and the values a source hands back.

No I/O here: the results of a draw (`SampleResult`) and of a tail (`ScanResult`), the
per-file checkpoint, and the tally of bad lines.
"""

import random
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from leakwatch.core.events import DrawnEvent, SourceEvent
from leakwatch.core.sampling import Window

if TYPE_CHECKING:
    from leakwatch.sources.inventory import SourceInventory
    from leakwatch.sources.specs import SourceSpec

MAX_EXAMPLES_PER_REASON = 5
MAX_EXAMPLE_CHARS = 300

# Called with (bytes done, bytes total) as a long read advances; the CLI draws a bar.
ProgressCallback = Callable[[int, int], None]
# Asked between blocks of a long read: True stops it at a line boundary (a time budget).
StopCheck = Callable[[], bool]


class BadLineReason(StrEnum):
    """Why a line of the log could not be used as an event."""

    NOT_JSON = "not_json"
    NOT_UTF8 = "not_utf8"
    NO_TRANSACTION_ID = "no_transaction_id"
    BAD_TIMESTAMP = "bad_timestamp"
    TOO_LONG = "too_long"
    # customer_id or event_type absent or not a string: Metronome would reject it.
    MISSING_FIELD = "missing_field"


@dataclass
class BadLineTally:
    """Count bad lines by reason and keep the first few examples of each."""

    counts: Counter[BadLineReason] = field(default_factory=Counter)
    examples: dict[BadLineReason, list[str]] = field(default_factory=dict)

    def add(self, reason: BadLineReason, raw: bytes) -> None:
        if not raw.strip():
            # A blank line (a trailing newline, an editor's gap) holds no event and
            # nothing wrong: it is not counted as bad, nor does it feed the health alert.
            return
        self.counts[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < MAX_EXAMPLES_PER_REASON:
            kept.append(raw[:MAX_EXAMPLE_CHARS].decode("utf-8", "backslashreplace").rstrip("\n"))

    def merge(self, other: "BadLineTally") -> None:
        self.counts.update(other.counts)
        for reason, lines in other.examples.items():
            kept = self.examples.setdefault(reason, [])
            kept.extend(lines[: MAX_EXAMPLES_PER_REASON - len(kept)])

    def frozen_counts(self) -> dict[BadLineReason, int]:
        return dict(self.counts)

    def frozen_examples(self) -> dict[BadLineReason, tuple[str, ...]]:
        return {reason: tuple(lines) for reason, lines in self.examples.items()}


@dataclass(frozen=True, slots=True)
class FileCheckpoint:
    """How far a source has read one file, keyed by the file's identity, not its path.

    `file_key` is fixed when the file is first seen; `head_fingerprint` ("<n>:<sha256>"
    of the first n bytes of content) recognises the same content after a rename or
    compression by logrotate. `offset` is in uncompressed bytes and always sits just
    after a complete line. For a SQL source, one checkpoint carries the watermark in
    `last_event_at`.
    """

    file_key: str
    path: str
    offset: int = 0
    size: int = 0
    mtime: float = 0.0
    lines: int = 0
    head_fingerprint: str = ""
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class VolumeKey:
    event_type: str
    day: date


@dataclass(frozen=True, slots=True)
class VolumeDelta:
    """Events (and the sum of their `quantity` property) newly read for one key."""

    events: int = 0
    quantity_sum: float = 0.0


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What one tail of a source read: exact increments, never a re-count."""

    source: str
    volumes: Mapping[VolumeKey, VolumeDelta]
    strata_seen: frozenset[str]
    bad_lines: Mapping[BadLineReason, int]
    bad_examples: Mapping[BadLineReason, tuple[str, ...]]
    checkpoints: tuple[FileCheckpoint, ...]
    bytes_read: int
    lines_read: int
    notes: tuple[str, ...] = ()
    # False when the read stopped (a time budget) before the end of what is there:
    # volumes so far are exact but partial, and `bytes_behind` are still to be read.
    caught_up: bool = True
    bytes_behind: int = 0


@dataclass(frozen=True, slots=True)
class SampleResult:
    """One draw from a source, with what makes it interpretable.

    `population` is the number of eligible events in the window (exact when
    `population_exact`, else an unbiased estimate); `strata_populations` likewise per
    stratum. Bad-line counts here are those met while drawing; exact counts come from
    `scan_new`. `warnings` say when a draw was degraded (e.g. an unordered log scanned).
    """

    source: str
    window: Window
    events: tuple[DrawnEvent, ...]
    population: float
    population_exact: bool
    strata_populations: Mapping[str, float]
    bad_lines: Mapping[BadLineReason, int]
    bad_examples: Mapping[BadLineReason, tuple[str, ...]]
    warnings: tuple[str, ...] = ()


class Source(Protocol):
    """A place leakwatch samples events from and tails for volumes."""

    @property
    def name(self) -> str: ...

    @property
    def spec(self) -> "SourceSpec":
        """What the source was built from: where it reads, its window, how it draws."""
        ...

    def sample(
        self,
        n: int,
        *,
        now: datetime,
        rng: random.Random,
        stratify_by: str | None = None,
        floor: int = 0,
        progress: ProgressCallback | None = None,
        since: datetime | None = None,
        within: str | None = None,
    ) -> SampleResult:
        """Draw up to `n` events from the window; with `since`, only those settled after it.

        With `within` (a stratum of `stratify_by`, e.g. one customer), all `n` come
        from that stratum, uniformly (a follow-up probe); fewer if it holds fewer.
        """
        ...

    def scan_new(
        self,
        checkpoints: tuple[FileCheckpoint, ...],
        *,
        now: datetime,
        progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> ScanResult: ...

    def iter_events(self, start: datetime, end: datetime) -> Iterator[SourceEvent]:
        """Every usable event with start ≤ timestamp < end, once (bad lines skipped).

        For reconciliation, which reads each settled day once more; not a hot path.
        """
        ...

    def problems(self) -> list[str]:
        """Say what keeps this source from being read right now; empty when it can be.

        Cheap checks only (list and open the files, or connect), for start-up and for a
        cycle that read nothing. Each problem is one line a user can act on.
        """
        ...

    def describe(self) -> "SourceInventory":
        """What the source is made of right now (files and bytes, or the SQL sampling)."""
        ...

    def close(self) -> None:
        """Release what the source holds (a SQL source's engine); it is not used after."""
        ...
