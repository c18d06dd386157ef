"""Turn a `/v1/events/search` answer into core `SearchItem`s, strictly.

Pure: bytes in, items out. Anything off-contract raises `MalformedResponse`, which the
client records as an error for every ID of that request — never as "absent", because
a body we cannot read says nothing about what Metronome holds.
"""

import json
from collections.abc import Mapping
from typing import Any

from leakwatch.core.events import (
    MatchedCustomer,
    MatchedMetric,
    SearchItem,
    timestamp_or_none,
)
from leakwatch.core.reconcile import UsageAggregate
from leakwatch.metronome.errors import MalformedResponse

REQUIRED_STRING_FIELDS = ("id", "transaction_id", "customer_id", "event_type", "timestamp")
# The sandbox once answered with `billable_metrics`; both name the same list.
METRIC_KEYS = ("matched_billable_metrics", "billable_metrics")


def parse_search_body(body: bytes) -> list[SearchItem]:
    """Parse a whole answer: a bare JSON array of items."""
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedResponse(f"search answer is not JSON: {err}") from None
    except RecursionError:
        raise MalformedResponse("search answer is nested too deeply to be search items") from None
    if not isinstance(decoded, list):
        raise MalformedResponse(
            f"search answer is a JSON {type(decoded).__name__}, not an array of items"
        )
    return [parse_search_item(raw, index) for index, raw in enumerate(decoded)]


def _parse_metrics(raw: Mapping[str, Any], where: str) -> tuple[MatchedMetric, ...]:
    present = [key for key in METRIC_KEYS if raw.get(key) is not None]
    if not present:
        return ()
    metrics = raw[present[0]]
    if not isinstance(metrics, list):
        raise MalformedResponse(f"{where}.{present[0]}: not an array")
    parsed = []
    for index, metric in enumerate(metrics):
        if not isinstance(metric, dict):
            raise MalformedResponse(f"{where}.{present[0]}[{index}]: not an object")
        metric_id, name = metric.get("id"), metric.get("name")
        if not isinstance(metric_id, str) or not isinstance(name, str):
            raise MalformedResponse(f"{where}.{present[0]}[{index}]: id and name must be strings")
        parsed.append(MatchedMetric(id=metric_id, name=name))
    return tuple(parsed)


def _parse_customer(raw: Mapping[str, Any], where: str) -> MatchedCustomer | None:
    customer = raw.get("matched_customer")
    if customer is None:
        return None
    if not isinstance(customer, dict):
        raise MalformedResponse(f"{where}.matched_customer: not an object")
    customer_id, name = customer.get("id"), customer.get("name")
    if not isinstance(customer_id, str | None) or not isinstance(name, str | None):
        raise MalformedResponse(f"{where}.matched_customer: id and name must be strings")
    return MatchedCustomer(id=customer_id, name=name)


def parse_search_item(raw: Any, index: int = 0) -> SearchItem:
    """Parse one item; the required fields must be non-empty strings."""
    where = f"item[{index}]"
    if not isinstance(raw, dict):
        raise MalformedResponse(f"{where}: not an object")
    for name in REQUIRED_STRING_FIELDS:
        value = raw.get(name)
        if not isinstance(value, str) or not value:
            raise MalformedResponse(f"{where}.{name}: missing or not a string")
    is_duplicate = raw.get("is_duplicate")
    if not isinstance(is_duplicate, bool | None):
        raise MalformedResponse(f"{where}.is_duplicate: not a boolean")
    properties = raw.get("properties")
    if not isinstance(properties, dict | None):
        raise MalformedResponse(f"{where}.properties: not an object")
    return SearchItem(
        id=raw["id"],
        transaction_id=raw["transaction_id"],
        customer_id=raw["customer_id"],
        event_type=raw["event_type"],
        timestamp_raw=raw["timestamp"],
        timestamp=timestamp_or_none(raw["timestamp"]),
        properties=properties or {},
        is_duplicate=bool(is_duplicate),
        matched_customer=_parse_customer(raw, where),
        matched_billable_metrics=_parse_metrics(raw, where),
        processed_at=timestamp_or_none(raw.get("processed_at")),
        raw=raw,
    )


def parse_usage_page(body: bytes) -> tuple[list[UsageAggregate], str | None]:
    """Parse one page of `POST /v1/usage`: `{"data": [...], "next_page": str | null}`."""
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedResponse(f"usage answer is not JSON: {err}") from None
    except RecursionError:
        raise MalformedResponse("usage answer is nested too deeply") from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("data"), list):
        raise MalformedResponse("usage answer is not an object with a `data` array")
    next_page = decoded.get("next_page")
    if not isinstance(next_page, str | None):
        raise MalformedResponse("usage answer: next_page is not a string")
    rows = [_parse_usage_row(raw, index) for index, raw in enumerate(decoded["data"])]
    return rows, next_page or None


def _parse_usage_row(raw: Any, index: int) -> UsageAggregate:
    where = f"data[{index}]"
    if not isinstance(raw, dict):
        raise MalformedResponse(f"{where}: not an object")
    for name in ("customer_id", "billable_metric_id", "start_timestamp", "end_timestamp"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise MalformedResponse(f"{where}.{name}: missing or not a string")
    start, end = timestamp_or_none(raw["start_timestamp"]), timestamp_or_none(raw["end_timestamp"])
    if start is None or end is None:
        raise MalformedResponse(f"{where}: start_timestamp/end_timestamp are not RFC 3339")
    value = raw.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | None):
        raise MalformedResponse(f"{where}.value: not a number or null")
    metric_name = raw.get("billable_metric_name")
    return UsageAggregate(
        customer_id=raw["customer_id"],
        billable_metric_id=raw["billable_metric_id"],
        billable_metric_name=metric_name
        if isinstance(metric_name, str)
        else raw["billable_metric_id"],
        start=start,
        end=end,
        value=float(value) if value is not None else None,
    )
