"""What the pipeline's stages report back: plain values. Pure.

A check cycle's `CycleSummary`, an outbox pass's `SendReport` and one alert
evaluation's `AlertResult` are read by `leakwatch check`, the daemon's jobs, its
metrics and the terminal view; they live here so that none of those readers imports
the stage (a writer) that produced them.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leakwatch.core.alerting import AlertStatus, NotificationKind
from leakwatch.core.events import format_timestamp


@dataclass
class SourceReport:
    name: str
    lines_read: int = 0
    new_events: int = 0
    bad_lines: int = 0
    drawn: int = 0
    # Follow-up probes drawn within suspicious or firing groups (`plan_probes`).
    probed: int = 0
    newly_recorded: int = 0
    population: float = 0.0
    # Whether the tail has counted the whole history (exact volumes) or, still
    # catching up, volumes are estimated from the draw: `events_per_day` below.
    volumes_counted: bool = True
    tail_behind_bytes: int = 0
    events_per_day: float | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    # The path matches no file: nothing could be read (a wrong path, almost always).
    no_files: bool = False

    @property
    def volumes(self) -> str:
        """`counted` (the tail's exact counts) or `estimated` (from the draw)."""
        return "counted" if self.volumes_counted else "estimated"


@dataclass
class CycleSummary:
    """What one cycle did; printed by `leakwatch check`, logged by the daemon."""

    run_id: int
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"
    sources: dict[str, SourceReport] = field(default_factory=dict)
    budget_ids: int = 0
    rechecked: int = 0
    checked: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    healed: int = 0
    search_requests: int = 0
    search_rate_limited: int = 0
    search_errors: int = 0
    # Lookup batches (up to max_ids_per_request ids each) that were answered, and that
    # failed for good or were still failing when the cycle's time ran out: the share
    # of failed batches, not of HTTP attempts, says whether Metronome can be reached.
    search_batches_answered: int = 0
    search_batches_failed: int = 0
    # Why the last failed attempt failed (names Metronome's base URL when unreachable).
    search_last_failure: str = ""
    # Transaction ids Metronome answered for (found or not): evidence the token works.
    answered_ids: int = 0
    not_looked_up: int = 0
    # Why lookups failed, by message: what a user needs when every verdict is `error`.
    lookup_errors: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    @property
    def lookup_failure(self) -> str:
        """Why lookups failed this cycle (the commonest reason), or "" if none did."""
        if self.lookup_errors:
            return self.lookup_errors.most_common(1)[0][0]
        return self.search_last_failure

    def failures(self) -> list[str]:
        """What this cycle set out to do and could not; empty when it did its job.

        A source that could not be read or whose path matches no file, and lookups
        that all failed (none answered, at least one batch failed, retries cut off by
        the cycle's deadline included). `leakwatch check` exits 1 when there are any.
        """
        found = [f"source {name}: {r.error}" for name, r in self.sources.items() if r.error]
        found += [
            f"source {name}: no file matches its path"
            for name, r in self.sources.items()
            if r.no_files
        ]
        if self.search_batches_failed and not self.search_batches_answered:
            found.append(
                f"no lookup succeeded ({self.search_batches_failed} batch(es) failed): "
                f"{self.lookup_failure or 'every search attempt failed'}"
            )
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": format_timestamp(self.started_at),
            "finished_at": format_timestamp(self.finished_at) if self.finished_at else None,
            "budget_ids": self.budget_ids,
            "checked": self.checked,
            "rechecked": self.rechecked,
            "verdicts": dict(self.verdicts),
            "healed": self.healed,
            "search": {
                "requests": self.search_requests,
                "rate_limited": self.search_rate_limited,
                "errors": self.search_errors,
                "batches_answered": self.search_batches_answered,
                "batches_failed": self.search_batches_failed,
                "not_looked_up": self.not_looked_up,
                "failed_lookups": dict(self.lookup_errors),
            },
            "sources": {
                name: {
                    "lines_read": r.lines_read,
                    "new_events": r.new_events,
                    "bad_lines": r.bad_lines,
                    "drawn": r.drawn,
                    "probed": r.probed,
                    "newly_recorded": r.newly_recorded,
                    "population": round(r.population),
                    "volumes": r.volumes,
                    "tail_behind_bytes": r.tail_behind_bytes,
                    "events_per_day": (
                        None if r.events_per_day is None else round(r.events_per_day, 1)
                    ),
                    "warnings": r.warnings,
                    "error": r.error,
                }
                for name, r in self.sources.items()
            },
            "error": self.error,
            "failures": self.failures(),
        }


@dataclass
class SendReport:
    """What one `send_due` pass did, by row count."""

    sent: int = 0
    already_sent: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0
    # Rows still pending after the pass, waiting for their next attempt.
    waiting: int = 0
    rate_limited: bool = False
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AlertResult:
    """What one evaluation decided for one alert, for logs, the CLI and tests."""

    alert_id: int
    rule_name: str
    scope: str
    status: AlertStatus
    notification: NotificationKind | None
    reason: str
