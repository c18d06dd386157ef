"""The classifier is total: any search answer gives a verdict, the same one every time."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from leakwatch.core.classify import ClassifyPolicy, classify, values_equal
from leakwatch.core.events import (
    MatchedCustomer,
    MatchedMetric,
    Outcome,
    SearchItem,
    SourceEvent,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TXN = "txn-1"


class Weird:
    """A value no JSON parser produces, with a hostile equality."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("boom")

    __hash__ = object.__hash__


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["", "42", "true", "null", "1e400", "NaN", "{", "[1]", '{"a":1}']),
    st.builds(Weird),
    st.binary(max_size=4),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(st.text(max_size=3), inner, max_size=3),
    ),
    max_leaves=12,
)
properties = st.dictionaries(st.sampled_from(["a", "b", "tokens", ""]), values, max_size=4)
odd_text: Any = st.one_of(st.sampled_from([TXN, "", "acme", "api"]), st.text(max_size=4), values)
# Hypothesis bounds are naive by contract; the zone comes from `timezones`.
WINDOW_START = datetime(2026, 9, 1)  # noqa: DTZ001
WINDOW_END = datetime(2026, 12, 1)  # noqa: DTZ001
timestamps = st.one_of(
    st.none(),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),  # naive, which our own parser never yields
)
metrics = st.lists(
    st.one_of(st.builds(MatchedMetric, id=odd_text, name=odd_text), values), max_size=3
).map(tuple)
customers = st.one_of(st.none(), st.builds(MatchedCustomer, id=odd_text, name=odd_text))

search_items = st.builds(
    SearchItem,
    id=odd_text,
    transaction_id=st.one_of(st.just(TXN), odd_text),
    customer_id=odd_text,
    event_type=odd_text,
    timestamp_raw=st.one_of(st.sampled_from(["", "2026-11-20T07:00:00Z", "nope"]), odd_text),
    timestamp=timestamps,
    properties=st.one_of(properties, values),
    is_duplicate=st.one_of(st.booleans(), odd_text),
    matched_customer=customers,
    matched_billable_metrics=st.one_of(metrics, values),
)
events = st.builds(
    SourceEvent,
    transaction_id=st.just(TXN),
    customer_id=st.sampled_from(["acme", ""]),
    event_type=st.sampled_from(["api", ""]),
    timestamp=st.datetimes(min_value=WINDOW_START, max_value=WINDOW_END, timezones=st.just(UTC)),
    properties=properties,
)
policies = st.builds(
    ClassifyPolicy,
    missing_grace=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)),
    min_checks_before_missing=st.integers(0, 5),
    expected_metrics=st.dictionaries(
        st.sampled_from(["api", ""]), st.frozensets(st.text(max_size=3), max_size=2), max_size=2
    ),
)


@settings(max_examples=400, deadline=None)
@given(
    event=events,
    items=st.lists(search_items, max_size=5),
    policy=policies,
    attempts=st.integers(0, 10),
    previous=st.one_of(st.none(), st.sampled_from(Outcome)),
)
def test_classify_is_total_deterministic_and_jsonable(
    event: SourceEvent,
    items: list[SearchItem],
    policy: ClassifyPolicy,
    attempts: int,
    previous: Outcome | None,
) -> None:
    first = classify(event, items, now=NOW, policy=policy, attempts=attempts, previous=previous)
    again = classify(event, items, now=NOW, policy=policy, attempts=attempts, previous=previous)
    assert first.outcome in set(Outcome)
    assert first.outcome is not Outcome.ERROR
    assert first.outcome == again.outcome
    assert first.reason == again.reason
    assert first.differing_fields == again.differing_fields
    # Evidence lands in a jsonb column: strict JSON, no NaN.
    assert json.dumps(first.evidence, allow_nan=False) == json.dumps(again.evidence)
    assert first.duplicate_count >= 0


@settings(max_examples=200, deadline=None)
@given(event=events, policy=policies)
def test_own_payload_always_matches(event: SourceEvent, policy: ClassifyPolicy) -> None:
    """Metronome holding exactly what we sent, matched everywhere, is `matched`."""
    mirror = SearchItem(
        id="i",
        transaction_id=event.transaction_id,
        customer_id=event.customer_id,
        event_type=event.event_type,
        timestamp_raw=event.timestamp.isoformat(),
        timestamp=event.timestamp,
        properties=dict(event.properties),
        matched_customer=MatchedCustomer("c", "C"),
        matched_billable_metrics=tuple(
            MatchedMetric(name, name) for name in policy.expected_metrics.get(event.event_type, ())
        )
        or (MatchedMetric("m", "M"),),
    )
    verdict = classify(event, [mirror, mirror], now=NOW, policy=policy)
    json_safe = all(_reflexive(v) for v in event.properties.values())
    if json_safe:
        assert verdict.outcome is Outcome.MATCHED, verdict.reason


@given(a=values, b=values)
def test_values_equal_is_total_and_symmetric(a: Any, b: Any) -> None:
    assert values_equal(a, b) is values_equal(b, a)


@given(
    value=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
        lambda inner: st.one_of(st.lists(inner), st.dictionaries(st.text(), inner)),
        max_leaves=10,
    )
)
def test_json_value_equals_its_stringified_form(value: Any) -> None:
    """The sandbox stringifies values: str for strings, JSON text for everything else."""
    text = value if isinstance(value, str) else json.dumps(value)
    assert values_equal(value, value)
    assert values_equal(value, text)


def _reflexive(value: Any) -> bool:
    """Tell whether a generated value equals itself (a hostile __eq__ does not)."""
    if isinstance(value, Weird):
        return False
    if isinstance(value, dict):
        return all(_reflexive(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_reflexive(v) for v in value)
    return True
