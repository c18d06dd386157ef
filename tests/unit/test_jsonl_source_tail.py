"""Tailing a JSONL source: appends, rotation, truncation, compression, resume."""

import gzip
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from leakwatch.sources import JsonlSourceSpec, make_source
from leakwatch.sources.checkpoints import InMemoryCheckpointStore
from leakwatch.sources.jsonl import JsonlSource
from tests.support.logs import event_line

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
DAY1 = datetime(2026, 10, 30, 10, 0, tzinfo=UTC)


def lines(first: int, count: int, *, at: datetime = DAY1, event_type: str = "api") -> bytes:
    return b"".join(
        event_line(i, at + timedelta(seconds=i), event_type=event_type)
        for i in range(first, first + count)
    )


class Tailer:
    """A source plus its checkpoint store, cycled like the daemon does."""

    def __init__(self, pattern: str, state_dir: Path) -> None:
        spec = JsonlSourceSpec(name="gw", path=pattern, max_age=timedelta(days=10))
        built = make_source(spec, state_dir=state_dir)
        assert isinstance(built, JsonlSource)
        self.source = built
        self.store = InMemoryCheckpointStore()

    def cycle(self) -> int:
        result = self.source.scan_new(self.store.load("gw"), now=NOW)
        self.store.apply(result, day=NOW.date())
        return sum(v.events for v in result.volumes.values())

    def total(self, event_type: str = "api", day: date = DAY1.date()) -> int:
        return self.store.volume("gw", event_type, day)


