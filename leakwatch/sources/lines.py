"""Turn one raw log line into a `SourceEvent`, or say why it cannot be one.

Pure: bytes in, event or reason out. Field paths are dotted (`payload.txn`), so a log
that nests or renames Metronome's ingest fields is read without a transform step.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leakwatch.core.events import SourceEvent
from leakwatch.core.timestamps import DEFAULT_FORMAT, TimestampFormat, read_timestamp
from leakwatch.sources.base import BadLineReason


@dataclass(frozen=True, slots=True)
class FieldPaths:
    """The dotted paths of each logical field, split once."""

    transaction_id: tuple[str, ...]
    customer_id: tuple[str, ...]
    event_type: tuple[str, ...]
    timestamp: tuple[str, ...]
    properties: tuple[str, ...]
    timestamp_format: TimestampFormat = DEFAULT_FORMAT

    @classmethod
    def from_mapping(
        cls, fields: Mapping[str, str], timestamp_format: TimestampFormat = DEFAULT_FORMAT
    ) -> "FieldPaths":
        def split(name: str) -> tuple[str, ...]:
            path = tuple(part for part in fields[name].split(".") if part)
            if not path:
                raise ValueError(f"empty field path for {name}")
            return path

        return cls(
            transaction_id=split("transaction_id"),
            customer_id=split("customer_id"),
            event_type=split("event_type"),
            timestamp=split("timestamp"),
            properties=split("properties"),
            timestamp_format=timestamp_format,
        )


_MISSING = object()


def _dig(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict):
            return _MISSING
        document = document.get(key, _MISSING)
        if document is _MISSING:
            return _MISSING
    return document


def _as_id(value: Any) -> str | None:
    # Integer ids are common in SQL-fed logs; Metronome takes them as strings.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def _decode(raw: bytes) -> Any | BadLineReason:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return BadLineReason.NOT_UTF8
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack (`[[[[…`), still not an event.
        return BadLineReason.NOT_JSON
    if not isinstance(document, dict):
        return BadLineReason.NOT_JSON
    return document


def parse_line(raw: bytes, paths: FieldPaths, max_line_bytes: int) -> SourceEvent | BadLineReason:
    """Parse a line (with or without its newline) into an event, or the reason it is bad."""
    if len(raw) > max_line_bytes:
        return BadLineReason.TOO_LONG
    document = _decode(raw)
    if isinstance(document, BadLineReason):
        return document
    transaction_id = _as_id(_dig(document, paths.transaction_id))
    if transaction_id is None:
        return BadLineReason.NO_TRANSACTION_ID
    timestamp = _timestamp_of(document, paths)
    if timestamp is None:
        return BadLineReason.BAD_TIMESTAMP
    customer_id = _as_id(_dig(document, paths.customer_id))
    event_type = _dig(document, paths.event_type)
    if customer_id is None or not isinstance(event_type, str) or not event_type:
        return BadLineReason.MISSING_FIELD
    properties = _dig(document, paths.properties)
    if properties is _MISSING or properties is None:
        properties = {}
    if not isinstance(properties, dict):
        return BadLineReason.MISSING_FIELD
    return SourceEvent(
        transaction_id=transaction_id,
        customer_id=customer_id,
        event_type=event_type,
        timestamp=timestamp,
        properties=properties,
    )


def _timestamp_of(document: Any, paths: FieldPaths) -> datetime | None:
    return read_timestamp(_dig(document, paths.timestamp), paths.timestamp_format)


def line_timestamp(raw: bytes, paths: FieldPaths, max_line_bytes: int) -> datetime | None:
    """Read only the timestamp of a line (None when the line is bad); for binary search."""
    if len(raw) > max_line_bytes:
        return None
    document = _decode(raw)
    if isinstance(document, BadLineReason):
        return None
    return _timestamp_of(document, paths)
