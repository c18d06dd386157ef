"""The classifier against every row of DESIGN.md's outcome table and its edges."""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from leakwatch.core.classify import (
    ClassifyPolicy,
    classify,
    error_verdict,
    expire_if_needed,
    values_equal,
)
from leakwatch.core.events import (
    MatchedCustomer,
    MatchedMetric,
    Outcome,
    SearchItem,
    SourceEvent,
    format_timestamp,
    parse_timestamp,
    timestamp_or_none,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SENT_AT = NOW - timedelta(hours=5)
POLICY = ClassifyPolicy(missing_grace=timedelta(hours=2))
TXN = "txn-1"
EVENT = SourceEvent(
    transaction_id=TXN,
    customer_id="acme-alias",
    event_type="api_request",
    timestamp=SENT_AT,
    properties={"region": "eu", "tokens": 42, "nested": {"a": [1, 2.5], "b": True}},
)
ACME = MatchedCustomer(id="c0ffee", name="Acme")
API_METRIC = MatchedMetric(id="m-api", name="API requests")


def item(**overrides: Any) -> SearchItem:
    """Build the accepted, fully matched item Metronome holds for EVENT, then override."""
    fields: dict[str, Any] = {
        "id": "item-1",
        "transaction_id": TXN,
        "customer_id": EVENT.customer_id,
        "event_type": EVENT.event_type,
        "timestamp_raw": format_timestamp(EVENT.timestamp),
        "timestamp": EVENT.timestamp,
        "properties": dict(EVENT.properties),
        "matched_customer": ACME,
        "matched_billable_metrics": (API_METRIC,),
    }
    fields.update(overrides)
    return SearchItem(**fields)


def dup(**overrides: Any) -> SearchItem:
    return item(**{"id": "item-dup", **overrides, "is_duplicate": True})


@dataclass(frozen=True)
class Case:
    name: str
    items: list[SearchItem]
    outcome: Outcome
    duplicate_count: int = 0
    differing: tuple[str, ...] = ()
    event: SourceEvent = EVENT
    policy: ClassifyPolicy = POLICY
    attempts: int = 1
    now: datetime = NOW


EXPECTING_API = replace(POLICY, expected_metrics={"api_request": frozenset({"API requests"})})
EXPECTING_ID = replace(POLICY, expected_metrics={"api_request": frozenset({"m-api"})})
EXPECTING_OTHER = replace(POLICY, expected_metrics={"api_request": frozenset({"GPU seconds"})})
OTHER_EVENT = {"customer_id": "globex", "properties": {"tokens": 7}}

CASES = [
    Case("matched", [item()], Outcome.MATCHED),
    Case(
        "matched among other ids in the batch", [item(transaction_id="x"), item()], Outcome.MATCHED
    ),
    Case("harmless resend", [item(), dup()], Outcome.MATCHED, duplicate_count=1),
    Case("resend listed duplicate first", [dup(), dup(id="d2"), item()], Outcome.MATCHED, 2),
    Case("no items, inside grace", [], Outcome.PENDING, now=SENT_AT + timedelta(hours=1)),
    Case("no items, grace edge is missing", [], Outcome.MISSING, now=SENT_AT + timedelta(hours=2)),
    Case(
        "no items, 1µs before grace",
        [],
        Outcome.PENDING,
        now=SENT_AT + timedelta(hours=2) - timedelta(microseconds=1),
    ),
    Case("no items, after grace", [], Outcome.MISSING),
    Case("only other ids", [item(transaction_id="txn-2")], Outcome.MISSING),
    Case(
        "after grace but re-checks outstanding",
        [],
        Outcome.PENDING,
        policy=replace(POLICY, min_checks_before_missing=3),
        attempts=2,
    ),
    Case(
        "after grace and re-checks done",
        [],
        Outcome.MISSING,
        policy=replace(POLICY, min_checks_before_missing=3),
        attempts=3,
    ),
    Case("no items, left the window", [], Outcome.EXPIRED, now=SENT_AT + timedelta(days=34)),
    Case("event from the future", [], Outcome.PENDING, now=SENT_AT - timedelta(hours=1)),
    Case("found although old", [item()], Outcome.MATCHED, now=SENT_AT + timedelta(days=40)),
    Case("no matched customer", [item(matched_customer=None)], Outcome.UNMATCHED_CUSTOMER),
    Case(
        "empty matched customer",
        [item(matched_customer=MatchedCustomer(None, ""))],
        Outcome.UNMATCHED_CUSTOMER,
    ),
    Case("customer but no metric", [item(matched_billable_metrics=())], Outcome.UNMATCHED_METRIC),
    Case("expected metric by name", [item()], Outcome.MATCHED, policy=EXPECTING_API),
    Case("expected metric by id", [item()], Outcome.MATCHED, policy=EXPECTING_ID),
    Case("expected metric absent", [item()], Outcome.UNMATCHED_METRIC, policy=EXPECTING_OTHER),
    Case(
        "expectations for another type only",
        [item()],
        Outcome.MATCHED,
        policy=replace(POLICY, expected_metrics={"gpu": frozenset({"GPU seconds"})}),
    ),
    Case("only duplicates", [dup(), dup(id="d2")], Outcome.DUPLICATE, duplicate_count=2),
    Case(
        "collision: another payload won",
        [item(**OTHER_EVENT), dup()],
        Outcome.DUPLICATE,
        1,
        ("customer_id", "properties.region", "properties.tokens", "properties.nested"),
    ),
    Case(
        "mismatch customer",
        [item(customer_id="acme")],
        Outcome.MISMATCH,
        differing=("customer_id",),
    ),
    Case(
        "mismatch event type",
        [item(event_type="api_call")],
        Outcome.MISMATCH,
        differing=("event_type",),
    ),
    Case(
        "mismatch timestamp",
        [item(timestamp=SENT_AT + timedelta(seconds=1))],
        Outcome.MISMATCH,
        differing=("timestamp",),
    ),
    Case(
        "unparseable timestamp",
        [item(timestamp=None, timestamp_raw="yesterday")],
        Outcome.MISMATCH,
        differing=("timestamp",),
    ),
    Case("timestamp None but raw parses", [item(timestamp=None)], Outcome.MATCHED),
    Case(
        "mismatch property",
        [item(properties={**EVENT.properties, "tokens": 43})],
        Outcome.MISMATCH,
        differing=("properties.tokens",),
    ),
    Case(
        "extra property in Metronome",
        [item(properties={**EVENT.properties, "x": 1})],
        Outcome.MISMATCH,
        differing=("properties.x",),
    ),
    Case(
        "mismatch wins over unmatched customer",
        [item(customer_id="acme", matched_customer=None)],
        Outcome.MISMATCH,
        differing=("customer_id",),
    ),
    Case(
        "two accepted, one agrees", [item(id="a", customer_id="x"), item(id="b")], Outcome.MATCHED
    ),
    Case(
        "two accepted, none agrees",
        [item(id="a", customer_id="x"), item(id="b", event_type="y")],
        Outcome.MISMATCH,
        differing=("customer_id",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_outcome_table(case: Case) -> None:
    verdict = classify(
        case.event, case.items, now=case.now, policy=case.policy, attempts=case.attempts
    )
    assert verdict.outcome is case.outcome, verdict.reason
    assert verdict.duplicate_count == case.duplicate_count
    assert verdict.differing_fields == case.differing
    assert verdict.reason
    assert not verdict.healed


@pytest.mark.parametrize(
    ("mine", "theirs", "equal"),
    [
        (42, "42", True),
        (42, 42.0, True),
        (42, "42.0", True),
        (0.1, "0.1", True),
        (1.5, "1.50", True),
        (1e21, "1e+21", True),
        (-3, "-3", True),
        (42, "43", False),
        (42, "forty-two", False),
        ("42", "42.0", False),  # both strings: text is the value
        ("eu", "EU", False),
        (True, "true", True),
        (True, "True", True),
        (False, "false", True),
        (True, "false", False),
        (True, 1, False),
        (False, 0, False),
        (None, "null", True),
        (None, "", False),
        ({"a": 1, "b": [1, 2]}, {"b": [1.0, "2"], "a": "1"}, True),
        ({"a": 1}, '{"a": 1}', True),
        ([1, 2], "[1, 2]", True),
        ([1, 2], [2, 1], False),
        ([1, 2], [1, 2, 3], False),
        ({"a": 1, "b": None}, {"a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": "2"}}}, False),
        (float("nan"), float("nan"), True),
        (float("inf"), "Infinity", True),
        (10**30, "1000000000000000000000000000000", True),
        (10**30, float(10**30), True),
    ],
)
def test_values_equal(mine: Any, theirs: Any, equal: bool) -> None:
    assert values_equal(mine, theirs) is equal
    assert values_equal(theirs, mine) is equal


def test_metronome_strings_every_property_value() -> None:
    stringified = {"region": "eu", "tokens": "42", "nested": '{"a": [1, 2.5], "b": true}'}
    verdict = classify(EVENT, [item(properties=stringified)], now=NOW, policy=POLICY)
    assert verdict.outcome is Outcome.MATCHED


def test_null_property_equals_missing_key() -> None:
    event = replace(EVENT, properties={**EVENT.properties, "note": None})
    verdict = classify(event, [item()], now=NOW, policy=POLICY)
    assert verdict.outcome is Outcome.MATCHED


@pytest.mark.parametrize(
    "raw",
    ["2026-11-20T07:00:00Z", "2026-11-20T09:00:00+02:00", "2026-11-20T02:00:00.000-05:00"],
)
def test_timestamps_compare_as_instants(raw: str) -> None:
    offset_ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    verdict = classify(
        EVENT, [item(timestamp_raw=raw, timestamp=offset_ts)], now=NOW, policy=POLICY
    )
    assert verdict.outcome is Outcome.MATCHED
    assert EVENT.timestamp == datetime(2026, 11, 20, 7, tzinfo=UTC)


def test_timestamp_truncated_to_milliseconds_still_agrees() -> None:
    precise = replace(EVENT, timestamp=SENT_AT + timedelta(microseconds=123_456))
    truncated = SENT_AT + timedelta(microseconds=123_000)
    verdict = classify(precise, [item(timestamp=truncated)], now=NOW, policy=POLICY)
    assert verdict.outcome is Outcome.MATCHED


def test_event_with_other_offset_is_the_same_instant() -> None:
    tokyo = timezone(timedelta(hours=9))
    event = replace(EVENT, timestamp=SENT_AT.astimezone(tokyo))
    assert classify(event, [item()], now=NOW, policy=POLICY).outcome is Outcome.MATCHED


def test_mismatch_evidence_names_both_values() -> None:
    verdict = classify(EVENT, [item(customer_id="acme", event_type="x")], now=NOW, policy=POLICY)
    assert verdict.evidence["differences"] == {
        "customer_id": {"source": "acme-alias", "metronome": "acme"},
        "event_type": {"source": "api_request", "metronome": "x"},
    }
    assert verdict.evidence["accepted_item_id"] == "item-1"


def test_collision_evidence_says_which_payload_won() -> None:
    verdict = classify(EVENT, [item(id="winner", **OTHER_EVENT), dup()], now=NOW, policy=POLICY)
    assert verdict.evidence["rule"] == "collision"
    assert verdict.evidence["winning_payload"]["id"] == "winner"
    assert verdict.evidence["winning_payload"]["customer_id"] == "globex"
    assert verdict.evidence["own_copy_seen"] is True
    assert "collision" in verdict.reason


def test_matched_evidence_names_customer_and_metrics() -> None:
    verdict = classify(EVENT, [item(), dup()], now=NOW, policy=POLICY)
    assert verdict.evidence["matched_customer"] == {"id": "c0ffee", "name": "Acme"}
    assert verdict.evidence["matched_metrics"] == ["API requests"]
    assert verdict.evidence["duplicate_count"] == 1


def test_several_accepted_items_are_counted_in_evidence() -> None:
    verdict = classify(EVENT, [item(id="a", customer_id="x"), item(id="b")], now=NOW, policy=POLICY)
    assert verdict.evidence["accepted_items"] == 2
    assert verdict.evidence["accepted_item_id"] == "b"


def test_unmatched_metric_reason_names_the_expectation() -> None:
    verdict = classify(EVENT, [item(matched_billable_metrics=())], now=NOW, policy=EXPECTING_API)
    assert verdict.reason == "no billable metric matched; expected 'API requests'"


@pytest.mark.parametrize(
    ("previous", "items", "outcome", "healed"),
    [
        (Outcome.UNMATCHED_CUSTOMER, [item()], Outcome.MATCHED, True),
        (
            Outcome.UNMATCHED_CUSTOMER,
            [item(matched_billable_metrics=())],
            Outcome.UNMATCHED_METRIC,
            True,
        ),
        (
            Outcome.UNMATCHED_CUSTOMER,
            [item(matched_customer=None)],
            Outcome.UNMATCHED_CUSTOMER,
            False,
        ),
        (Outcome.PENDING, [item()], Outcome.MATCHED, False),
        (None, [item()], Outcome.MATCHED, False),
    ],
)
def test_heal(
    previous: Outcome | None, items: list[SearchItem], outcome: Outcome, healed: bool
) -> None:
    verdict = classify(EVENT, items, now=NOW, policy=POLICY, attempts=2, previous=previous)
    assert verdict.outcome is outcome
    assert verdict.healed is healed
    assert ("healed_from" in verdict.evidence) is healed


def test_decided_verdict_kept_when_recheck_falls_outside_window() -> None:
    late = SENT_AT + timedelta(days=35)
    verdict = classify(
        EVENT, [], now=late, policy=POLICY, attempts=5, previous=Outcome.UNMATCHED_CUSTOMER
    )
    assert verdict.outcome is Outcome.UNMATCHED_CUSTOMER
    assert not verdict.healed


@pytest.mark.parametrize(
    ("current", "age", "expired"),
    [
        (Outcome.PENDING, timedelta(days=33), False),
        (Outcome.PENDING, timedelta(days=34), True),
        (Outcome.ERROR, timedelta(days=40), True),
        (Outcome.MISSING, timedelta(days=40), False),
        (Outcome.MATCHED, timedelta(days=40), False),
    ],
)
def test_expire_if_needed(current: Outcome, age: timedelta, expired: bool) -> None:
    verdict = expire_if_needed(EVENT, current, now=SENT_AT + age, policy=POLICY)
    assert (verdict is not None and verdict.outcome is Outcome.EXPIRED) is expired


def test_error_verdict_is_kept_apart() -> None:
    verdict = error_verdict("HTTP 503")
    assert verdict.outcome is Outcome.ERROR
    assert not verdict.outcome.is_decided


@pytest.mark.parametrize("text", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_timestamp_no_instant_can_hold_is_unusable_not_a_crash(text: str) -> None:
    """Found by tests/reliability/test_fuzz.py: these raised OverflowError."""
    assert timestamp_or_none(text) is None
    with pytest.raises(ValueError, match="out of range"):
        parse_timestamp(text)
