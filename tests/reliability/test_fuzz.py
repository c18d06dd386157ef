"""Fuzzing the edges where outside bytes come in: log lines, config, search answers.

Hypothesis generates hostile input for the source line reader and its field mapping
(deep nesting, huge lines, NUL bytes, invalid UTF-8, duplicate keys, a wrong type in
every field, timestamps in every odd shape), the JSONL source over whole files, the
config loader (any TOML value under every key) and `/v1/events/search` answers of
every wrong shape. What must hold: every input is counted or reported — an event, a
bad-line reason, a `ConfigError`, a `MalformedResponse` — and nothing else escapes.

About 10,000 generated cases in all (see `EXAMPLES`), a few seconds of CI each.
"""

import json
import random
import string
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leakwatch.config import Settings, load_settings, settings_from_mapping
from leakwatch.core.classify import ClassifyPolicy, classify
from leakwatch.core.events import SearchItem, SourceEvent, canonical_json, timestamp_or_none
from leakwatch.errors import ConfigError
from leakwatch.metronome.errors import MalformedResponse
from leakwatch.metronome.parse import parse_search_body
from leakwatch.sources import BadLineReason, JsonlSourceSpec
from leakwatch.sources.base import BadLineTally
from leakwatch.sources.jsonl import JsonlSource
from leakwatch.sources.lines import FieldPaths, line_timestamp, parse_line
from tests.reliability.conftest import Ledger

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
FIELDS = ("transaction_id", "customer_id", "event_type", "timestamp", "properties")
# Generated cases per test; the sum is the suite's fuzzing budget (>= 10,000).
EXAMPLES = {
    "lines": 3000,
    "timestamps": 3000,
    "files": 100,
    "config": 1200,
    "config_text": 1200,
    "search": 2000,
}
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

# -- strategies ---------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)

odd_timestamps = st.one_of(
    st.text(max_size=40),
    st.integers().map(str),
    st.floats(allow_nan=True).map(str),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.builds(
        "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
        st.sampled_from([0, 1, 1969, 1970, 2026, 9999, 10_000]) | st.integers(0, 10_000),
        st.integers(1, 12) | st.sampled_from([0, 13]),
        st.integers(1, 28) | st.sampled_from([0, 29, 30, 31, 32]),
        st.sampled_from(["T", " ", "t", "_"]),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["", ".5", ".123456789", ".", ",5"]),
        st.sampled_from(["Z", "z", "+00:00", "-23:59", "+24:00", "+14:00", "", " UTC", "+0530"]),
    ),
)


def _field_value(name: str) -> st.SearchStrategy[Any]:
    """A plausible value for `name`, or any JSON value at all (a wrong type)."""
    plausible: dict[str, st.SearchStrategy[Any]] = {
        "transaction_id": st.text(min_size=1, max_size=12) | st.integers(),
        "customer_id": st.text(min_size=1, max_size=12) | st.integers(),
        "event_type": st.text(min_size=1, max_size=12),
        "timestamp": odd_timestamps,
        "properties": st.dictionaries(st.text(max_size=6), json_values, max_size=4),
    }
    return plausible[name] | json_values


@st.composite
def event_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A line's document: each field plausible, wrong-typed or absent, plus noise."""
    document: dict[str, Any] = {}
    for name in FIELDS:
        if draw(st.integers(0, 9)) > 0:
            document[name] = draw(_field_value(name))
    document.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)))
    return document


def _nested(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for key in reversed(path):
        document = {key: document}
    return document


@st.composite
def raw_lines(draw: st.DrawFn) -> bytes:
    """A log line: valid-ish JSON mangled in one of the ways real logs break."""
    kind = draw(
        st.sampled_from(
            ["event", "event", "event", "bytes", "deep", "huge", "nul", "bad_utf8", "dup_keys"]
        )
    )
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        depth = draw(st.sampled_from([100_000]) | st.integers(100, 3000))
        opener = draw(st.sampled_from([b"[", b'{"a":', b'{"transaction_id":[']))
        return opener * depth + draw(st.sampled_from([b"", b"1", b"]" * depth]))
    document = draw(event_documents())
    text = json.dumps(document, allow_nan=True, default=str)
    if kind == "huge":
        text = text[:-1] + (", " if len(document) else "") + '"pad": "' + "x" * 70_000 + '"}'
    elif kind == "nul":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["\x00", "\\u0000", "\u0000\u0000"])) + text[at:]
    elif kind == "dup_keys" and document:
        key = draw(st.sampled_from(sorted(document)))
        again = json.dumps(draw(json_values), allow_nan=True)
        text = text[:-1] + f", {json.dumps(key)}: {again}" + "}"
    raw = text.encode("utf-8", "surrogatepass")
    if kind == "bad_utf8":
        at = draw(st.integers(0, len(raw)))
        raw = (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"]))
            + raw[at:]
        )
    return raw + draw(st.sampled_from([b"", b"\n", b"\r\n"]))