def test_append_is_read_once(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(lines(0, 100))
    tail = Tailer(str(tmp_path / "*.jsonl*"), tmp_path / "state")
    assert tail.cycle() == 100
    assert tail.cycle() == 0
    with log.open("ab") as handle:
        handle.write(lines(100, 25))
    assert tail.cycle() == 25
    assert tail.total() == 125


def test_a_half_written_line_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    whole = lines(0, 3)
    log.write_bytes(whole[:-10])
    tail = Tailer(str(log), tmp_path / "state")
    assert tail.cycle() == 2
    log.write_bytes(whole)
    assert tail.cycle() == 1
    assert tail.total() == 3


def test_rotation_by_rename_finishes_the_old_file_and_reads_the_new(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(lines(0, 50))
    tail = Tailer(str(tmp_path / "app.jsonl*"), tmp_path / "state")
    assert tail.cycle() == 50
    with log.open("ab") as handle:  # written after the last cycle, before rotation
        handle.write(lines(50, 10))
    log.rename(tmp_path / "app.jsonl.1")
    log.write_bytes(lines(1000, 7))
    assert tail.cycle() == 17
    assert tail.total() == 67


def test_compressed_rotated_file_is_not_counted_again(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(lines(0, 40))
    tail = Tailer(str(tmp_path / "app.jsonl*"), tmp_path / "state")
    assert tail.cycle() == 40
    rotated = tmp_path / "app.jsonl.1"
    log.rename(rotated)
    # logrotate's delaycompress: both copies exist for a moment, then only the .gz.
    (tmp_path / "app.jsonl.1.gz").write_bytes(gzip.compress(rotated.read_bytes() + lines(40, 5)))
    assert tail.cycle() == 0
    rotated.unlink()
    assert tail.cycle() == 5
    assert tail.cycle() == 0
    assert tail.total() == 45


def test_truncation_rereads_from_the_start(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(lines(0, 30))
    tail = Tailer(str(log), tmp_path / "state")
    assert tail.cycle() == 30
    log.write_bytes(lines(500, 4))  # copytruncate: same inode, new content
    assert tail.cycle() == 4
    assert tail.total() == 34


def test_new_files_of_the_glob_are_picked_up(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_bytes(lines(0, 10))
    tail = Tailer(str(tmp_path / "*.jsonl"), tmp_path / "state")
    assert tail.cycle() == 10
    (tmp_path / "b.jsonl").write_bytes(lines(100, 3, event_type="gpu"))
    assert tail.cycle() == 3
    assert tail.total("gpu") == 3


def test_resume_from_stored_checkpoints_in_a_new_process(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(lines(0, 20))
    first = Tailer(str(log), tmp_path / "state")
    first.cycle()
    with log.open("ab") as handle:
        handle.write(lines(20, 6))
    second = Tailer(str(log), tmp_path / "state")
    second.store = first.store  # a restart: same store, new source object
    assert second.cycle() == 6
    checkpoint = second.store.load("gw")[0]
    assert checkpoint.offset == log.stat().st_size
    assert checkpoint.lines == 26


def test_volumes_split_by_utc_day(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    midnight = datetime(2026, 10, 31, 0, 0, tzinfo=UTC)
    log.write_bytes(lines(0, 10, at=midnight - timedelta(seconds=5)))
    tail = Tailer(str(log), tmp_path / "state")
    tail.cycle()
    assert tail.total(day=date(2026, 10, 30)) == 5
    assert tail.total(day=date(2026, 10, 31)) == 5


def test_sampling_while_the_log_grows_sees_a_consistent_snapshot(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    log.write_bytes(lines(0, 400, at=NOW - timedelta(days=2)))
    tail = Tailer(str(log), tmp_path / "state")
    before = tail.source.sample(50, now=NOW, rng=random.Random(1))
    with log.open("ab") as handle:
        handle.write(lines(400, 400, at=NOW - timedelta(days=1)))
    after = tail.source.sample(200, now=NOW, rng=random.Random(1))
    assert len(before.events) == 50
    assert any(int(e.event.transaction_id[1:]) >= 400 for e in after.events)


def test_a_tail_out_of_time_stops_at_a_line_and_resumes_there(tmp_path: Path) -> None:
    """A time budget: each scan reads at least a block, then stops when asked."""
    for index in range(3):
        (tmp_path / f"app-{index}.jsonl").write_bytes(lines(index * 100, 100))
    (tmp_path / "app-3.jsonl.gz").write_bytes(gzip.compress(lines(300, 50)))
    tail = Tailer(str(tmp_path / "app-*"), tmp_path / "state")
    states = []
    for _ in range(6):
        result = tail.source.scan_new(tail.store.load("gw"), now=NOW, should_stop=lambda: True)
        tail.store.apply(result, day=NOW.date())
        states.append((result.caught_up, result.bytes_behind > 0, result.lines_read))
    assert states[:4] == [(False, True, 100)] * 3 + [(True, False, 50)]
    assert states[4:] == [(True, False, 0)] * 2
    assert tail.total() == 350


def test_a_carriage_return_inside_a_line_is_json_whitespace_not_a_line_end(
    tmp_path: Path,
) -> None:
    """Found by tests/reliability/test_fuzz.py: one event with `\\r` in it was two bad lines."""
    log = tmp_path / "app.jsonl"
    event = lines(0, 1).replace(b'", "', b'",\r"', 1)
    assert b"\r" in event
    log.write_bytes(event + b"\x00\r\x00\n" + lines(1, 1).replace(b"\n", b"\r\n"))
    tail = Tailer(str(log), tmp_path / "state")
    result = tail.source.scan_new((), now=NOW)
    assert sum(v.events for v in result.volumes.values()) == 2
    assert sum(result.bad_lines.values()) == 1


def test_the_tail_keeps_stratum_counts_and_rare_offsets_once(tmp_path: Path) -> None:
    """Per-stratum day counts for stratified draws; a repeated scan adds nothing twice."""
    from leakwatch.sources import strata_index

    log = tmp_path / "app.jsonl"
    log.write_bytes(lines(0, 30) + lines(30, 3, event_type="rare") + b"\n" + lines(33, 7))
    spec = JsonlSourceSpec(
        name="gw", path=str(log), max_age=timedelta(days=10), stratify_by="event_type"
    )
    source = make_source(spec, state_dir=tmp_path / "state")
    first = source.scan_new((), now=NOW)
    source.scan_new((), now=NOW)  # as after a crash before the checkpoint was stored
    path = strata_index.index_path(tmp_path / "state", "gw")
    index = strata_index.load_index(path, ("event_type",))
    (entry,) = index.files.values()
    assert entry.complete
    assert entry.counts == {
        "api": {DAY1.date().toordinal(): 37},
        "rare": {DAY1.date().toordinal(): 3},
    }
    content = log.read_bytes()
    offsets = [offset for offset, _at in entry.rare["rare"]]
    assert [content[o : o + 20] for o in offsets] == [lines(i, 1)[:20] for i in range(30, 33)]
    assert first.checkpoints[0].offset == entry.covered == len(content)
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_stratum_that_outgrows_the_rare_limit_keeps_no_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leakwatch.sources import strata_index

    monkeypatch.setattr(strata_index, "RARE_LIMIT", 5)
    log = tmp_path / "app.jsonl"
    log.write_bytes(lines(0, 20) + lines(20, 3, event_type="rare") + lines(23, 20))
    spec = JsonlSourceSpec(
        name="gw", path=str(log), max_age=timedelta(days=10), stratify_by="event_type"
    )
    make_source(spec, state_dir=tmp_path / "state").scan_new((), now=NOW)
    path = strata_index.index_path(tmp_path / "state", "gw")
    (entry,) = strata_index.load_index(path, ("event_type",)).files.values()
    assert set(entry.rare) == {"rare"}
    assert entry.common == ["api"]
    assert sum(entry.counts["api"].values()) == 40
