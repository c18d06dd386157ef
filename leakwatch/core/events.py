"""The vocabulary every stage shares: source events, search items, outcomes.

Pure data. A `SourceEvent` is what the company says it sent; a `SearchItem` is what
Metronome's `/v1/events/search` says it holds; an `Outcome` is leakwatch's verdict.
"""

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Any


class Outcome(StrEnum):
    """The verdict on one sampled event (see DESIGN.md, Outcomes)."""

    MATCHED = "matched"
    PENDING = "pending"
    MISSING = "missing"
    UNMATCHED_CUSTOMER = "unmatched_customer"
    UNMATCHED_METRIC = "unmatched_metric"
    DUPLICATE = "duplicate"
    MISMATCH = "mismatch"
    EXPIRED = "expired"
    ERROR = "error"

    @property
    def is_leak(self) -> bool:
        return self in LEAKING_OUTCOMES

    @property
    def is_decided(self) -> bool:
        return self in DECIDED_OUTCOMES


LEAKING_OUTCOMES: frozenset[Outcome] = frozenset(
    {
        Outcome.MISSING,
        Outcome.UNMATCHED_CUSTOMER,
        Outcome.UNMATCHED_METRIC,
        Outcome.DUPLICATE,
        Outcome.MISMATCH,
    }
)
# Rates are leaking / decided; pending, expired and error are kept apart.
DECIDED_OUTCOMES: frozenset[Outcome] = LEAKING_OUTCOMES | {Outcome.MATCHED}


def canonical_json(value: Any) -> str:
    """Serialise with sorted keys and no spaces, so equal payloads hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def format_timestamp(ts: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as Metronome's examples write it."""
    ts = ts.astimezone(UTC)
    text = ts.isoformat(timespec="microseconds" if ts.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_timestamp(text: str) -> datetime:
    """Parse RFC 3339 (or ISO 8601 with an offset) into an aware UTC datetime.

    Raises ValueError on anything else, including a naive timestamp: a time without
    a zone is ambiguous, and guessing it would shift events across the window.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"not a timestamp: {text!r}")
    normalized = text.strip()
    if normalized.endswith(("Z", "z")):
        normalized = normalized[:-1] + "+00:00"
    parsed = datetime.fromisoformat(normalized)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp has no time zone: {text!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # Year 1 east of UTC or year 9999 west of it: no instant Python can hold.
        raise ValueError(f"timestamp out of range: {text!r}") from None


def timestamp_or_none(value: Any) -> datetime | None:
    """Parse an RFC 3339 string as `parse_timestamp` does; None for anything unusable."""
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class SourceEvent:
    """One usage event as the company's own log records it (Metronome's ingest shape)."""

    transaction_id: str
    customer_id: str
    event_type: str
    timestamp: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def payload_hash(self) -> str:
        """Identify the payload: a resend hashes equally, a collision does not.

        Cached (no slots, so the instance can keep it): identity checks, recording and
        lookups all ask, and the sampler draws far more lines than it keeps.
        """
        return payload_hash(
            self.transaction_id, self.customer_id, self.event_type, self.timestamp, self.properties
        )

    def to_ingest_json(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "customer_id": self.customer_id,
            "event_type": self.event_type,
            "timestamp": format_timestamp(self.timestamp),
            "properties": dict(self.properties),
        }


def payload_hash(
    transaction_id: str,
    customer_id: str,
    event_type: str,
    timestamp: datetime,
    properties: Mapping[str, Any],
) -> str:
    """SHA-256 (hex, 32 chars) of the canonical payload; timestamps compared as instants."""
    body = canonical_json(
        [transaction_id, customer_id, event_type, format_timestamp(timestamp), properties]
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]


def quantity_value(properties: Mapping[str, Any], name: str | None) -> float | None:
    """The numeric value of property `name` (numbers, or numeric strings), else None."""
    if name is None:
        return None
    return quantity_number(properties.get(name))


def quantity_number(value: Any) -> float | None:
    """A property value as a finite number (numbers, or numeric strings), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class DrawnEvent:
    """A source event drawn by the sampler, with what makes estimates unbiased.

    `weight` is the inverse of the event's inclusion probability (Horvitz–Thompson):
    1 / (stratum sample size / stratum population). Uniform samples share one weight.
    """

    source: str
    event: SourceEvent
    weight: float = 1.0
    stratum: str | None = None


@dataclass(frozen=True, slots=True)
class MatchedMetric:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class MatchedCustomer:
    id: str | None
    name: str | None


@dataclass(frozen=True, slots=True)
class SearchItem:
    """One item of a `/v1/events/search` answer, parsed but not judged.

    `timestamp` stays the raw string as well as parsed (None when unparseable) so the
    classifier can report exactly what Metronome said.
    """

    id: str
    transaction_id: str
    customer_id: str
    event_type: str
    timestamp_raw: str
    timestamp: datetime | None
    properties: Mapping[str, Any] = field(default_factory=dict)
    is_duplicate: bool = False
    matched_customer: MatchedCustomer | None = None
    matched_billable_metrics: tuple[MatchedMetric, ...] = ()
    processed_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