field_paths = st.fixed_dictionaries(
    {
        name: st.sampled_from([name, f"payload.{name}", f"a.b.{name}", name.upper()])
        for name in FIELDS
    }
)


def _assert_usable(event: SourceEvent) -> None:
    """An accepted event can be hashed, stored and sent as the pipeline will."""
    assert event.transaction_id and event.customer_id and event.event_type
    assert event.timestamp.tzinfo is not None
    assert len(event.payload_hash) > 8
    canonical_json(event.to_ingest_json())


# -- the line reader and its field mapping ---------------------------------------------


@settings(FUZZ, max_examples=EXAMPLES["lines"])
@given(line=raw_lines(), mapping=field_paths, max_line_bytes=st.sampled_from([256, 4096, 1 << 20]))
def test_any_log_line_is_an_event_or_a_counted_bad_line(
    ledger: Ledger, line: bytes, mapping: dict[str, str], max_line_bytes: int
) -> None:
    ledger.cases += 1
    paths = FieldPaths.from_mapping(mapping)
    # The same document under the mapped paths, so mapping is exercised, not only misses.
    try:
        document = json.loads(line)
    except (ValueError, RecursionError):
        document = None
    candidates = [line]
    if isinstance(document, dict) and mapping["transaction_id"] != "transaction_id":
        prefix = tuple(mapping["transaction_id"].split("."))[:-1]
        candidates.append(json.dumps(_nested(document, prefix), default=str).encode())
    for raw in candidates:
        result = parse_line(raw, paths, max_line_bytes)
        if isinstance(result, BadLineReason):
            tally = BadLineTally()
            tally.add(result, raw)
            assert sum(tally.counts.values()) <= 1
        else:
            _assert_usable(result)
        line_timestamp(raw, paths, max_line_bytes)
    ledger.faults += 1


@settings(FUZZ, max_examples=EXAMPLES["timestamps"])
@given(text=odd_timestamps)
def test_any_timestamp_is_an_aware_instant_or_none(ledger: Ledger, text: str) -> None:
    ledger.cases += 1
    parsed = timestamp_or_none(text)
    assert parsed is None or parsed.utcoffset() == timedelta(0)


@settings(FUZZ, max_examples=EXAMPLES["files"])
@given(lines=st.lists(raw_lines(), min_size=1, max_size=12), seed=st.integers(0, 2**16))
def test_the_jsonl_source_reads_any_file_and_counts_every_bad_line(
    ledger: Ledger, tmp_path_factory: Any, lines: list[bytes], seed: int
) -> None:
    ledger.cases += 1
    folder: Path = tmp_path_factory.mktemp("fuzzlog")
    log = folder / "usage.jsonl"
    log.write_bytes(b"\n".join(line.rstrip(b"\n").replace(b"\n", b" ") for line in lines) + b"\n")
    spec = JsonlSourceSpec(
        name="fuzz", path=str(log), max_line_bytes=4096, max_age=timedelta(days=30)
    )
    source = JsonlSource(spec, state_dir=folder / "state")
    scan = source.scan_new((), now=NOW)
    counted = sum(scan.bad_lines.values()) + sum(d.events for d in scan.volumes.values())
    non_blank = sum(1 for raw in log.read_bytes().split(b"\n") if raw.strip())
    assert counted == non_blank
    result = source.sample(5, now=NOW, rng=random.Random(seed))
    for sample in result.events:
        _assert_usable(sample.event)
    ledger.faults += len(lines)


# -- the config loader ----------------------------------------------------------------

toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24)
    | st.sampled_from(["15m", "0s", "-1h", "33d", "40d", "1.5h", "mon 09:00", "", "jsonl", "sql"])
    | st.datetimes(timezones=st.none() | st.just(UTC))
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=4,
)
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "metronome": (
        "base_url",
        "requests_per_second",
        "max_ids_per_request",
        "timeout_seconds",
        "max_retries",
        "cycle_budget_share",
    ),
    "checks": (
        "every",
        "missing_grace",
        "min_checks_before_missing",
        "recheck_pending_every",
        "recheck_unmatched_customer_every",
        "recheck_share",
    ),
    "health": ("source_stale_after", "api_error_rate", "bad_line_rate", "cycles_behind"),
    "slack": ("channel",),
    "daemon": ("health_address", "retention", "shutdown_timeout", "leader_lock_key"),
    "report": ("weekly", "timezone", "out_dir", "prices", "currency"),
}
SOURCE_KEYS = (
    "name",
    "type",
    "path",
    "url",
    "table",
    "query",
    "fields",
    "settle_delay",
    "max_age",
    "sample_size",
    "stratify_by",
    "stratum_floor",
    "expected_metrics",
    "max_line_bytes",
    "seed",
)
ALERT_KEYS = (
    "name",
    "rate",
    "threshold",
    "window",
    "min_samples",
    "confidence",
    "by",
    "severity",
    "for",
    "repeat_interval",
)


