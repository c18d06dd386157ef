"""Hostile input to the tail: over-long lines and gzip bombs cost time, never memory."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from isal import isal_zlib

from leakwatch.sources import JsonlSourceSpec, make_source
from leakwatch.sources.base import BadLineReason
from leakwatch.sources.jsonl import JsonlSource
from leakwatch.sources.readers import MIN_INFLATE_LIMIT_BYTES
from tests.support.logs import event_line

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
AT = datetime(2026, 10, 30, 10, 0, tzinfo=UTC)
GZIP_WBITS = 31


def _source(path: Path, state: Path, **options: object) -> JsonlSource:
    spec = JsonlSourceSpec(name="gw", path=str(path), max_age=timedelta(days=10), **options)  # type: ignore[arg-type]
    built = make_source(spec, state_dir=state)
    assert isinstance(built, JsonlSource)
    return built


def _events(first: int, count: int) -> bytes:
    return b"".join(event_line(i, AT + timedelta(seconds=i)) for i in range(first, first + count))


def write_bomb(path: Path, line_bytes: int, *, before: bytes = b"", after: bytes = b"") -> None:
    """A `.gz` holding one line of `line_bytes` (ratio ~1000:1), between other lines."""
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, GZIP_WBITS)
    chunk = b"x" * (1 << 20)
    with path.open("wb") as out:
        out.write(compressor.compress(before + b'{"transaction_id": "'))
        for _ in range(line_bytes >> 20):
            out.write(compressor.compress(chunk))
        out.write(compressor.compress(b'"}\n' + after))
        out.write(compressor.flush())


def test_an_over_long_line_is_dropped_to_its_newline_and_counted_once(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl"
    huge = b'{"transaction_id": "' + b"y" * (3 << 20) + b'"}\n'
    log.write_bytes(_events(0, 5) + huge + _events(5, 5))
    source = _source(log, tmp_path / "state", max_line_bytes=64 << 10)
    scan = source.scan_new((), now=NOW)
    assert sum(v.events for v in scan.volumes.values()) == 10
    assert scan.bad_lines == {BadLineReason.TOO_LONG: 1}
    assert scan.bad_examples[BadLineReason.TOO_LONG][0].startswith('{"transaction_id": "yyy')
    assert scan.checkpoints[0].offset == log.stat().st_size


def test_an_unterminated_over_long_line_waits_and_is_counted_when_it_ends(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.jsonl"
    head = b'{"transaction_id": "' + b"y" * (1 << 20)
    log.write_bytes(_events(0, 3) + head)
    source = _source(log, tmp_path / "state", max_line_bytes=64 << 10)
    first = source.scan_new((), now=NOW)
    assert first.bad_lines == {}
    assert first.checkpoints[0].offset == len(_events(0, 3))
    with log.open("ab") as handle:
        handle.write(b'"}\n' + _events(3, 2))
    second = source.scan_new(first.checkpoints, now=NOW)
    assert second.bad_lines == {BadLineReason.TOO_LONG: 1}
    assert sum(v.events for v in second.volumes.values()) == 2


def test_a_too_long_line_inside_a_gz_is_dropped_and_the_rest_counted(tmp_path: Path) -> None:
    log = tmp_path / "app.jsonl.gz"
    write_bomb(log, 8 << 20, before=_events(0, 4), after=_events(4, 6))
    source = _source(log, tmp_path / "state", max_line_bytes=64 << 10)
    scan = source.scan_new((), now=NOW)
    assert scan.bad_lines == {BadLineReason.TOO_LONG: 1}
    assert sum(v.events for v in scan.volumes.values()) == 10
    assert scan.notes == ()


CHILD = """
import json, sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from leakwatch.sources import JsonlSourceSpec, make_source
spec = JsonlSourceSpec(name="gw", path=sys.argv[1], max_age=timedelta(days=10))
source = make_source(spec, state_dir=Path(sys.argv[2]))
now = datetime(2026, 11, 2, 12, tzinfo=UTC)
scan = source.scan_new((), now=now)
sample = source.sample(10, now=now, rng=__import__("random").Random(1))
print(json.dumps({
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over exec).
    "rss_mb": int(next(
        line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")
    )) / 1024,
    "notes": list(scan.notes),
    "warnings": list(sample.warnings),
    "bad": {k.value: v for k, v in scan.bad_lines.items()},
    "events": sum(v.events for v in scan.volumes.values()),
}))
"""


def test_a_gzip_bomb_of_one_huge_line_is_cut_short_within_bounded_memory(
    tmp_path: Path,
) -> None:
    """A 256 KiB `.gz` holding one 256 MiB line: before, the tail held the whole line."""
    bomb = tmp_path / "logs" / "bomb.jsonl.gz"
    bomb.parent.mkdir()
    write_bomb(bomb, 256 << 20, before=_events(0, 3))
    assert bomb.stat().st_size * 200 < MIN_INFLATE_LIMIT_BYTES
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(bomb), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["rss_mb"] < 150, report
    assert report["events"] == 3
    assert len(report["notes"]) == 1
    assert "inflates beyond" in report["notes"][0]
    assert any("inflates beyond" in w for w in report["warnings"])
    # The draw's index was not left half-built on disk.
    assert not list((tmp_path / "state").rglob("*.lwz*"))
