"""Judge one sampled event against what Metronome's search returned. Pure: no I/O.

`classify` implements the outcome table of DESIGN.md ("Outcomes of one sampled
event") as one total function: whatever the search answer holds — odd property
types, unparseable timestamps, empty strings, several accepted items — it returns a
`Verdict` and never raises. The verdict carries a plain-English reason and JSON-able
evidence (what search returned that decided it), so an engineer can debug a leak from
the stored row alone.

Decisions taken where Metronome documents nothing (see metronome-api-notes.md):

- Property values compare as *values*, not text: key order is irrelevant, ``1 == 1.0``,
  and because the sandbox was seen returning every property value as a string, a string
  equals a number, boolean, null, object or array when it is that value's JSON text
  (``42 == "42"``, ``1.5 == "1.50"``, ``True == "true"`` and ``"True"``,
  ``None == "null"``, ``{"a": 1} == '{"a": 1}'``). A boolean never equals a number
  (``True != 1``): JSON keeps them apart and so do billable-metric filters.
- A key whose value is null equals a missing key: a null carries no usage, and stores
  commonly drop null keys, so calling that a mismatch would be a false alarm.
- Timestamps compare as instants within ``ClassifyPolicy.timestamp_tolerance``
  (default 1 ms), because Metronome's examples carry millisecond precision and a
  truncated microsecond must not read as a leak.
- A ``matched_customer`` without an id and without a name counts as no match.
- ``healed`` is true when the previous verdict was ``unmatched_customer`` and the new
  one is a *decided* outcome other than ``unmatched_customer`` (an alias was added and
  Metronome re-attributed the usage); a lookup that finds nothing is not a heal.
"""

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from leakwatch.core.events import (
    DECIDED_OUTCOMES,
    MatchedMetric,
    Outcome,
    SearchItem,
    SourceEvent,
    format_timestamp,
    parse_timestamp,
)

