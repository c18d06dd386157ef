"""`leakwatch outcomes`: stream sampled events with their outcome. Reads the store.

Rows are streamed from the database in chunks, so exporting a month of outcomes does
not hold them in memory. One JSON object (or CSV row) per sampled event.
"""

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

from leakwatch.core.events import format_timestamp
from leakwatch.core.text import csv_cell, json_line
from leakwatch.store.db import SessionFactory
from leakwatch.store.models import SampledEvent
from leakwatch.store.queries import SampleFilter, stream_sampled_events

FIELDS = (
    "source",
    "transaction_id",
    "customer_id",
    "event_type",
    "timestamp",
    "properties",
    "outcome",
    "reason",
    "first_checked_at",
    "last_checked_at",
    "attempts",
    "duplicate_count",
    "differing_fields",
    "healed",
    "weight",
    "sampled_at",
    "evidence",
)


def _iso(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def record_of(row: SampledEvent) -> dict[str, Any]:
    return {
        "source": row.source,
        "transaction_id": row.transaction_id,
        "customer_id": row.customer_id,
        "event_type": row.event_type,
        "timestamp": _iso(row.event_timestamp),
        "properties": row.properties,
        "outcome": row.outcome,
        "reason": row.reason,
        "first_checked_at": _iso(row.first_checked_at),
        "last_checked_at": _iso(row.last_checked_at),
        "attempts": row.attempts,
        "duplicate_count": row.duplicate_count,
        "differing_fields": row.differing_fields,
        "healed": row.healed,
        "weight": row.weight,
        "sampled_at": _iso(row.sampled_at),
        "evidence": row.evidence,
    }


def iter_outcomes(
    sessions: SessionFactory, which: SampleFilter, *, chunk: int = 1000
) -> Iterator[dict[str, Any]]:
    session = sessions()
    try:
        for row in stream_sampled_events(session, which, chunk=chunk):
            yield record_of(row)
    finally:
        session.close()


def write_jsonl(records: Iterator[dict[str, Any]], out: TextIO) -> int:
    written = 0
    for record in records:
        out.write(json_line(record) + "\n")
        written += 1
    return written


def _csv_value(value: Any) -> Any:
    """Nested values as JSON, booleans as JSON writes them (`true`/`false`, not `True`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value


def write_csv(records: Iterator[dict[str, Any]], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=FIELDS, extrasaction="ignore")
    writer.writeheader()
    written = 0
    for record in records:
        flat = {key: csv_cell(_csv_value(value)) for key, value in record.items()}
        writer.writerow(flat)
        written += 1
    return written
