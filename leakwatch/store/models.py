"""The tables of record.

No `from __future__ import annotations` here: SQLModel resolves field types at class
creation. Every table that something writes repeatedly has a natural key with a unique
constraint, so a retried or doubled write (a crash, a split-brain moment) can never
record a thing twice.
"""

from datetime import date, datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from leakwatch.store.types import JsonDoc, UtcDateTime


class SourceState(SQLModel, table=True):
    """One row per configured source: what the daemon last saw of it."""

    __tablename__ = "source_state"

    name: str = Field(primary_key=True, max_length=200)
    kind: str = Field(max_length=20)
    last_scan_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_new_events_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_sampled_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    newest_event_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class SamplingRun(SQLModel, table=True):
    """One check cycle: what it drew, what it spent, how it ended."""

    __tablename__ = "sampling_run"

    id: int | None = Field(default=None, primary_key=True)
    started_at: datetime = Field(sa_type=UtcDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # running | finished | failed
    status: str = Field(default="running", max_length=20)
    sampled: int = 0
    new_events: int = 0
    rechecked: int = 0
    search_requests: int = 0
    search_rate_limited: int = 0
    search_errors: int = 0
    error: str | None = Field(default=None, max_length=2000)
    summary: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDoc)


class SampledEvent(SQLModel, table=True):
    """A sampled source event and its latest outcome.

    Identity is (source, transaction id, payload hash): a resend is one row, two
    different events colliding on one transaction id are two rows.
    """

    __tablename__ = "sampled_event"
    __table_args__ = (
        UniqueConstraint("source", "transaction_id", "payload_hash", name="uq_sampled_identity"),
        Index("ix_sampled_recheck", "outcome", "next_check_at"),
        Index("ix_sampled_source_time", "source", "sampled_at"),
        # Windows over all sources ("the last 24 h": metrics, alerts, status) read
        # the window's rows, not the whole history.
        Index("ix_sampled_time", "sampled_at"),
        Index("ix_sampled_event_time", "event_timestamp"),
        # A stratum's samples of a window (the alert pass counts each group's follow-up
        # probes per cycle): only those rows are read, not every sample of the window.
        Index("ix_sampled_stratum_time", "stratum", "sampled_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=200)
    transaction_id: str = Field(max_length=200, index=True)
    payload_hash: str = Field(max_length=64)
    customer_id: str = Field(max_length=500)
    event_type: str = Field(max_length=500)
    event_timestamp: datetime = Field(sa_type=UtcDateTime)
    properties: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDoc)
    # Horvitz–Thompson weight (1 / inclusion probability) and the stratum drawn from.
    weight: float = 1.0
    stratum: str | None = Field(default=None, max_length=1000)
    # The quantity property's value when prices are per unit; null otherwise.
    quantity: float | None = None
    outcome: str = Field(max_length=32)
    reason: str = Field(default="", max_length=2000)
    evidence: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDoc)
    matched_customer_id: str | None = Field(default=None, max_length=200)
    matched_customer_name: str | None = Field(default=None, max_length=500)
    matched_metrics: list[str] = Field(default_factory=list, sa_type=JsonDoc)
    duplicate_count: int = 0
    differing_fields: list[str] = Field(default_factory=list, sa_type=JsonDoc)
    healed: bool = False
    attempts: int = 0
    sampled_at: datetime = Field(sa_type=UtcDateTime)
    first_checked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_checked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    next_check_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    run_id: int | None = Field(default=None, foreign_key="sampling_run.id")