def _table(keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), toml_values, max_size=len(keys))


@st.composite
def config_mappings(draw: st.DrawFn) -> dict[str, Any]:
    """A parsed config: known keys (and a few unknown) with any TOML value at all."""
    data: dict[str, Any] = {}
    for section, keys in SECTION_KEYS.items():
        if draw(st.booleans()):
            data[section] = draw(_table(keys) | toml_values)
    if draw(st.booleans()):
        data["sources"] = draw(st.lists(_table(SOURCE_KEYS), max_size=2) | toml_values)
    if draw(st.booleans()):
        data["alerts"] = draw(st.lists(_table(ALERT_KEYS), max_size=2) | toml_values)
    for key in ("database_url", "state_dir"):
        if draw(st.booleans()):
            data[key] = draw(toml_values)
    data.update(draw(st.dictionaries(st.text(max_size=10), toml_values, max_size=2)))
    return data


@settings(FUZZ, max_examples=EXAMPLES["config"])
@given(data=config_mappings())
def test_any_toml_values_under_every_key_give_settings_or_a_config_error(
    ledger: Ledger, data: dict[str, Any]
) -> None:
    ledger.cases += 1
    try:
        settings_ = settings_from_mapping(data)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        ledger.faults += 1
        return
    assert isinstance(settings_, Settings)


@settings(FUZZ, max_examples=EXAMPLES["config_text"])
@given(
    text=st.text(alphabet=string.printable + "\x00é[]=\"'", max_size=120)
    | st.builds(
        lambda section, key, value: f"[{section}]\n{key} = {value}\n",
        st.sampled_from(sorted(SECTION_KEYS)),
        st.sampled_from(sorted({k for keys in SECTION_KEYS.values() for k in keys})),
        st.sampled_from(
            [
                '"x"',
                "1",
                "-1",
                "0",
                "1e400",
                "nan",
                "inf",
                "true",
                "[1, 2]",
                "{a = 1}",
                '"1h"',
                '"0s"',
            ]
        ),
    )
)
def test_any_config_file_text_gives_settings_or_a_config_error(
    ledger: Ledger, tmp_path_factory: Any, text: str
) -> None:
    ledger.cases += 1
    path: Path = tmp_path_factory.mktemp("fuzzcfg") / "leakwatch.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        ledger.faults += 1
    try:
        load_settings(path, environ={})
    except ConfigError as exc:
        assert exc.problems


# -- search answers -------------------------------------------------------------------

GOOD_ITEM: dict[str, Any] = {
    "id": "evt-1",
    "transaction_id": "txn-1",
    "customer_id": "acme",
    "event_type": "api_request",
    "timestamp": "2026-11-20T10:00:00Z",
    "properties": {"endpoint": "/v1/things"},
    "is_duplicate": False,
    "matched_customer": {"id": "cus-1", "name": "Acme"},
    "matched_billable_metrics": [{"id": "m-1", "name": "API requests"}],
    "processed_at": "2026-11-20T10:00:01Z",
}
ITEM_KEYS = (*GOOD_ITEM, "billable_metrics")


@st.composite
def search_items(draw: st.DrawFn) -> Any:
    """An item with some fields replaced by any JSON value, or dropped."""
    item = dict(GOOD_ITEM)
    for key in draw(st.sets(st.sampled_from(ITEM_KEYS), max_size=4)):
        if draw(st.booleans()):
            item[key] = draw(json_values | odd_timestamps)
        else:
            item.pop(key, None)
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    return item


@st.composite
def search_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["items", "items", "items", "shape", "bytes", "truncated", "deep"]))
    if kind == "bytes":
        return draw(st.binary(max_size=120))
    if kind == "deep":
        return b"[" * draw(st.integers(500, 100_000))
    if kind == "shape":
        return json.dumps(draw(json_values), allow_nan=True).encode()
    body = json.dumps(draw(st.lists(search_items(), max_size=4)), allow_nan=True).encode()
    if kind == "truncated":
        return body[: draw(st.integers(0, max(0, len(body) - 1)))]
    return body


POLICY = ClassifyPolicy(missing_grace=timedelta(hours=2))
EVENT = SourceEvent(
    transaction_id="txn-1",
    customer_id="acme",
    event_type="api_request",
    timestamp=datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
    properties={"endpoint": "/v1/things"},
)


@settings(FUZZ, max_examples=EXAMPLES["search"])
@given(body=search_bodies())
def test_any_search_answer_gives_items_or_a_malformed_response(ledger: Ledger, body: bytes) -> None:
    ledger.cases += 1
    try:
        items = parse_search_body(body)
    except MalformedResponse as exc:
        assert str(exc)
        ledger.faults += 1
        return
    assert all(isinstance(item, SearchItem) for item in items)
    # What parses must also be judged: the classifier sees exactly these items.
    verdict = classify(EVENT, items, now=NOW, policy=POLICY)
    canonical_json(verdict.evidence)