SEARCH_WINDOW = timedelta(days=34)
# Nesting deeper than this is compared by canonical text: recursion must not be able
# to overflow the stack on a hostile answer.
_MAX_DEPTH = 32
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class ClassifyPolicy:
    """What a source configures about judging its events.

    `expected_metrics` maps an event type to the billable metrics (names or ids) that
    must match it; an event type not listed only needs some metric to match.
    """

    missing_grace: timedelta
    min_checks_before_missing: int = 1
    search_window: timedelta = SEARCH_WINDOW
    expected_metrics: Mapping[str, frozenset[str]] = field(default_factory=dict)
    timestamp_tolerance: timedelta = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one sampled event with why, and what search returned that decided it."""

    outcome: Outcome
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    duplicate_count: int = 0
    differing_fields: tuple[str, ...] = ()
    healed: bool = False


@dataclass(frozen=True, slots=True)
class _Difference:
    name: str
    source: Any
    metronome: Any


def classify(
    event: SourceEvent,
    items: Sequence[SearchItem],
    *,
    now: datetime,
    policy: ClassifyPolicy,
    attempts: int = 1,
    previous: Outcome | None = None,
) -> Verdict:
    """Decide the outcome of `event` from the search `items` returned at `now`.

    `items` may hold items for other transaction ids (one search answers a batch);
    only those with the event's transaction id count. `attempts` is how many lookups
    have now been made (this one included); `previous` is the verdict before this one.
    """
    verdict = _decide(event, items, now=now, policy=policy, attempts=attempts, previous=previous)
    healed = (
        previous is Outcome.UNMATCHED_CUSTOMER
        and verdict.outcome in DECIDED_OUTCOMES
        and verdict.outcome is not Outcome.UNMATCHED_CUSTOMER
    )
    if healed:
        evidence = {**verdict.evidence, "healed_from": Outcome.UNMATCHED_CUSTOMER.value}
        return Verdict(
            outcome=verdict.outcome,
            reason=f"{verdict.reason} (healed: previously unmatched_customer)",
            evidence=evidence,
            duplicate_count=verdict.duplicate_count,
            differing_fields=verdict.differing_fields,
            healed=True,
        )
    return verdict


def expire_if_needed(
    event: SourceEvent, current: Outcome, *, now: datetime, policy: ClassifyPolicy
) -> Verdict | None:
    """Return an `expired` verdict when an undecided event has left the search window.

    The check cycle calls this before spending a lookup: an event still pending (or
    whose lookups only failed) once Metronome can no longer see it will never be
    decided, and counting it as missing would invent a leak. None means: leave it be.
    """
    if current not in (Outcome.PENDING, Outcome.ERROR):
        return None
    age = _age(event, now)
    if age < policy.search_window:
        return None
    return Verdict(
        outcome=Outcome.EXPIRED,
        reason=(
            f"still {current.value} when the event left the "
            f"{_days(policy.search_window)}-day search window"
        ),
        evidence={"rule": "expired", "previous": current.value, "age_s": age.total_seconds()},
    )


def error_verdict(message: str) -> Verdict:
    """Return the verdict for a lookup that itself failed (kept apart from every rate)."""
    return Verdict(
        outcome=Outcome.ERROR,
        reason=f"lookup failed: {message}",
        evidence={"rule": "error", "message": message},
    )


def _decide(
    event: SourceEvent,
    items: Sequence[SearchItem],
    *,
    now: datetime,
    policy: ClassifyPolicy,
    attempts: int,
    previous: Outcome | None,
) -> Verdict:
    related = [item for item in items if _same_text(item.transaction_id, event.transaction_id)]
    accepted = [item for item in related if not _is_duplicate(item)]
    duplicates = [item for item in related if _is_duplicate(item)]
    base: dict[str, Any] = {
        "transaction_id": event.transaction_id,
        "items_found": len(related),
        "duplicate_count": len(duplicates),
    }

    if not related:
        return _nothing_found(event, now=now, policy=policy, attempts=attempts, previous=previous)

    if not accepted:
        return Verdict(
            outcome=Outcome.DUPLICATE,
            reason=(
                f"only duplicate copies found ({len(duplicates)}); "
                "no accepted event holds this transaction id"
            ),
            evidence={
                **base,
                "rule": "only_duplicates",
                "duplicate_item_ids": [_jsonable(item.id) for item in duplicates],
            },
            duplicate_count=len(duplicates),
        )

    diffs_by_item = [_differences(event, item, policy) for item in accepted]
    chosen_index = next((i for i, diffs in enumerate(diffs_by_item) if not diffs), 0)
    chosen = accepted[chosen_index]
    diffs = diffs_by_item[chosen_index]
    base["accepted_item_id"] = _jsonable(chosen.id)
    if len(accepted) > 1:
        base["accepted_items"] = len(accepted)
        base["accepted_item_ids"] = [_jsonable(item.id) for item in accepted]

    if diffs:
        fields = tuple(d.name for d in diffs)
        differences = {
            d.name: {"source": _jsonable(d.source), "metronome": _jsonable(d.metronome)}
            for d in diffs
        }
        if duplicates:
            own_copy_seen = any(not _differences(event, item, policy) for item in duplicates)
            return Verdict(
                outcome=Outcome.DUPLICATE,
                reason=(
                    "transaction id collision: a different event was accepted first and this "
                    f"one was discarded as its duplicate (differs in {', '.join(fields)})"
                ),
                evidence={
                    **base,
                    "rule": "collision",
                    "winning_payload": _payload_of(chosen),
                    "own_copy_seen": own_copy_seen,
                    "differences": differences,
                },
                duplicate_count=len(duplicates),
                differing_fields=fields,
            )
        return Verdict(
            outcome=Outcome.MISMATCH,
            reason=f"Metronome holds a different payload: differs in {', '.join(fields)}",
            evidence={**base, "rule": "mismatch", "differences": differences},
            duplicate_count=len(duplicates),
            differing_fields=fields,
        )

    customer = chosen.matched_customer
    if customer is None or not (_truthy_text(customer.id) or _truthy_text(customer.name)):
        return Verdict(
            outcome=Outcome.UNMATCHED_CUSTOMER,
            reason=(
                f"no customer matched customer_id {_quote(event.customer_id)}; "
                "adding it as an ingest alias would re-attribute this usage"
            ),
            evidence={**base, "rule": "unmatched_customer", "customer_id": event.customer_id},
            duplicate_count=len(duplicates),
        )
    base["matched_customer"] = {"id": _jsonable(customer.id), "name": _jsonable(customer.name)}

    metrics = _metrics_of(chosen)
    metric_names = [_jsonable(m.name) for m in metrics]
    base["matched_metrics"] = metric_names
    expected = _expected_for(policy, event.event_type)
    if not metrics:
        wanted = f"; expected {_quote_all(expected)}" if expected else ""
        return Verdict(
            outcome=Outcome.UNMATCHED_METRIC,
            reason=f"no billable metric matched{wanted}",
            evidence={**base, "rule": "unmatched_metric", "expected_metrics": sorted(expected)},
            duplicate_count=len(duplicates),
        )
    if expected and not any(_in_set(m.name, expected) or _in_set(m.id, expected) for m in metrics):
        return Verdict(
            outcome=Outcome.UNMATCHED_METRIC,
            reason=(
                f"billable metrics matched ({_quote_all(metric_names)}) "
                f"but not the expected {_quote_all(expected)}"
            ),
            evidence={**base, "rule": "unexpected_metric", "expected_metrics": sorted(expected)},
            duplicate_count=len(duplicates),
        )

    resend = f"; {len(duplicates)} harmless resend(s) discarded" if duplicates else ""
    return Verdict(
        outcome=Outcome.MATCHED,
        reason=f"matched customer and billable metric {_quote_all(metric_names)}{resend}",
        evidence={**base, "rule": "matched"},
        duplicate_count=len(duplicates),
    )


def _nothing_found(
    event: SourceEvent,
    *,
    now: datetime,
    policy: ClassifyPolicy,
    attempts: int,
    previous: Outcome | None,
) -> Verdict:
    age = _age(event, now)
    evidence: dict[str, Any] = {
        "transaction_id": event.transaction_id,
        "items_found": 0,
        "age_s": age.total_seconds(),
        "attempts": attempts,
    }
    if age >= policy.search_window:
        # Search cannot see this event any more, so an empty answer proves nothing.
        if previous is not None and previous in DECIDED_OUTCOMES:
            return Verdict(
                outcome=previous,
                reason=(
                    f"left the {_days(policy.search_window)}-day search window; "
                    f"keeping the previous verdict {previous.value}"
                ),
                evidence={**evidence, "rule": "kept_after_window", "previous": previous.value},
            )
        return Verdict(
            outcome=Outcome.EXPIRED,
            reason=(
                f"not found, but the event is older than the "
                f"{_days(policy.search_window)}-day search window, so absence proves nothing"
            ),
            evidence={**evidence, "rule": "expired"},
        )
    if age < policy.missing_grace:
        return Verdict(
            outcome=Outcome.PENDING,
            reason=(
                f"not found yet; the event is {_duration(age)} old, inside the "
                f"{_duration(policy.missing_grace)} grace period"
            ),
            evidence={**evidence, "rule": "grace"},
        )
    if attempts < policy.min_checks_before_missing:
        return Verdict(
            outcome=Outcome.PENDING,
            reason=(
                f"not found after {attempts} of {policy.min_checks_before_missing} required checks"
            ),
            evidence={**evidence, "rule": "rechecks"},
        )
    return Verdict(
        outcome=Outcome.MISSING,
        reason=(
            f"not found after the {_duration(policy.missing_grace)} grace period "
            f"and {attempts} check(s)"
        ),
        evidence={**evidence, "rule": "missing"},
    )


def _differences(event: SourceEvent, item: SearchItem, policy: ClassifyPolicy) -> list[_Difference]:
    diffs: list[_Difference] = []
    if not _same_text(item.customer_id, event.customer_id):
        diffs.append(_Difference("customer_id", event.customer_id, item.customer_id))
    if not _same_text(item.event_type, event.event_type):
        diffs.append(_Difference("event_type", event.event_type, item.event_type))
    if not _same_instant(event.timestamp, item, policy.timestamp_tolerance):
        diffs.append(_Difference("timestamp", _format_instant(event.timestamp), item.timestamp_raw))
    source_props = event.properties if isinstance(event.properties, Mapping) else {}
    item_props = item.properties if isinstance(item.properties, Mapping) else {}
    if not isinstance(item.properties, Mapping) and item.properties is not None:
        diffs.append(_Difference("properties", dict(source_props), item.properties))
        return diffs
    for key in _ordered_keys(source_props, item_props):
        mine = source_props.get(key, _MISSING)
        theirs = item_props.get(key, _MISSING)
        if not values_equal(mine, theirs):
            diffs.append(
                _Difference(
                    f"properties.{key}",
                    None if mine is _MISSING else mine,
                    None if theirs is _MISSING else theirs,
                )
            )
    return diffs


def values_equal(mine: Any, theirs: Any) -> bool:
    """Tell whether two property values are the same value (see the module docstring)."""
    try:
        return _equal(mine, theirs, 0)
    except Exception:
        # Whatever a hostile value does in __eq__ or __str__, it is not the same value.
        return False


def _equal(a: Any, b: Any, depth: int) -> bool:
    if depth > _MAX_DEPTH:
        return _text_of(a) == _text_of(b)
    a_absent = a is _MISSING or a is None
    b_absent = b is _MISSING or b is None
    if a_absent or b_absent:
        if a_absent and b_absent:
            return True
        other = b if a_absent else a
        return isinstance(other, str) and other.strip() == "null"
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, str) or isinstance(b, str):
        text, value = (a, b) if isinstance(a, str) else (b, a)
        return _string_equals_value(text, value, depth)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return _numbers_equal(a, b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = _ordered_keys(a, b)
        return all(_equal(a.get(k, _MISSING), b.get(k, _MISSING), depth + 1) for k in keys)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal(x, y, depth + 1) for x, y in zip(a, b, strict=True))
    return bool(type(a) is type(b) and a == b)


def _string_equals_value(text: str, value: Any, depth: int) -> bool:
    stripped = text.strip()
    if isinstance(value, bool):
        return stripped.lower() == ("true" if value else "false")
    if _is_number(value):
        if not _JSON_NUMBER.fullmatch(stripped):
            return _non_finite_text(stripped, value)
        return _numbers_equal(Decimal(stripped), value)
    if isinstance(value, Mapping | list | tuple):
        try:
            parsed = json.loads(stripped)
        except (ValueError, RecursionError):
            return False
        if isinstance(parsed, str):
            return False
        return _equal(parsed, value, depth + 1)
    return _text_of(value) == text


def _numbers_equal(a: Any, b: Any) -> bool:
    a_dec, b_dec = _as_decimal(a), _as_decimal(b)
    if a_dec is None or b_dec is None:
        # NaN on either side: equal only to another NaN, so a resend stays a resend.
        return _is_nan(a) and _is_nan(b)
    return a_dec == b_dec


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, Decimal):
        return None if value.is_nan() else value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        # repr is the shortest text that round-trips, so 0.1 compares equal to "0.1".
        return Decimal(repr(value))
    try:
        return Decimal(int(value))
    except (TypeError, ValueError, OverflowError, InvalidOperation):
        return None


def _non_finite_text(text: str, value: Any) -> bool:
    if isinstance(value, float) and math.isinf(value):
        return text.lower() in (("infinity", "inf") if value > 0 else ("-infinity", "-inf"))
    return _is_nan(value) and text.lower() == "nan"


def _is_nan(value: Any) -> bool:
    return (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, Decimal) and value.is_nan()
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _text_of(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _ordered_keys(a: Mapping[Any, Any], b: Mapping[Any, Any]) -> list[Any]:
    keys = list(a)
    keys.extend(k for k in b if k not in a)
    return keys


def _same_text(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a == b


def _is_duplicate(item: SearchItem) -> bool:
    flag = item.is_duplicate
    return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")


def _same_instant(timestamp: datetime, item: SearchItem, tolerance: timedelta) -> bool:
    theirs = item.timestamp if isinstance(item.timestamp, datetime) else None
    if theirs is None:
        try:
            theirs = parse_timestamp(item.timestamp_raw)
        except (ValueError, TypeError, OverflowError):
            return False
    try:
        delta = abs(_as_utc(theirs) - _as_utc(timestamp))
    except (TypeError, OverflowError, AttributeError):
        return False
    return delta == timedelta(0) or delta < tolerance


def _as_utc(ts: datetime) -> datetime:
    # A naive time in our own records is taken as UTC rather than crashing a cycle.
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _age(event: SourceEvent, now: datetime) -> timedelta:
    try:
        return _as_utc(now) - _as_utc(event.timestamp)
    except (TypeError, OverflowError, AttributeError):
        return timedelta(0)


def _format_instant(ts: Any) -> str:
    try:
        return format_timestamp(_as_utc(ts))
    except (TypeError, ValueError, OverflowError, AttributeError):
        return repr(ts)


def _metrics_of(item: SearchItem) -> list[MatchedMetric]:
    metrics = item.matched_billable_metrics
    if not isinstance(metrics, tuple | list):
        return []
    return [m for m in metrics if isinstance(m, MatchedMetric)]


def _expected_for(policy: ClassifyPolicy, event_type: str) -> frozenset[str]:
    try:
        return frozenset(policy.expected_metrics.get(event_type, frozenset()))
    except TypeError:
        return frozenset()


def _in_set(value: Any, names: frozenset[str]) -> bool:
    return isinstance(value, str) and value in names


def _truthy_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _payload_of(item: SearchItem) -> dict[str, Any]:
    return {
        "id": _jsonable(item.id),
        "customer_id": _jsonable(item.customer_id),
        "event_type": _jsonable(item.event_type),
        "timestamp": _jsonable(item.timestamp_raw),
        "properties": _jsonable(item.properties),
    }


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Return a value JSON (and Postgres jsonb) accepts: no NaN, no exotic types."""
    if depth > _MAX_DEPTH:
        return _text_of(value)
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _format_instant(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    return repr(value)


def _quote(text: Any) -> str:
    return f"'{text}'"


def _quote_all(names: Any) -> str:
    return ", ".join(_quote(n) for n in sorted(str(n) for n in names))


def _days(span: timedelta) -> int:
    return span.days


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 0:
        return "0s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    parts += [f"{hours}h"] if hours else []
    parts += [f"{minutes}m"] if minutes else []
    parts += [f"{seconds}s"] if seconds or not parts else []
    return "".join(parts)