class OutcomeRollup(SQLModel, table=True):
    """`sampled_event` summed per cycle, source, event type and outcome; kept by triggers.

    Metrics, alerts and status ask "the outcomes of the last 24 h" after every cycle;
    summing the window's raw rows cost as much as the rows a day of sampling makes.
    Every sample of a cycle shares its `sampled_at`, so a window of `sampled_at` is a
    set of whole rows here: the same answer from a few rows per cycle. The sums are
    those `OutcomeTally` takes (count, Σw, Σw², Σw·quantity), so the estimator is fed
    the same figures either way.

    Triggers on `sampled_event` (migration 0004) keep it equal to a GROUP BY over that
    table in the same statement as every insert, update, delete and truncate: a change
    of outcome moves a sample between rows, increments are upserts, so concurrent
    writers and writers that bypass leakwatch's store functions cannot make it drift.
    A row whose count reaches zero is deleted. Customers are not a key: a row per
    customer would be nearly a row per sample, so per-customer figures read the samples.
    """

    __tablename__ = "outcome_rollup"

    sampled_at: datetime = Field(sa_type=UtcDateTime, primary_key=True)
    source: str = Field(max_length=200, primary_key=True)
    event_type: str = Field(max_length=500, primary_key=True)
    outcome: str = Field(max_length=32, primary_key=True)
    samples: int = 0
    weight_sum: float = 0.0
    weight_sq_sum: float = 0.0
    # Σ weight × quantity (quantity 0 where none): revenue at risk per unit.
    weighted_quantity_sum: float = 0.0


class SourceFileCheckpoint(SQLModel, table=True):
    """How far the tailer has read one file of a source (by file identity, not path)."""

    __tablename__ = "source_file_checkpoint"
    __table_args__ = (UniqueConstraint("source", "file_key", name="uq_checkpoint_file"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=200)
    file_key: str = Field(max_length=500)
    path: str = Field(max_length=4000)
    offset: int = 0
    size: int = 0
    mtime: float = 0.0
    lines: int = 0
    head_fingerprint: str = Field(default="", max_length=128)
    first_event_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_event_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)


class VolumeCount(SQLModel, table=True):
    """Exact event counts per source, event type and UTC day, from the tailer."""

    __tablename__ = "volume_count"
    __table_args__ = (UniqueConstraint("source", "event_type", "day", name="uq_volume_key"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=200)
    event_type: str = Field(max_length=500)
    day: date
    events: int = 0
    # Sum of the quantity property, for revenue per unit.
    quantity_sum: float = 0.0


class BadLineCount(SQLModel, table=True):
    """Lines a source could not use, per reason and UTC day, with a few examples."""

    __tablename__ = "bad_line_count"
    __table_args__ = (UniqueConstraint("source", "reason", "day", name="uq_bad_line_key"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=200)
    reason: str = Field(max_length=64)
    day: date
    count: int = 0
    examples: list[str] = Field(default_factory=list, sa_type=JsonDoc)


class Alert(SQLModel, table=True):
    """The state of one alert rule for one scope (group), surviving restarts."""

    __tablename__ = "alert"
    __table_args__ = (UniqueConstraint("rule_name", "scope", name="uq_alert_rule_scope"),)

    id: int | None = Field(default=None, primary_key=True)
    rule_name: str = Field(max_length=200)
    # "" for the whole fleet, else e.g. "event_type=api_request".
    scope: str = Field(default="", max_length=1000)
    # rate | health
    kind: str = Field(default="rate", max_length=20)
    severity: str = Field(default="warning", max_length=20)
    # inactive | pending | firing
    status: str = Field(default="inactive", max_length=20)
    episode: int = 0
    since: datetime | None = Field(default=None, sa_type=UtcDateTime)
    opened_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_notified_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_evaluated_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    silenced_until: datetime | None = Field(default=None, sa_type=UtcDateTime)
    acked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    # The last observation (rate, interval, samples, estimates) as the evaluator saw it.
    observation: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDoc)
    # Where the episode's root message lives, so updates thread under it.
    slack_channel: str | None = Field(default=None, max_length=100)
    slack_ts: str | None = Field(default=None, max_length=50)


class AlertTransition(SQLModel, table=True):
    """An alert's history: each fire, update and resolve, for the weekly report."""

    __tablename__ = "alert_transition"
    __table_args__ = (
        UniqueConstraint("alert_id", "episode", "transition", "at", name="uq_alert_transition"),
    )

    id: int | None = Field(default=None, primary_key=True)
    alert_id: int = Field(foreign_key="alert.id", index=True)
    episode: int
    transition: str = Field(max_length=20)
    at: datetime = Field(sa_type=UtcDateTime, index=True)
    observation: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDoc)


