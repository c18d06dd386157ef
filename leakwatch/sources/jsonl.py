"""The JSONL source: one file, a glob or a directory of rotated files, plain or `.gz`.

Does I/O (reads the log; writes `.gz` sidecars under the state directory). A uniform
draw costs O(samples) seeks, not O(history): the window's byte range is found by binary
search on a time-ordered log, then uniform byte offsets pick the line containing each,
kept with probability c / len(line) (exactly uniform over lines). Stratified draws, and
logs that are not time-ordered, take one pass over the window instead (with a warning
for the latter). `scan_new` tails appended bytes once per cycle for exact volumes: it
reads large blocks and decodes only the fields it counts (`lines.tail_decoder`), and
its memory stays within a block and `max_line_bytes` whatever the input — an over-long
line is dropped to its newline, a `.gz` is read no further than `inflate_limit`.
"""

import bisect
import hashlib
import itertools
import operator
import random
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from leakwatch.core.events import DrawnEvent, SourceEvent, quantity_number, quantity_value
from leakwatch.core.sampling import (
    StratifiedReservoir,
    Window,
    accept_by_length,
    allocate,
    allocate_within,
    estimate_population,
    parse_stratify_by,
    sampling_window,
    settled_since,
    stratum_of,
    window_share_of_day,
)
from leakwatch.sources.base import (
    MAX_EXAMPLE_CHARS,
    BadLineReason,
    BadLineTally,
    FileCheckpoint,
    ProgressCallback,
    SampleResult,
    ScanResult,
    StopCheck,
    VolumeDelta,
    VolumeKey,
)
from leakwatch.sources.inventory import INDEXED, NOT_INDEXED, SourceInventory, files_inventory
from leakwatch.sources.lines import (
    FieldPaths,
    TailDecoder,
    line_timestamp,
    parse_line,
    tail_decoder,
)
from leakwatch.sources.objects import (
    LogPath,
    ObjectPath,
    PrefetchingReader,
    file_problems,
    list_files,
)
from leakwatch.sources.readers import (
    FINGERPRINT_BYTES,
    ContentReader,
    InflateLimitExceeded,
    PlainReader,
    fingerprint,
    fingerprint_matches,
    inflate_limit,
    inflate_limit_note,
    inflate_stream,
    open_gz,
    prune_sidecars,
    read_head,
    sidecar_paths,
)
from leakwatch.sources.specs import JsonlSourceSpec
from leakwatch.sources.strata_index import (
    FileCounter,
    FileStrata,
    StrataIndex,
    index_path,
    load_index,
    save_index,
)

# Large reads: fewer system calls, and each block is decoded in one call.
READ_BLOCK_BYTES = 8 << 20
PROBE_BYTES = 4096
ORDER_PROBES = 33
LINEAR_SEARCH_BYTES = 1 << 16
LENGTH_PROBES = 64
MIN_ACCEPT_BYTES = 16
# Below this many estimated lines per requested sample a pass is cheaper than seeking,
# and it is exact where rejection would keep hitting lines it already took.
SCAN_IF_LINES_PER_SAMPLE_BELOW = 4
ATTEMPTS_PER_SAMPLE = 200
# A draw within one group (a probe) reads windows up to this many lines whole.
SCAN_WITHIN_LINES = 200_000
# Offsets drawn ahead at a time (object storage fetches their ranges concurrently).
DRAW_BATCH = 32
# A stratified draw without the tail's index first meets this many lines per sample
# (at least MIN_PILOT) to estimate stratum sizes.
PILOT_PER_SAMPLE = 4
MIN_PILOT = 2000
# The index may lag the files by this share of the window's bytes (lines appended
# since the tail ran) and still be trusted for stratum sizes.
INDEX_SLACK = 0.01
UNORDERED_WARNING = "log not time-ordered: fell back to a scan"


@dataclass(frozen=True, slots=True)
class _Segment:
    """The part of one file whose lines may fall in the window: [lo, hi) in content bytes."""

    path: LogPath
    reader: ContentReader
    lo: int
    hi: int
    ordered: bool


@dataclass
class _DrawState:
    tally: BadLineTally = field(default_factory=BadLineTally)
    warnings: list[str] = field(default_factory=list)


