"""The tail's per-stratum counts and rare-stratum offsets, kept for stratified draws. I/O.

A stratified draw needs each stratum's size in the window, and a way to reach strata
too rare to meet by uniform seeks. The tail reads every line anyway, so it keeps both
here as it goes: lines per stratum per UTC day, and — while a stratum is rare, at most
`RARE_LIMIT` lines in a file — each line's offset and time. The index lives in one
sidecar per source under the state directory (msgpack, 0600, written whole and renamed);
it is keyed by each file's head fingerprint, so it follows renames and compression
like the checkpoints, and says per file how far it has counted (`covered`): a scan
that repeats lines (a crash before its checkpoint was stored) adds nothing twice, and
one that finds a gap marks the file incomplete, so draws do not trust it.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path

import msgspec

from leakwatch.files import write_private

# A stratum with more lines than this in a file is common there: its offsets are
# dropped and uniform seeks reach it. 4,096 offsets × 16 B = 64 KiB per rare stratum.
RARE_LIMIT = 4096
INDEX_FORMAT = 1


class FileStrata(msgspec.Struct):
    """What the tail counted of one file, from its start to `covered`."""

    path: str
    covered: int = 0
    complete: bool = True
    # stratum → day ordinal → lines
    counts: dict[str, dict[int, int]] = msgspec.field(default_factory=dict)
    # stratum → [(offset, epoch µs), …] while the stratum is rare in this file
    rare: dict[str, list[tuple[int, int]]] = msgspec.field(default_factory=dict)
    # strata that outgrew RARE_LIMIT in this file (offsets no longer kept)
    common: list[str] = msgspec.field(default_factory=list)


class StrataIndex(msgspec.Struct):
    format: int = INDEX_FORMAT
    fields: tuple[str, ...] = ()
    # head fingerprint → the file's strata
    files: dict[str, FileStrata] = msgspec.field(default_factory=dict)


def index_path(state_dir: Path, source: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in source) or "source"
    return state_dir / "strata" / f"{safe}.msgpack"


def load_index(path: Path, fields: tuple[str, ...]) -> StrataIndex:
    """Read the index; a missing, unreadable or differently stratified one starts empty."""
    try:
        index = msgspec.msgpack.decode(path.read_bytes(), type=StrataIndex)
    except (OSError, msgspec.DecodeError):
        return StrataIndex(fields=fields)
    if index.format != INDEX_FORMAT or tuple(index.fields) != fields:
        return StrataIndex(fields=fields)
    return index


def save_index(path: Path, index: StrataIndex, live: Iterable[str]) -> None:
    """Write the index (only files still present), atomically."""
    keep = set(live)
    index.files = {key: value for key, value in index.files.items() if key in keep}
    # Private like the other sidecars: it names customers and points into the log.
    write_private(path, msgspec.msgpack.encode(index))


class FileCounter:
    """Add the lines of one file's scan to its `FileStrata`, each line at most once."""

    def __init__(self, entry: FileStrata, start: int) -> None:
        self.entry = entry
        if start > entry.covered:
            # Lines between what the index counted and where the tail resumes were
            # never seen here: the file's counts are incomplete for good.
            entry.complete = False
        self._from = entry.covered
        self._common = set(entry.common)
        self._days: Counter[tuple[str, date]] = Counter()

    def add(
        self,
        strata: Sequence[str],
        stamps: Sequence[datetime],
        days: Sequence[date],
        offsets: Sequence[int] | None,
        end: int,
    ) -> None:
        """Count lines (stratum, UTC time and day, offset) of a block that ends at `end`.

        `offsets` may be None when every line is of a common stratum and past
        `covered`; the caller asks `needs_offsets` whether to compute them.
        """
        if end <= self._from:
            return
        if offsets is not None and offsets and offsets[0] < self._from:
            # A block read again: only its lines past what was counted are new.
            keep = [i for i, offset in enumerate(offsets) if offset >= self._from]
            strata = [strata[i] for i in keep]
            stamps = [stamps[i] for i in keep]
            days = [days[i] for i in keep]
            offsets = [offsets[i] for i in keep]
        if days and min(days) == max(days):
            # A time-ordered log's block is mostly one day: count strata, not pairs.
            day = days[0]
            for stratum, lines in Counter(strata).items():
                self._days[(stratum, day)] += lines
        else:
            self._days.update(zip(strata, days, strict=True))
        self.entry.covered = max(self.entry.covered, end)
        if offsets is None:
            return
        common = self._common
        rare = self.entry.rare
        for i in [i for i, stratum in enumerate(strata) if stratum not in common]:
            stratum = strata[i]
            if stratum in common:
                continue  # it outgrew the limit earlier in this block
            kept = rare.get(stratum)
            if kept is None:
                kept = rare[stratum] = []
            kept.append((offsets[i], int(stamps[i].timestamp() * 1_000_000)))
            if len(kept) > RARE_LIMIT:
                del rare[stratum]
                common.add(stratum)

    def needs_offsets(self, strata: Iterable[str], block_start: int) -> bool:
        """Whether a block's lines need their offsets (a rare stratum, or a repeat)."""
        return block_start < self._from or not self._common.issuperset(strata)

    def finish(self) -> None:
        counts = self.entry.counts
        for (stratum, day), lines in self._days.items():
            per_day = counts.setdefault(stratum, {})
            ordinal = day.toordinal()
            per_day[ordinal] = per_day.get(ordinal, 0) + lines
        self.entry.common = sorted(self._common)
        self._days.clear()
