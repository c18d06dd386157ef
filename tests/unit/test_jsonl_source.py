"""The JSONL source on small generated logs: uniformity, window, gzip, mapping, bad lines."""

import gzip
import json
import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from scipy.stats import chisquare  # type: ignore[import-untyped,unused-ignore]

from leakwatch.sources import BadLineReason, JsonlSourceSpec, make_source
from leakwatch.sources.jsonl import UNORDERED_WARNING
from tests.support.logs import MAX_AGE, NOW, SETTLE, event_line, source, txn_index, write_log


def test_uniform_draw_by_offsets_is_uniform_over_lines(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_log(log, 600, start=NOW - timedelta(days=5), step=timedelta(minutes=5))
    src = source(log, tmp_path)
    counts: Counter[int] = Counter()
    for seed in range(150):
        result = src.sample(40, now=NOW, rng=random.Random(seed))
        assert result.warnings == ()
        assert not result.population_exact  # the seek path, not a scan
        assert len({e.event.transaction_id for e in result.events}) == 40
        counts.update(txn_index(e.event.transaction_id) // 20 for e in result.events)
    assert chisquare([counts[b] for b in range(30)]).pvalue > 0.001
    assert result.population == pytest.approx(600, rel=0.2)


def test_draw_is_reproducible_with_a_seed(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_log(log, 500, start=NOW - timedelta(days=5), step=timedelta(minutes=5))
    src = source(log, tmp_path)
    first = src.sample(30, now=NOW, rng=random.Random(7))
    again = src.sample(30, now=NOW, rng=random.Random(7))
    assert first.events == again.events


@pytest.mark.parametrize("count", [600, 40])  # the seek path and the scan path
def test_window_edges(tmp_path: Path, count: int) -> None:
    """Events at or beyond either edge are never drawn; those just inside are."""
    log = tmp_path / "events.jsonl"
    start = NOW - MAX_AGE
    end = NOW - SETTLE
    step = (end - start) / (count - 1)
    # The first line sits exactly on the start edge, the last exactly on the end edge;
    # add lines outside the window on both sides.
    lines = [event_line(900_000 + i, start - timedelta(hours=i + 1)) for i in range(20)][::-1]
    inside = [start + i * step for i in range(count - 1)] + [end]
    lines += [event_line(i, ts) for i, ts in enumerate(inside)]
    lines += [event_line(800_000 + i, end + timedelta(minutes=i + 1)) for i in range(20)]
    log.write_bytes(b"".join(lines))
    src = source(log, tmp_path)
    seen: set[int] = set()
    for seed in range(30):
        for event in src.sample(count, now=NOW, rng=random.Random(seed)).events:
            seen.add(txn_index(event.event.transaction_id))
    assert 0 not in seen
    assert count - 1 not in seen
    assert all(0 < i < count - 1 for i in seen)
    assert {1, count - 2} <= seen


def test_unordered_log_falls_back_to_a_scan_with_a_warning(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    lines = write_log(log, 400, start=NOW - timedelta(days=5), step=timedelta(minutes=10))
    random.Random(3).shuffle(lines)
    log.write_bytes(b"".join(lines))
    result = source(log, tmp_path).sample(50, now=NOW, rng=random.Random(1))
    assert UNORDERED_WARNING in result.warnings
    assert result.population_exact
    assert result.population == 400
    assert len(result.events) == 50


def test_gz_sample_equals_plain_sample_and_builds_one_sidecar(tmp_path: Path) -> None:
    plain_dir = tmp_path / "plain"
    gz_dir = tmp_path / "gz"
    plain_dir.mkdir()
    gz_dir.mkdir()
    content = b"".join(
        write_log(
            plain_dir / "a.jsonl", 3000, start=NOW - timedelta(days=5), step=timedelta(minutes=2)
        )
    )
    (gz_dir / "a.jsonl.gz").write_bytes(gzip.compress(content))
    plain = source(plain_dir, tmp_path / "state1").sample(60, now=NOW, rng=random.Random(11))
    state = tmp_path / "state2"
    gz_source = source(gz_dir, state)
    first = gz_source.sample(60, now=NOW, rng=random.Random(11))
    later = gz_source.sample(60, now=NOW, rng=random.Random(11))
    assert first.events == plain.events == later.events
    sidecars = sorted(p.suffix for p in (state / "gzindex" / "gateway").iterdir())
    assert sidecars == [".json", ".lwz"]


def test_field_mapping_by_dotted_paths(tmp_path: Path) -> None:
    log = tmp_path / "nested.jsonl"
    rows = [
        {
            "payload": {"txn": f"n{i}", "who": {"id": "cust_1"}},
            "kind": "tokens",
            "at": (NOW - timedelta(hours=i + 1)).isoformat(),
            "extra": {"quantity": i},
        }
        for i in range(5)
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {
        "transaction_id": "payload.txn",
        "customer_id": "payload.who.id",
        "event_type": "kind",
        "timestamp": "at",
        "properties": "extra",
    }
    result = source(log, tmp_path, fields=fields).sample(10, now=NOW, rng=random.Random(0))
    events = sorted(result.events, key=lambda e: e.event.transaction_id)
    assert [e.event.transaction_id for e in events] == [f"n{i}" for i in range(5)]
    assert events[0].event.customer_id == "cust_1"
    assert events[0].event.event_type == "tokens"
    assert events[3].event.properties == {"quantity": 3}


BAD_LINES: list[tuple[bytes, BadLineReason]] = [
    (b"this is not json\n", BadLineReason.NOT_JSON),
    (b"[1, 2, 3]\n", BadLineReason.NOT_JSON),
    (b'{"transaction_id": "\xff\xfe", "x": 1}\n', BadLineReason.NOT_UTF8),
    (
        b'{"customer_id": "c", "event_type": "e", "timestamp": "2026-11-01T00:00:00Z"}\n',
        BadLineReason.NO_TRANSACTION_ID,
    ),
    (
        b'{"transaction_id": "t", "customer_id": "c", "event_type": "e", '
        b'"timestamp": "2026-11-01T00:00:00"}\n',
        BadLineReason.BAD_TIMESTAMP,
    ),
    (
        b'{"transaction_id": "t", "customer_id": "c", "event_type": "e", '
        b'"timestamp": "yesterday"}\n',
        BadLineReason.BAD_TIMESTAMP,
    ),
    (
        b'{"transaction_id": "t", "event_type": "e", "timestamp": "2026-11-01T00:00:00Z"}\n',
        BadLineReason.MISSING_FIELD,
    ),
    (
        b'{"transaction_id": "' + b"y" * 300 + b'", "customer_id": "c", "event_type": "e", '
        b'"timestamp": "2026-11-01T00:00:00Z"}\n',
        BadLineReason.TOO_LONG,
    ),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_LINES)
def test_every_bad_line_reason_is_counted_and_never_fatal(
    tmp_path: Path, raw: bytes, reason: BadLineReason
) -> None:
    log = tmp_path / "events.jsonl"
    good = event_line(1, NOW - timedelta(hours=1))
    log.write_bytes(good + raw * 7 + good.replace(b"t000001", b"t000002"))
    src = source(log, tmp_path, max_line_bytes=256)
    scan = src.scan_new((), now=NOW)
    assert scan.bad_lines == {reason: 7}
    assert len(scan.bad_examples[reason]) == 5
    assert sum(v.events for v in scan.volumes.values()) == 2
    sample = src.sample(10, now=NOW, rng=random.Random(0))
    assert sorted(e.event.transaction_id for e in sample.events) == ["t000001", "t000002"]


def test_stratified_draw_gives_rare_strata_their_floor_and_weights(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    lines = [
        event_line(
            i,
            NOW - timedelta(days=5) + i * timedelta(minutes=3),
            event_type="rare" if i % 100 == 0 else "common",
        )
        for i in range(2000)
    ]
    log.write_bytes(b"".join(lines))
    src = source(log, tmp_path, stratify_by="event_type")
    src.scan_new((), now=NOW)  # the tail counts strata and keeps the rare one's offsets
    result = src.sample(50, now=NOW, rng=random.Random(2), stratify_by="event_type", floor=10)
    by_stratum = Counter(e.stratum for e in result.events)
    assert by_stratum == {"rare": 10, "common": 40}
    assert result.strata_populations == {"rare": 20, "common": 1980}
    assert result.warnings == ()
    # Horvitz–Thompson: the weights of a stratum's draws add up to its population.
    assert sum(e.weight for e in result.events if e.stratum == "rare") == pytest.approx(20)
    assert sum(e.weight for e in result.events) == pytest.approx(2000)


def test_stratified_draw_before_the_tail_estimates_strata_from_a_pilot(tmp_path: Path) -> None:
    """No index yet (the first cycle): sizes from uniform draws, and it says so."""
    log = tmp_path / "events.jsonl"
    log.write_bytes(
        b"".join(
            event_line(i, NOW - timedelta(days=5) + i * timedelta(minutes=3), event_type=kind)
            for i, kind in enumerate(["a", "a", "a", "b"] * 500)
        )
    )
    src = source(log, tmp_path, stratify_by="event_type")
    result = src.sample(40, now=NOW, rng=random.Random(3), stratify_by="event_type", floor=5)
    drawn = Counter(e.stratum for e in result.events)
    assert drawn.total() == 40
    assert 7 <= drawn["b"] <= 14  # allocated in proportion to the estimated sizes
    assert result.strata_populations["b"] == pytest.approx(500, rel=0.2)
    assert sum(e.weight for e in result.events) == pytest.approx(2000, rel=0.1)
    assert any("estimated from the draw" in w for w in result.warnings)


def test_uniform_draw_matches_stratum_shares(tmp_path: Path) -> None:
    """Chi-square over strata: an unstratified draw mirrors the population's mix."""
    log = tmp_path / "events.jsonl"
    rng = random.Random(4)
    kinds = ["a"] * 6 + ["b"] * 3 + ["c"]
    lines = [
        event_line(
            i,
            NOW - timedelta(days=5) + i * timedelta(minutes=3),
            event_type=rng.choice(kinds),
            pad=rng.randint(0, 300),
        )
        for i in range(1500)
    ]
    log.write_bytes(b"".join(lines))
    truth = Counter(json.loads(line)["event_type"] for line in lines)
    src = source(log, tmp_path)
    seen: Counter[str] = Counter()
    for seed in range(60):
        seen.update(
            e.event.event_type for e in src.sample(50, now=NOW, rng=random.Random(seed)).events
        )
    total = sum(seen.values())
    expected = [truth[k] / 1500 * total for k in "abc"]
    assert chisquare([seen[k] for k in "abc"], expected).pvalue > 0.001


def test_appended_partial_line_is_not_sampled_or_counted(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write_log(log, 300, start=NOW - timedelta(days=5), step=timedelta(minutes=5))
    with log.open("ab") as handle:
        handle.write(event_line(999_999, NOW - timedelta(hours=1))[:-20])
    src = source(log, tmp_path)
    scan = src.scan_new((), now=NOW)
    assert scan.lines_read == 300
    ids: set[str] = set()
    for seed in range(20):
        ids.update(
            e.event.transaction_id for e in src.sample(100, now=NOW, rng=random.Random(seed)).events
        )
    assert "t999999" not in ids


def test_sample_source_draws_as_the_spec_says(tmp_path: Path) -> None:
    from leakwatch.sources import make_source, sample_source

    log = tmp_path / "events.jsonl"
    write_log(log, 300, start=NOW - timedelta(days=5), step=timedelta(minutes=5))
    spec = JsonlSourceSpec(
        name="gateway", path=str(log), sample_size=12, stratify_by="event_type", floor=3, seed=9
    )
    first = sample_source(make_source(spec, state_dir=tmp_path), now=NOW)
    again = sample_source(make_source(spec, state_dir=tmp_path), now=NOW)
    assert len(first.events) == 12
    assert first.events == again.events
    assert {e.stratum for e in first.events} == {"api", "gpu"}
    drawn = sample_source(make_source(spec, state_dir=tmp_path), 5, now=NOW, seed=1)
    assert len(drawn.events) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_age": timedelta(days=34)}, "33 days"),
        ({"stratify_by": "region"}, "stratify"),
        ({"fields": {"txn": "a.b"}}, "unknown field"),
        ({"path": ""}, "path"),
        ({"sample_size": -1}, "sample_size"),
    ],
)
def test_jsonl_spec_validation(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"name": "g", "path": "/var/log/x.jsonl", **kwargs}
    with pytest.raises(ValueError, match=message):
        JsonlSourceSpec(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one"),
        ({"table": "t", "query": "select 1"}, "exactly one"),
        ({"table": "t", "max_age": timedelta(days=40)}, "33 days"),
    ],
)
def test_sql_spec_validation(kwargs: dict[str, object], message: str) -> None:
    from leakwatch.sources import SqlSourceSpec

    with pytest.raises(ValueError, match=message):
        SqlSourceSpec(name="w", url="sqlite://", **kwargs)  # type: ignore[arg-type]


def test_json_nested_beyond_the_parsers_stack_is_not_json_not_a_crash(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    good = event_line(1, NOW - timedelta(hours=1))
    log.write_bytes(good + b"[" * 50_000 + b"\n" + good.replace(b"t000001", b"t000002"))
    src = source(log, tmp_path, max_line_bytes=1 << 20)
    scan = src.scan_new((), now=NOW)
    assert scan.bad_lines == {BadLineReason.NOT_JSON: 1}
    sample = src.sample(10, now=NOW, rng=random.Random(0))
    assert sorted(e.event.transaction_id for e in sample.events) == ["t000001", "t000002"]


def test_blank_lines_are_neither_events_nor_bad_lines(tmp_path: Path) -> None:
    log = tmp_path / "gaps.jsonl"
    at = NOW - timedelta(days=1)
    lines = [event_line(i, at) for i in range(20)]
    log.write_bytes(b"\n".join(lines[:10]) + b"\n\n  \n" + b"".join(lines[10:]) + b"\n\n")
    source = make_source(JsonlSourceSpec(name="gw", path=str(log)), state_dir=tmp_path)
    scan = source.scan_new((), now=NOW)
    assert scan.bad_lines == {}
    assert sum(delta.events for delta in scan.volumes.values()) == 20
    drawn = source.sample(20, now=NOW, rng=random.Random(1))
    assert drawn.bad_lines == {}


@pytest.mark.parametrize("stratify_by", [None, "event_type"])
def test_since_draws_only_what_settled_after_the_previous_draw(
    tmp_path: Path, stratify_by: str | None
) -> None:
    log = tmp_path / "events.jsonl"
    # One event every 2 minutes, the last one a minute ago.
    write_log(log, 3000, start=NOW - timedelta(minutes=5999), step=timedelta(minutes=2))
    src = source(log, tmp_path)
    previous = NOW - timedelta(minutes=30)
    result = src.sample(50, now=NOW, rng=random.Random(4), since=previous, stratify_by=stratify_by)
    assert result.events
    earliest = previous - SETTLE
    assert all(earliest < e.event.timestamp < NOW - SETTLE for e in result.events)
    # 30 minutes of events at one per 2 minutes: fewer than asked, all of them.
    assert len(result.events) == 15
