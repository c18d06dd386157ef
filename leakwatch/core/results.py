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


@dataclass
class SourceReport:
    name: str
    lines_read: int = 0
    new_events: int = 0
    bad_lines: int = 0
    drawn: int = 0
    newly_recorded: int = 0
    population: float = 0.0
    # Whether the tail has counted the whole history (exact volumes) or, still
    # catching up, volumes are estimated from the draw: `events_per_day` below.
    volumes_counted: bool = True
    tail_behind_bytes: int = 0
    events_per_day: float | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

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
    # Transaction ids Metronome answered for (found or not): evidence the token works.
    answered_ids: int = 0
    not_looked_up: int = 0
    # Why lookups failed, by message: what a user needs when every verdict is `error`.
    lookup_errors: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "budget_ids": self.budget_ids,
            "checked": self.checked,
            "rechecked": self.rechecked,
            "verdicts": dict(self.verdicts),
            "healed": self.healed,
            "search": {
                "requests": self.search_requests,
                "rate_limited": self.search_rate_limited,
                "errors": self.search_errors,
                "not_looked_up": self.not_looked_up,
                "failed_lookups": dict(self.lookup_errors),
            },
            "sources": {
                name: {
                    "lines_read": r.lines_read,
                    "new_events": r.new_events,
                    "bad_lines": r.bad_lines,
                    "drawn": r.drawn,
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