class _OffsetDrawer:
    """Uniform line draws by byte offset: one attempt per `draw` (see the module doc).

    Keeps what estimating the window's line count needs: the inverse lengths of
    the lines met, and how many accepted lines were eligible.
    """

    def __init__(
        self,
        source: "JsonlSource",
        window: Window,
        segments: list[_Segment],
        probe_lengths: list[int],
        rng: random.Random,
        state: _DrawState,
    ) -> None:
        self._source = source
        self._window = window
        self._segments = segments
        self._rng = rng
        self._state = state
        self._cumulative = _cumulative(segments)
        self._total = self._cumulative[-1]
        # Half the shortest line seen: below every real line unless lengths vary wildly,
        # and any line shorter than c is reported, because it would be under-sampled.
        self.accept_bytes = max(MIN_ACCEPT_BYTES, min(probe_lengths, default=64) // 2)
        self.inverse_lengths: list[float] = []
        self.attempts = self.accepted = self.eligible = self.short_lines = 0
        # Offsets come from their own stream, drawn a batch ahead, so readers that can
        # fetch ranges concurrently (object storage) get the batch's reads at once.
        self._points = random.Random(rng.getrandbits(64))
        self._ahead: deque[int] = deque()
        self._prefetch = any(isinstance(s.reader, PrefetchingReader) for s in segments)

    def _next_point(self) -> int:
        if not self._ahead:
            batch = [self._points.randrange(self._total) for _ in range(DRAW_BATCH)]
            self._ahead.extend(batch)
            if self._prefetch:
                self._fetch_ahead(batch)
        return self._ahead.popleft()

    def _fetch_ahead(self, points: list[int]) -> None:
        """Ask each object reader for the ranges the batch's first reads will want."""
        wanted: defaultdict[int, list[tuple[int, int]]] = defaultdict(list)
        for point in points:
            index = bisect.bisect_right(self._cumulative, point) - 1
            segment = self._segments[index]
            offset = segment.lo + point - self._cumulative[index]
            start = max(segment.lo, offset - PROBE_BYTES // 2)
            wanted[index].append((start, min(segment.hi, offset + PROBE_BYTES // 2)))
        for index, ranges in wanted.items():
            reader = self._segments[index].reader
            if isinstance(reader, PrefetchingReader):
                reader.prefetch(ranges)

    def draw(self) -> tuple[int, int, SourceEvent] | None:
        """Try one offset: (segment, line start, event) for an eligible line, else None."""
        self.attempts += 1
        if self._total <= 0:
            return None
        max_line = self._source.spec.max_line_bytes
        point = self._next_point()
        index = bisect.bisect_right(self._cumulative, point) - 1
        segment = self._segments[index]
        offset = segment.lo + point - self._cumulative[index]
        bounds = _line_bounds(segment.reader, offset, segment.lo, segment.hi, max_line)
        if bounds is None:
            self._state.tally.add(BadLineReason.TOO_LONG, segment.reader.pread(offset, 200))
            self.inverse_lengths.append(0.0)
            return None
        start, end = bounds
        length = end - start
        self.inverse_lengths.append(1.0 / length)
        self.short_lines += length < self.accept_bytes
        if not accept_by_length(length, self.accept_bytes, self._rng):
            return None
        self.accepted += 1
        raw = segment.reader.pread(start, length)
        parsed = parse_line(raw, self._source._paths, max_line)
        if isinstance(parsed, BadLineReason):
            self._state.tally.add(parsed, raw)
            return None
        if not self._window.contains(parsed.timestamp):
            return None
        self.eligible += 1
        return index, start, parsed

    def population(self) -> float:
        """Estimate the eligible lines in the window from the draws so far."""
        lines_in_range = estimate_population(self._total, self.inverse_lengths)
        return lines_in_range * self.eligible / self.accepted if self.accepted else 0.0

    def warn_short_lines(self) -> None:
        if self.short_lines:
            self._state.warnings.append(
                f"{self.short_lines} lines shorter than the acceptance length "
                f"{self.accept_bytes} B: they are slightly under-sampled"
            )


def _complete_end(reader: ContentReader) -> int:
    """Find the end of the last complete line: a line still being written is not ours yet."""
    size = reader.size
    position = size
    while position > 0:
        start = max(0, position - PROBE_BYTES)
        block = reader.pread(start, position - start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _line_bounds(
    reader: ContentReader, offset: int, lo: int, hi: int, max_line_bytes: int
) -> tuple[int, int] | None:
    """Find the line containing `offset` within [lo, hi); None if longer than allowed."""
    start_guess = max(lo, offset - PROBE_BYTES // 2)
    block = reader.pread(start_guess, min(hi, offset + PROBE_BYTES // 2) - start_guess)
    within = offset - start_guess
    back = block.rfind(b"\n", 0, within)
    line_start: int | None = start_guess + back + 1 if back >= 0 else None
    if line_start is None and start_guess == lo:
        line_start = lo
    forward = block.find(b"\n", within)
    line_end: int | None = start_guess + forward + 1 if forward >= 0 else None
    step = PROBE_BYTES
    position = start_guess
    while line_start is None:
        if offset - position > max_line_bytes:
            return None
        start = max(lo, position - step)
        chunk = reader.pread(start, position - start)
        back = chunk.rfind(b"\n")
        if back >= 0:
            line_start = start + back + 1
        elif start == lo:
            line_start = lo
        position = start
        step *= 2
    position = start_guess + len(block)
    while line_end is None:
        if position - line_start > max_line_bytes or position >= hi:
            return None
        chunk = reader.pread(position, min(step, hi - position))
        if not chunk:
            return None
        forward = chunk.find(b"\n")
        if forward >= 0:
            line_end = position + forward + 1
        position += len(chunk)
        step *= 2
    if line_end - line_start > max_line_bytes:
        return None
    return line_start, line_end


class JsonlSource:
    """Sample and tail a JSONL usage log (see the module docstring for the method)."""

    def __init__(self, spec: JsonlSourceSpec, *, state_dir: Path) -> None:
        self.spec = spec
        self._paths = FieldPaths.from_mapping(spec.fields, spec.timestamp_format)
        self._index_dir = state_dir / "gzindex" / _safe_name(spec.name)
        self._fast = tail_decoder(self._paths, spec.quantity_properties.values())
        self._strata_fields = parse_stratify_by(spec.stratify_by)
        self._strata_path = index_path(state_dir, spec.name)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def index_dir(self) -> Path:
        """Where this source's `.gz` seek indexes (sidecars) live."""
        return self._index_dir

    # -- files ------------------------------------------------------------------------

    def files(self) -> list[LogPath]:
        """List the source's files in name order: a path, a directory, or a glob.

        An object-storage URL (`s3://bucket/prefix/*.jsonl*`) lists objects instead.
        """
        return list_files(self.spec.path, self.spec.storage_options)

    def problems(self) -> list[str]:
        return file_problems(self.spec.path, self.files)

    def describe(self) -> SourceInventory:
        return files_inventory(
            name=self.name,
            kind="jsonl",
            location=self.spec.path,
            list_files=self.files,
            sampling="random byte offsets, the line holding each (seek index for .gz)",
            index_state=self._index_state,
        )

    def _index_state(self, path: LogPath) -> str | None:
        if path.suffix != ".gz":
            return None
        _, meta = sidecar_paths(self._index_dir, path)
        return INDEXED if meta.exists() else NOT_INDEXED

    def close(self) -> None:
        """Nothing to release: files are opened per read."""

    def _open(self, path: LogPath, progress: ProgressCallback | None) -> ContentReader:
        if path.suffix == ".gz":
            return open_gz(path, self._index_dir, progress)
        if isinstance(path, ObjectPath):
            return path.reader()
        return PlainReader(path)

    # -- sampling ---------------------------------------------------------------------

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
        """Draw up to `n` events from the window, uniformly or stratified."""
        window = settled_since(
            sampling_window(now, self.spec.settle_delay, self.spec.max_age),
            since,
            self.spec.settle_delay,
        )
        fields = parse_stratify_by(stratify_by)
        if within is not None and not fields:
            raise ValueError("drawing within a stratum needs stratify_by")
        state = _DrawState()
        segments = self._segments(window, state, progress)
        try:
            total_bytes = sum(s.hi - s.lo for s in segments)
            all_ordered = all(s.ordered for s in segments)
            if not all_ordered:
                state.warnings.append(UNORDERED_WARNING)
            line_lengths = self._probe_lengths(segments, total_bytes, rng)
            estimated_lines = estimate_population(
                total_bytes, [1.0 / length for length in line_lengths]
            )
            scan = estimated_lines < SCAN_IF_LINES_PER_SAMPLE_BELOW * max(n, 1)
            if within is not None and estimated_lines <= SCAN_WITHIN_LINES:
                # A probe's window is a few cycles of traffic: reading it once finds
                # every event of the group, where seeks would rarely meet a small one.
                scan = True
            if not all_ordered or scan:
                return self._sample_by_scan(
                    n, window, segments, fields, floor, rng, state, progress, within
                )
            if fields:
                return self._sample_stratified(
                    n, window, segments, fields, floor, line_lengths, rng, state, within
                )
            return self._sample_by_offsets(n, window, segments, line_lengths, rng, state)
        finally:
            for segment in segments:
                segment.reader.close()

    def iter_events(self, start: datetime, end: datetime) -> Iterator[SourceEvent]:
        """Every usable event with start ≤ timestamp < end (the window found by search)."""
        # Window is open at both ends; widen by a microsecond and filter exactly below.
        window = Window(start - timedelta(microseconds=1), end)
        segments = self._segments(window, _DrawState(), None)
        tally = BadLineTally()
        try:
            for segment in segments:
                lines = _iter_lines(
                    segment.reader, segment.lo, segment.hi, self.spec.max_line_bytes, tally
                )
                for _offset, raw in lines:
                    parsed = parse_line(raw, self._paths, self.spec.max_line_bytes)
                    if isinstance(parsed, BadLineReason):
                        continue
                    if start <= parsed.timestamp < end:
                        yield parsed
        finally:
            for segment in segments:
                segment.reader.close()

    def _segments(
        self, window: Window, state: _DrawState, progress: ProgressCallback | None
    ) -> list[_Segment]:
        segments: list[_Segment] = []
        seen_heads: set[str] = set()
        # Plain files first, so a rotated file present both plain and compressed is
        # read from the cheap copy and counted once.
        for path in sorted(self.files(), key=lambda p: (p.suffix == ".gz", p.name)):
            if (path.suffix == ".gz" or isinstance(path, ObjectPath)) and path.stat().st_mtime < (
                window.start - self.spec.order_slack
            ).timestamp():
                # gzip keeps the original mtime: the last write, so the newest event. An
                # object is written whole: nothing in it is newer than its upload.
                continue
            try:
                head = read_head(path)
            except OSError as error:
                state.warnings.append(f"cannot read {path}: {error}")
                continue
            if not head:
                continue
            head_key = fingerprint(head)
            if head_key in seen_heads:
                continue
            seen_heads.add(head_key)
            try:
                reader = self._open(path, progress)
            except InflateLimitExceeded as error:
                state.warnings.append(str(error))
                continue
            segment = self._locate(path, reader, window)
            if segment is None:
                reader.close()
                continue
            segments.append(segment)
        live = [p for p in self.files() if p.suffix == ".gz"]
        prune_sidecars(
            self._index_dir, {s for p in live for s in sidecar_paths(self._index_dir, p)}
        )
        return segments

    def _timestamp_at_or_after(
        self, reader: ContentReader, position: int, hi: int
    ) -> tuple[datetime, int, int] | None:
        """Find the first line starting at or after `position` that has a timestamp."""
        if position > 0:
            bounds = _line_bounds(reader, position - 1, 0, hi, self.spec.max_line_bytes)
            position = bounds[1] if bounds else position
        while position < hi:
            bounds = _line_bounds(reader, position, position, hi, self.spec.max_line_bytes)
            if bounds is None:
                return None
            start, end = bounds
            ts = line_timestamp(reader.pread(start, end - start), self._paths, 1 << 62)
            if ts is not None:
                return ts, start, end
            position = end
        return None

    def _locate(self, path: LogPath, reader: ContentReader, window: Window) -> _Segment | None:
        """Find the byte range that may hold window events; whole file if not ordered."""
        end = _complete_end(reader)
        if end == 0:
            return None
        slack = self.spec.order_slack
        probes: list[datetime] = []
        for index in range(ORDER_PROBES):
            found = self._timestamp_at_or_after(reader, end * index // ORDER_PROBES, end)
            if found is not None:
                probes.append(found[0])
        if not probes:
            return _Segment(path, reader, 0, end, ordered=True)
        ordered = all(b >= a - slack for a, b in itertools.pairwise(probes))
        if not ordered:
            return _Segment(path, reader, 0, end, ordered=False)
        lo = self._lower_bound(reader, 0, end, window.start - slack)
        hi = self._lower_bound(reader, lo, end, window.end + slack)
        if hi <= lo:
            return None
        return _Segment(path, reader, lo, hi, ordered=True)

    def _lower_bound(self, reader: ContentReader, lo: int, hi: int, target: datetime) -> int:
        """Find the first line start in [lo, hi] whose timestamp is ≥ target (time-ordered)."""
        while hi - lo > LINEAR_SEARCH_BYTES:
            mid = (lo + hi) // 2
            found = self._timestamp_at_or_after(reader, mid, hi)
            if found is None:
                # Nothing after mid has a timestamp: judge by the line holding mid.
                bounds = _line_bounds(reader, mid, lo, hi, self.spec.max_line_bytes)
                if bounds is None:
                    break
                raw = reader.pread(bounds[0], bounds[1] - bounds[0])
                mid_ts = line_timestamp(raw, self._paths, self.spec.max_line_bytes)
                if mid_ts is not None and mid_ts < target:
                    return hi
                # Only lines without timestamps lie in [bounds[0], hi): safe to drop.
                hi = bounds[0]
                continue
            ts, start, end = found
            if ts < target:
                lo = end
            else:
                hi = start
        position = lo
        block = reader.pread(lo, hi - lo)
        for raw in _lines_of(block):
            line_ts = line_timestamp(raw, self._paths, self.spec.max_line_bytes)
            if line_ts is not None and line_ts >= target:
                return position
            position += len(raw)
        return hi

    def _probe_lengths(
        self, segments: list[_Segment], total_bytes: int, rng: random.Random
    ) -> list[int]:
        """Measure the lengths of lines met at uniform offsets (for c and a size estimate)."""
        lengths: list[int] = []
        if total_bytes == 0:
            return lengths
        cumulative = _cumulative(segments)
        for _ in range(LENGTH_PROBES):
            segment, offset = _pick(segments, cumulative, rng.randrange(total_bytes))
            bounds = _line_bounds(
                segment.reader, offset, segment.lo, segment.hi, self.spec.max_line_bytes
            )
            if bounds is not None:
                lengths.append(bounds[1] - bounds[0])
        return lengths

    def _sample_by_offsets(
        self,
        n: int,
        window: Window,
        segments: list[_Segment],
        probe_lengths: list[int],
        rng: random.Random,
        state: _DrawState,
        within: str | None = None,
    ) -> SampleResult:
        drawer = _OffsetDrawer(self, window, segments, probe_lengths, rng, state)
        taken: set[tuple[int, int]] = set()
        events: list[SourceEvent] = []
        while len(events) < n and drawer.attempts < ATTEMPTS_PER_SAMPLE * n:
            drawn = drawer.draw()
            if drawn is None or drawn[:2] in taken:
                continue
            taken.add(drawn[:2])
            events.append(drawn[2])
        drawer.warn_short_lines()
        population = drawer.population()
        weight = population / len(events) if events else 0.0
        return SampleResult(
            source=self.name,
            window=window,
            events=tuple(
                DrawnEvent(source=self.name, event=event, weight=weight) for event in events
            ),
            population=population,
            population_exact=False,
            strata_populations={},
            bad_lines=state.tally.frozen_counts(),
            bad_examples=state.tally.frozen_examples(),
            warnings=tuple(state.warnings),
        )

    def _sample_stratified(
        self,
        n: int,
        window: Window,
        segments: list[_Segment],
        fields: tuple[str, ...],
        floor: int,
        probe_lengths: list[int],
        rng: random.Random,
        state: _DrawState,
        within: str | None = None,
    ) -> SampleResult:
        """Stratified draws in O(samples): rejection from uniform seeks, plus the index.

        Stratum sizes come from the tail's index (`strata_index`): lines per stratum
        and UTC day, the window's edge days prorated. Strata whose lines the index
        holds (the rare ones) are drawn from those offsets directly; the others by
        uniform line draws, each kept while its stratum still needs lines — which
        is a simple random sample within the stratum. When the index does not cover
        the files yet (the tail is still counting the history), sizes are estimated
        from a pilot of uniform draws instead, and strata too rare to meet are missed.
        """
        drawer = _OffsetDrawer(self, window, segments, probe_lengths, rng, state)
        known = self._indexed_strata(segments, window) if fields == self._strata_fields else None
        hits: Counter[str] = Counter()
        pool: dict[str, list[tuple[int, int, SourceEvent]]] = defaultdict(list)
        seen: set[tuple[int, int]] = set()

        def offer(drawn: tuple[int, int, SourceEvent], want: Mapping[str, int] | None) -> bool:
            """Count a drawn line's stratum; keep it while the stratum needs lines.

            Returns whether this line filled its stratum's allocation.
            """
            stratum = stratum_of(drawn[2], fields) or ""
            hits[stratum] += 1
            room = n if want is None else want.get(stratum, 0)
            kept = pool[stratum]
            if drawn[:2] not in seen and len(kept) < room:
                seen.add(drawn[:2])
                kept.append(drawn)
                return len(kept) == room
            return False

        if known is None:
            state.warnings.append(
                "strata sizes estimated from the draw: the tail has not counted the "
                "history yet (strata too rare to meet are not drawn until it has)"
            )
            pilot = max(PILOT_PER_SAMPLE * n, MIN_PILOT)
            while sum(hits.values()) < pilot and drawer.attempts < ATTEMPTS_PER_SAMPLE * n:
                drawn = drawer.draw()
                if drawn is not None:
                    offer(drawn, None)
            lines = drawer.population()
            total_hits = sum(hits.values())
            populations = {h: lines * c / total_hits for h, c in hits.items()} if hits else {}
            indexed: dict[str, list[tuple[int, int]]] = {}
        else:
            populations, indexed = known
        allocation = (
            allocate(populations, n, floor)
            if within is None
            else allocate_within(populations, within, n)
        )
        picks: dict[str, list[tuple[int, int, SourceEvent | None]]] = {}
        for stratum, lines_at in indexed.items():
            count = allocation.get(stratum, 0)
            if count:
                chosen = rng.sample(lines_at, min(count, len(lines_at)))
                picks[stratum] = [(i, start, None) for i, start in chosen]
        want = {h: k for h, k in allocation.items() if k and h not in indexed}
        for stratum in list(pool):
            del pool[stratum][want.get(stratum, 0) :]
        # Without the index, strata met once in the pilot may be too rare to fill:
        # spend at most as many attempts again as the pilot took.
        cap = drawer.attempts + (ATTEMPTS_PER_SAMPLE * n if known else drawer.attempts)
        unfilled = sum(1 for h, k in want.items() if len(pool[h]) < k)
        while drawer.attempts < cap and unfilled:
            drawn = drawer.draw()
            if drawn is not None and offer(drawn, want):
                unfilled -= 1
        drawer.warn_short_lines()
        short = sorted(h for h, k in want.items() if len(pool[h]) < k)
        if short:
            state.warnings.append(
                f"{len(short)} strata got fewer draws than allocated (too rare to meet by "
                f"uniform seeks, and not in the index): {', '.join(short[:5])}"
            )
        for stratum, drawn_lines in pool.items():
            if drawn_lines:
                picks[stratum] = [(i, start, event) for i, start, event in drawn_lines]
        sampled: list[DrawnEvent] = []
        for stratum, chosen_lines in picks.items():
            events = [e for e in (self._event_at(segments, pick) for pick in chosen_lines) if e]
            if not events:
                continue
            weight = populations[stratum] / len(events)
            sampled.extend(
                DrawnEvent(source=self.name, event=e, weight=weight, stratum=stratum)
                for e in events
            )
        return SampleResult(
            source=self.name,
            window=window,
            events=tuple(sampled),
            population=float(sum(populations.values())),
            population_exact=False,
            strata_populations=dict(populations),
            bad_lines=state.tally.frozen_counts(),
            bad_examples=state.tally.frozen_examples(),
            warnings=tuple(state.warnings),
        )

    def _event_at(
        self, segments: list[_Segment], pick: tuple[int, int, SourceEvent | None]
    ) -> SourceEvent | None:
        """The event of a pick: drawn already, or read at an indexed offset."""
        index, start, event = pick
        if event is not None:
            return event
        reader = segments[index].reader
        bounds = _line_bounds(reader, start, start, reader.size, self.spec.max_line_bytes)
        if bounds is None:
            return None
        parsed = parse_line(
            reader.pread(bounds[0], bounds[1] - bounds[0]), self._paths, self.spec.max_line_bytes
        )
        return parsed if isinstance(parsed, SourceEvent) else None

    def _indexed_strata(
        self, segments: list[_Segment], window: Window
    ) -> tuple[dict[str, float], dict[str, list[tuple[int, int]]]] | None:
        """Stratum sizes in the window and the rare strata's lines, from the tail's index.

        None when the index does not cover every file (a file not counted, counted
        with a gap, or with more than `INDEX_SLACK` of its window range still unread).
        """
        index = load_index(self._strata_path, self._strata_fields)
        entries: list[FileStrata] = []
        for segment in segments:
            key = _strata_key(index, read_head(segment.path))
            entry = index.files.get(key) if key is not None else None
            if entry is None or not entry.complete:
                return None
            if segment.hi - entry.covered > INDEX_SLACK * (segment.hi - segment.lo):
                return None
            entries.append(entry)
        shares: dict[int, float] = {}
        populations: defaultdict[str, float] = defaultdict(float)
        for entry in entries:
            for stratum, per_day in entry.counts.items():
                for ordinal, lines in per_day.items():
                    share = shares.get(ordinal)
                    if share is None:
                        share = shares[ordinal] = window_share_of_day(
                            date.fromordinal(ordinal), window
                        )
                    populations[stratum] += lines * share
        common = {stratum for entry in entries for stratum in entry.common}
        start_us, end_us = (int(t.timestamp() * 1_000_000) for t in (window.start, window.end))
        indexed: dict[str, list[tuple[int, int]]] = {}
        for seg_index, entry in enumerate(entries):
            for stratum, lines_at in entry.rare.items():
                if stratum in common:
                    continue
                indexed.setdefault(stratum, []).extend(
                    (seg_index, offset) for offset, at in lines_at if start_us < at < end_us
                )
        for stratum, lines_at in indexed.items():
            populations[stratum] = float(len(lines_at))  # exact where the index has them
        return {h: p for h, p in populations.items() if p > 0}, indexed

    def _sample_by_scan(
        self,
        n: int,
        window: Window,
        segments: list[_Segment],
        fields: tuple[str, ...],
        floor: int,
        rng: random.Random,
        state: _DrawState,
        progress: ProgressCallback | None,
        within: str | None = None,
    ) -> SampleResult:
        """One pass over the candidate ranges with a reservoir per stratum.

        Reservoirs hold (segment, start, length) and the lines are re-read at the end,
        so memory is bounded by strata × n small tuples, not by the log.
        """
        reservoir: StratifiedReservoir[tuple[int, int, int]] = StratifiedReservoir(n, rng)
        total = sum(s.hi - s.lo for s in segments)
        done = 0
        for index, segment in enumerate(segments):
            lines = _iter_lines(
                segment.reader, segment.lo, segment.hi, self.spec.max_line_bytes, state.tally
            )
            for start, raw in lines:
                parsed = parse_line(raw, self._paths, self.spec.max_line_bytes)
                if isinstance(parsed, BadLineReason):
                    state.tally.add(parsed, raw)
                    continue
                if not window.contains(parsed.timestamp):
                    continue
                reservoir.offer(stratum_of(parsed, fields) or "", (index, start, len(raw)))
            done += segment.hi - segment.lo
            if progress is not None:
                progress(done, total)
        populations = reservoir.populations()
        allocation = (
            allocate(populations, n, floor if fields else 0)
            if within is None
            else allocate_within(populations, within, n)
        )
        drawn = reservoir.draw(allocation)
        sampled: list[DrawnEvent] = []
        for stratum, picks in drawn.items():
            if not picks:
                continue
            weight = populations[stratum] / len(picks)
            for seg_index, start, length in sorted(picks):
                reader = segments[seg_index].reader
                parsed = parse_line(
                    reader.pread(start, length), self._paths, self.spec.max_line_bytes
                )
                if isinstance(parsed, SourceEvent):
                    sampled.append(
                        DrawnEvent(
                            source=self.name,
                            event=parsed,
                            weight=weight,
                            stratum=stratum if fields else None,
                        )
                    )
        return SampleResult(
            source=self.name,
            window=window,
            events=tuple(sampled),
            population=float(sum(populations.values())),
            population_exact=True,
            strata_populations=({k: float(v) for k, v in populations.items()} if fields else {}),
            bad_lines=state.tally.frozen_counts(),
            bad_examples=state.tally.frozen_examples(),
            warnings=tuple(state.warnings),
        )

    # -- tailing ----------------------------------------------------------------------

    def scan_new(
        self,
        checkpoints: tuple[FileCheckpoint, ...],
        *,
        now: datetime,
        progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> ScanResult:
        """Read what was appended since `checkpoints`, once; return increments and new ones.

        Files are matched to checkpoints by the fingerprint of their first KiB, so a
        rename (rotation) continues where it stopped, a compressed rotated file is not
        read again, a new file starts at 0, and a file that shrank (truncation) is
        re-read from its start. When `should_stop` says so (checked between blocks),
        the read ends at a line boundary: files not reached keep their checkpoints,
        and the result says it has not caught up.
        """
        del now
        tally = BadLineTally()
        volumes: defaultdict[VolumeKey, list[float]] = defaultdict(lambda: [0, 0.0])
        notes: list[str] = []
        claimed: set[str] = set()
        updated: list[FileCheckpoint] = []
        bytes_read = lines_read = bytes_behind = 0
        stopped = False
        fields = self._strata_fields
        index = load_index(self._strata_path, fields) if fields else None
        live_strata: set[str] = set()
        paths = sorted(self.files(), key=lambda p: (p.suffix == ".gz", p.name))
        for path in paths:
            head = read_head(path)
            if not head:
                continue
            st = path.stat()
            strata_key = _strata_key(index, head) if index is not None else None
            if strata_key is not None:
                live_strata.add(strata_key)
            match = _match_checkpoint(checkpoints, path, head, claimed)
            if match is not None and match.file_key in claimed:
                continue  # the same content under another name (rotation in progress)
            if not stopped and bytes_read and should_stop is not None and should_stop():
                stopped = True  # (each scan reads at least one block: progress is certain)
            if stopped and not _read_through(match, path, st.st_size, st.st_mtime):
                # Out of time: keep where this file stood, count what is left of it.
                if match is not None:
                    claimed.add(match.file_key)
                    updated.append(_replace_path(match, path))
                bytes_behind += _left_to_read(match, path, st.st_size)
                continue
            start = 0
            if match is not None:
                claimed.add(match.file_key)
                start = match.offset
                if path.suffix == ".gz" and (match.size, match.mtime) == (
                    st.st_size,
                    st.st_mtime,
                ):
                    updated.append(_replace_path(match, path))
                    continue
                if path.suffix != ".gz" and st.st_size < match.offset:
                    notes.append(f"{path}: truncated, reading from the start")
                    start = 0
            else:
                same_path = [c for c in checkpoints if c.path == str(path)]
                if same_path:
                    notes.append(f"{path}: new content at this path (rotated), reading it")
            counted = _Counts()
            if index is not None:
                if strata_key is None or start == 0:
                    strata_key = fingerprint(head[:FINGERPRINT_BYTES])
                    index.files[strata_key] = FileStrata(path=str(path))
                    live_strata.add(strata_key)
                entry = index.files[strata_key]
                entry.path = str(path)
                counted.strata = FileCounter(entry, start)
            end, finished = self._tail(path, start, counted, tally, progress, notes, should_stop)
            if counted.strata is not None:
                counted.strata.finish()
            if not finished:
                stopped = True
                bytes_behind += max(0, st.st_size - end) if path.suffix != ".gz" else st.st_size
            for (event_type, day), events in counted.events.items():
                slot = volumes[VolumeKey(event_type, day)]
                slot[0] += events
                slot[1] += counted.quantities.get((event_type, day), 0.0)
            bytes_read += end - start
            lines_read += counted.lines
            file_key = match.file_key if match is not None else _new_file_key(path, head)
            claimed.add(file_key)
            previous_lines = match.lines if match is not None and start > 0 else 0
            updated.append(
                FileCheckpoint(
                    file_key=file_key,
                    path=str(path),
                    offset=end,
                    # A .gz is done when its size and mtime match; one cut short is not.
                    size=end if path.suffix != ".gz" else (st.st_size if finished else 0),
                    mtime=st.st_mtime,
                    lines=previous_lines + counted.lines,
                    head_fingerprint=fingerprint(head[:FINGERPRINT_BYTES]),
                    first_event_at=_earliest(
                        match.first_event_at if match and start else None, counted.first
                    ),
                    last_event_at=_latest(
                        match.last_event_at if match and start else None, counted.last
                    ),
                )
            )
        if index is not None:
            save_index(self._strata_path, index, live_strata)
        return ScanResult(
            source=self.name,
            volumes={
                k: VolumeDelta(events=int(v[0]), quantity_sum=float(v[1]))
                for k, v in volumes.items()
            },
            strata_seen=frozenset(key.event_type for key in volumes),
            bad_lines=tally.frozen_counts(),
            bad_examples=tally.frozen_examples(),
            checkpoints=tuple(updated),
            bytes_read=bytes_read,
            lines_read=lines_read,
            notes=tuple(notes),
            caught_up=not stopped,
            bytes_behind=bytes_behind,
        )

    def _tail(
        self,
        path: LogPath,
        start: int,
        counted: "_Counts",
        tally: BadLineTally,
        progress: ProgressCallback | None,
        notes: list[str],
        should_stop: StopCheck | None,
    ) -> tuple[int, bool]:
        """Count complete lines from `start`; return the offset after the last one read
        and whether the file was read to its end (False: stopped by `should_stop`)."""
        if path.suffix == ".gz":
            compressed = path.stat().st_size
            limit = inflate_limit(compressed)
            with path.open("rb") as raw, inflate_stream(raw) as inflated:
                handle = _Capped(inflated, limit)
                _skip(handle, start)
                ended = self._count_stream(handle, start, counted, tally, None, 0, should_stop)
            if handle.over_limit:
                notes.append(inflate_limit_note(path, compressed, limit))
            return ended
        with path.open("rb", buffering=0) as plain:
            plain.seek(start)
            total = path.stat().st_size - start
            return self._count_stream(plain, start, counted, tally, progress, total, should_stop)

    def _count_stream(
        self,
        handle: "_Readable",
        start: int,
        counted: "_Counts",
        tally: BadLineTally,
        progress: ProgressCallback | None,
        total: int,
        should_stop: StopCheck | None,
    ) -> tuple[int, bool]:
        blocks = _LineBlocks(handle, start, self.spec.max_line_bytes, tally, should_stop)
        for block_start, data, lo, hi in blocks:
            counted.add_block(block_start, data, lo, hi, self, tally)
            if progress is not None:
                done = block_start + hi - lo - start
                progress(done, max(total, done))
        return blocks.position, not blocks.stopped


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Capped:
    """A stream that ends after `limit` bytes, remembering that it was cut short."""

    def __init__(self, handle: _Readable, limit: int) -> None:
        self._handle = handle
        self._left = limit
        self.over_limit = False

    def read(self, size: int = -1, /) -> bytes:
        if self._left <= 0:
            self.over_limit = self.over_limit or bool(self._handle.read(1))
            return b""
        block = self._handle.read(min(size, self._left) if size >= 0 else self._left)
        self._left -= len(block)
        return block


class _LineBlocks:
    """Cut a stream into blocks of complete lines; memory stays within a block and a line.

    At least one block is read; after that `should_stop` may end the read (with
    content left) at a line boundary. A line that grows past `max_line_bytes` without
    a newline is not held: it is
    dropped up to its newline and counted once as `too_long` (a gzip bomb of one huge
    line costs time, not memory). `position` is the offset just after the last
    complete line handed out or dropped; an unterminated line at the end is left
    for later, as a line still being written.
    """

    def __init__(
        self,
        handle: _Readable,
        start: int,
        max_line_bytes: int,
        tally: BadLineTally,
        should_stop: StopCheck | None = None,
    ) -> None:
        self._handle = handle
        self._max = max_line_bytes
        self._tally = tally
        self._should_stop = should_stop
        self.position = start
        # True when `should_stop` ended the read with content left (at `position`).
        self.stopped = False

    def __iter__(self) -> Iterator[tuple[int, bytes, int, int]]:
        """Yield (offset, data, lo, hi): complete lines are `data[lo:hi]`, at `offset`.

        Lines are handed out in place in the block read (no copy of the block); only
        a line that straddles two reads is joined, and handed out on its own.
        """
        carry = b""
        line_start = self.position
        dropping: bytes | None = None
        first = True
        while True:
            block = self._handle.read(READ_BLOCK_BYTES)
            if not block:
                return
            if not first and self._should_stop is not None and self._should_stop():
                self.stopped = True
                return
            first = False
            offset = 0
            if dropping is not None:
                newline = block.find(b"\n")
                line_start += len(block) if newline < 0 else newline + 1
                if newline < 0:
                    continue
                self._tally.add(BadLineReason.TOO_LONG, dropping)
                dropping = None
                self.position = line_start
                offset = newline + 1
            if carry:
                newline = block.find(b"\n", offset)
                if newline < 0:
                    carry += block[offset:]
                    offset = len(block)
                else:
                    head = carry + block[offset : newline + 1]
                    carry = b""
                    yield line_start, head, 0, len(head)
                    line_start += len(head)
                    self.position = line_start
                    offset = newline + 1
            if offset < len(block) and not carry:
                cut = block.rfind(b"\n", offset) + 1
                if cut > offset:
                    yield line_start, block, offset, cut
                    line_start += cut - offset
                    self.position = line_start
                    offset = cut
                carry = block[offset:]
            if len(carry) > self._max:
                dropping = carry[:MAX_EXAMPLE_CHARS]
                line_start += len(carry)
                carry = b""


@dataclass
class _Counts:
    events: Counter[tuple[str, date]] = field(default_factory=Counter)
    quantities: defaultdict[tuple[str, date], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    lines: int = 0
    first: datetime | None = None
    last: datetime | None = None
    # The stratified-draw index of the file being read (when the source stratifies).
    strata: FileCounter | None = None

    def add_block(
        self,
        block_start: int,
        data: bytes,
        lo: int,
        hi: int,
        source: "JsonlSource",
        tally: BadLineTally,
    ) -> None:
        """Count the complete lines `data[lo:hi]`: the fast path when every line is plain."""
        fast = source._fast
        if fast is not None and no_line_longer(data, lo, hi, source.spec.max_line_bytes):
            decoded = fast.decode_block(data, lo, hi)
            counted = None if decoded is None else self._add_decoded(decoded, fast, source)
            if counted is not None:
                assert decoded is not None
                # Blank lines are skipped by the decoder, as `add` does not count them.
                self.lines += len(decoded)
                if self.strata is not None and decoded:
                    strata = fast.strata(decoded, source._strata_fields)
                    offsets = None
                    if self.strata.needs_offsets(strata, block_start):
                        offsets = _line_starts(data[lo:hi], block_start, len(decoded))
                    self.strata.add(strata, *counted, offsets, block_start + hi - lo)
                return
        offset = block_start
        for raw in _lines_of(data[lo:hi] if (lo, hi) != (0, len(data)) else data):
            self.add(raw, source, tally, offset)
            offset += len(raw)

    def _add_decoded(
        self, decoded: list[Any], fast: TailDecoder, source: "JsonlSource"
    ) -> tuple[list[datetime], list[date]] | None:
        """Count decoded lines, returning their UTC times and days; None (nothing
        counted) when a timestamp has no zone."""
        if not decoded:
            return [], []
        stamps = list(map(fast.timestamp, decoded))
        zones = set(map(_ZONE, stamps))
        if zones != {UTC}:
            if None in zones:
                return None
            stamps = [stamp.astimezone(UTC) for stamp in stamps]
        days = list(map(datetime.date, stamps))
        types = list(map(fast.event_type, decoded))
        self.events.update(zip(types, days, strict=True))
        quantity_of = source.spec.quantity_properties
        if quantity_of:
            attrs = fast.property_attrs
            for event_type, day, item in zip(types, days, decoded, strict=True):
                name = quantity_of.get(event_type)
                if name is not None:
                    number = quantity_number(getattr(fast.properties(item), attrs[name]))
                    if number is not None:
                        self.quantities[(event_type, day)] += number
        low, high = min(stamps), max(stamps)
        if self.first is None or low < self.first:
            self.first = low
        if self.last is None or high > self.last:
            self.last = high
        return stamps, days

    def add(self, raw: bytes, source: "JsonlSource", tally: BadLineTally, offset: int = 0) -> None:
        if not raw.strip():
            return  # a blank line is neither an event nor a bad line
        self.lines += 1
        parsed = parse_line(raw, source._paths, source.spec.max_line_bytes)
        if isinstance(parsed, BadLineReason):
            tally.add(parsed, raw)
            return
        key = (parsed.event_type, parsed.timestamp.date())
        self.events[key] += 1
        quantity = quantity_value(
            parsed.properties, source.spec.quantity_properties.get(parsed.event_type)
        )
        if quantity is not None:
            self.quantities[key] += quantity
        if self.first is None or parsed.timestamp < self.first:
            self.first = parsed.timestamp
        if self.last is None or parsed.timestamp > self.last:
            self.last = parsed.timestamp
        if self.strata is not None:
            stratum = stratum_of(parsed, source._strata_fields) or ""
            stamp = parsed.timestamp
            self.strata.add([stratum], [stamp], [stamp.date()], [offset], offset + len(raw))


_ZONE = operator.attrgetter("tzinfo")


def _line_starts(block: bytes, base: int, expected: int) -> list[int]:
    """Offsets of the non-blank lines of a block of complete lines (as the decoder sees them)."""
    lines = block.split(b"\n")
    lines.pop()  # after the last newline: nothing
    starts = list(itertools.accumulate(map(_PLUS_NEWLINE, map(len, lines)), initial=base))
    starts.pop()
    if len(starts) == expected:
        return starts
    return [start for start, line in zip(starts, lines, strict=True) if line.strip()]


_PLUS_NEWLINE = (1).__add__


def _strata_key(index: StrataIndex, head: bytes) -> str | None:
    """The index entry of the file starting with `head` (its content's fingerprint)."""
    for key in index.files:
        if fingerprint_matches(key, head):
            return key
    return None


def _lines_of(data: bytes) -> list[bytes]:
    """Split `data` into lines on `\n` only, keeping it (a last unended line is kept too).

    Not `splitlines`: a lone `\r` is JSON whitespace inside a line, not a line end
    (the sampler's offsets split on `\n` too, so every path sees the same lines).
    """
    lines = [line + b"\n" for line in data.split(b"\n")]
    unended = lines.pop()[:-1]
    if unended:
        lines.append(unended)
    return lines


def no_line_longer(data: bytes, lo: int, hi: int, max_line_bytes: int) -> bool:
    """Say whether every line of `data[lo:hi]` is at most `max_line_bytes` long, cheaply.

    A line longer than M holds a newline-free run of at least M bytes, which covers a
    whole aligned window of M // 2 bytes: a newline in every such window rules it out.
    """
    window = max_line_bytes // 2
    if hi - lo <= max_line_bytes:
        return True
    return all(
        data.find(b"\n", index, index + window) >= 0 for index in range(lo, hi - window + 1, window)
    )


def _skip(handle: _Readable, count: int) -> None:
    remaining = count
    while remaining > 0:
        block = handle.read(min(READ_BLOCK_BYTES, remaining))
        if not block:
            return
        remaining -= len(block)


def _iter_lines(
    reader: ContentReader, lo: int, hi: int, max_line_bytes: int, tally: BadLineTally
) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, line) for the complete lines in [lo, hi); over-long ones are dropped."""
    blocks = _LineBlocks(_RangeStream(reader, lo, hi), lo, max_line_bytes, tally)
    for block_start, data, start, end in blocks:
        offset = block_start
        for raw in _lines_of(data[start:end]):
            yield offset, raw
            offset += len(raw)


class _RangeStream:
    """Read [lo, hi) of a `ContentReader` as a stream."""

    def __init__(self, reader: ContentReader, lo: int, hi: int) -> None:
        self._reader = reader
        self._position = lo
        self._hi = hi

    def read(self, size: int = -1, /) -> bytes:
        length = self._hi - self._position if size < 0 else min(size, self._hi - self._position)
        if length <= 0:
            return b""
        block = self._reader.pread(self._position, length)
        self._position += len(block)
        return block


def _cumulative(segments: list[_Segment]) -> list[int]:
    cumulative = [0]
    for segment in segments:
        cumulative.append(cumulative[-1] + segment.hi - segment.lo)
    return cumulative


def _pick(segments: list[_Segment], cumulative: list[int], point: int) -> tuple[_Segment, int]:
    index = bisect.bisect_right(cumulative, point) - 1
    segment = segments[index]
    return segment, segment.lo + point - cumulative[index]


def _match_checkpoint(
    checkpoints: tuple[FileCheckpoint, ...], path: LogPath, head: bytes, claimed: set[str]
) -> FileCheckpoint | None:
    matches = [c for c in checkpoints if fingerprint_matches(c.head_fingerprint, head)]
    if not matches:
        return None
    unclaimed = [c for c in matches if c.file_key not in claimed]
    pool = unclaimed or matches
    pool.sort(key=lambda c: (c.path != str(path), -c.offset))
    return pool[0]


def _replace_path(checkpoint: FileCheckpoint, path: LogPath) -> FileCheckpoint:
    return replace(checkpoint, path=str(path))


def _read_through(match: FileCheckpoint | None, path: LogPath, size: int, mtime: float) -> bool:
    """Whether the checkpoint says this file was read to its end (nothing left to do)."""
    if match is None:
        return False
    if path.suffix == ".gz":
        return (match.size, match.mtime) == (size, mtime)
    return match.offset == size


def _left_to_read(match: FileCheckpoint | None, path: LogPath, size: int) -> int:
    """Bytes of this file not read yet (compressed bytes for a `.gz`, a rough share)."""
    if path.suffix == ".gz" or match is None or match.offset > size:
        return size
    return size - match.offset


def _new_file_key(path: LogPath, head: bytes) -> str:
    st = path.stat()
    digest = hashlib.sha256(head + f"{st.st_dev}:{st.st_ino}".encode()).hexdigest()[:32]
    return f"file:{digest}"


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    values = [v for v in (a, b) if v is not None]
    return min(values) if values else None


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "source"