class Notification(SQLModel, table=True):
    """The outbox: a message to deliver, written in the same transaction as its cause.

    `dedup_key` makes enqueueing idempotent; `delivery_marker` (a unique id carried in
    the Slack message's metadata) lets the sender find a message it sent but could not
    mark before a crash, instead of sending it twice.
    """

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("dedup_key", name="uq_notification_dedup"),
        Index("ix_notification_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedup_key: str = Field(max_length=300)
    alert_id: int | None = Field(default=None, foreign_key="alert.id")
    # fire | update | repeat | resolve | report
    kind: str = Field(max_length=20)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDoc)
    # pending | sent | dead
    status: str = Field(default="pending", max_length=20)
    attempts: int = 0
    created_at: datetime = Field(sa_type=UtcDateTime)
    next_attempt_at: datetime = Field(sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_error: str | None = Field(default=None, max_length=2000)
    delivery_marker: str = Field(max_length=64)
    slack_channel: str | None = Field(default=None, max_length=100)
    slack_ts: str | None = Field(default=None, max_length=50)


class WeeklyReport(SQLModel, table=True):
    """A week's report as computed, and whether it went to Slack."""

    __tablename__ = "weekly_report"
    __table_args__ = (UniqueConstraint("week", name="uq_weekly_report_week"),)

    id: int | None = Field(default=None, primary_key=True)
    week: str = Field(max_length=10)
    created_at: datetime = Field(sa_type=UtcDateTime)
    content: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDoc)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    slack_channel: str | None = Field(default=None, max_length=100)
    slack_ts: str | None = Field(default=None, max_length=50)


class BillableMetricDefinition(SQLModel, table=True):
    """A billable metric as the last search answer described it (learned, or pinned)."""

    __tablename__ = "billable_metric_definition"

    metric_id: str = Field(primary_key=True, max_length=200)
    name: str = Field(max_length=500)
    # The search answer's MatchedBillableMetric shape (core.reconcile reads it).
    definition: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDoc)
    first_seen_at: datetime = Field(sa_type=UtcDateTime)
    last_seen_at: datetime = Field(sa_type=UtcDateTime)


class CustomerAliasRow(SQLModel, table=True):
    """A customer id as the source writes it, and the Metronome customer it resolved to."""

    __tablename__ = "customer_alias"

    alias: str = Field(primary_key=True, max_length=500)
    customer_id: str = Field(max_length=200, index=True)
    customer_name: str | None = Field(default=None, max_length=500)
    first_seen_at: datetime = Field(sa_type=UtcDateTime)
    last_seen_at: datetime = Field(sa_type=UtcDateTime)


class ReconciledDay(SQLModel, table=True):
    """Expected vs billed for one Metronome customer × billable metric × UTC day.

    Recomputed by every reconciliation until the day is older than the settle period
    (late events and late aliases can still change it), then `settled`.
    """

    __tablename__ = "reconciled_day"
    __table_args__ = (
        UniqueConstraint("customer_id", "metric_id", "day", name="uq_reconciled_key"),
        Index("ix_reconciled_day", "day"),
    )

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(max_length=200)
    customer_name: str | None = Field(default=None, max_length=500)
    metric_id: str = Field(max_length=200)
    metric_name: str = Field(max_length=500)
    day: date
    expected: float = 0.0
    events: int = 0
    billed: float | None = None
    # ok | under_billed | over_billed
    status: str = Field(max_length=20)
    settled: bool = False
    computed_at: datetime = Field(sa_type=UtcDateTime)
