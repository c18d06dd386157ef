"""Bulk writes on Postgres through COPY into a session-local staging table. I/O.

The cycle's two writes (the draw, then the verdicts) go through `COPY` into a
temporary table and one set-based statement from it: `INSERT … ON CONFLICT DO
NOTHING` for the draw, `UPDATE … FROM` for the verdicts. Parsing and planning one
statement per row (or one giant VALUES list) costs an order of magnitude more than
the database's own work; COPY streams rows at the wire's speed. Runs inside the
caller's transaction, so atomicity and idempotency are those of the caller.
"""

import json
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

SAMPLE_COLUMNS = (
    "source",
    "transaction_id",
    "payload_hash",
    "customer_id",
    "event_type",
    "event_timestamp",
    "properties",
    "weight",
    "stratum",
    "quantity",
    "outcome",
    "reason",
    "evidence",
    "matched_metrics",
    "differing_fields",
    "duplicate_count",
    "healed",
    "attempts",
    "sampled_at",
    "next_check_at",
    "run_id",
)
VERDICT_COLUMNS = (
    "id",
    "outcome",
    "reason",
    "evidence",
    "matched_customer_id",
    "matched_customer_name",
    "matched_metrics",
    "duplicate_count",
    "differing_fields",
    "healed",
    "attempts",
    "first_checked_at",
    "last_checked_at",
    "decided_at",
    "next_check_at",
)
_JSON_COLUMNS = frozenset({"properties", "evidence", "matched_metrics", "differing_fields"})


def _driver_connection(session: Session) -> Any:
    return session.connection().connection.driver_connection


def _stage(cursor: Any, name: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    listed = ", ".join(columns)
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {name} ON COMMIT DELETE ROWS AS "
        f"SELECT {listed} FROM sampled_event WITH NO DATA"
    )
    cursor.execute(f"TRUNCATE {name}")
    json_at = [i for i, column in enumerate(columns) if column in _JSON_COLUMNS]
    with cursor.copy(f"COPY {name} ({listed}) FROM STDIN") as copy:
        for row in rows:
            values = [row.get(column) for column in columns]
            for index in json_at:
                values[index] = _json_text(values[index])
            copy.write_row(values)


def _json_text(value: Any) -> str:
    """JSON as text for a jsonb column; empty containers (most rows) skip the encoder."""
    if not value:
        return "[]" if isinstance(value, list | tuple) else "{}"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def insert_samples(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert rows (identity conflicts ignored); return how many were new."""
    listed = ", ".join(SAMPLE_COLUMNS)
    with _driver_connection(session).cursor() as cursor:
        _stage(cursor, "lw_sample_stage", SAMPLE_COLUMNS, rows)
        cursor.execute(
            f"INSERT INTO sampled_event ({listed}) SELECT {listed} FROM lw_sample_stage "
            "ON CONFLICT (source, transaction_id, payload_hash) DO NOTHING"
        )
        inserted = int(cursor.rowcount)
        cursor.execute("TRUNCATE lw_sample_stage")
    return inserted


def update_verdicts(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Write each row's verdict columns by primary key."""
    assignments = ", ".join(f"{c} = v.{c}" for c in VERDICT_COLUMNS if c != "id")
    with _driver_connection(session).cursor() as cursor:
        _stage(cursor, "lw_verdict_stage", VERDICT_COLUMNS, rows)
        cursor.execute(
            f"UPDATE sampled_event AS s SET {assignments} FROM lw_verdict_stage AS v "
            "WHERE s.id = v.id"
        )
        updated = int(cursor.rowcount)
        cursor.execute("TRUNCATE lw_verdict_stage")
    return updated
