"""The daemon's scheduled jobs, one line each, and when they run. I/O through the Runtime.

Each job delegates to one plain `Runtime` method (the same ones `leakwatch check` and
the tests call directly). The wrapper around them is the daemon's policy: run only
while this process is the leader (re-checked right before each run), never start
once shutdown has begun, log a job that raises as `job.failed` and carry on, and keep
the metrics and the health status current.
"""

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import structlog
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from leakwatch.clock import Clock
from leakwatch.config import Settings
from leakwatch.core.pricing import Price
from leakwatch.core.results import CycleSummary
from leakwatch.daemon.health import DaemonStatus
from leakwatch.daemon.metrics import DaemonMetrics, read_store_snapshot
from leakwatch.store.db import SessionFactory, transaction

ALERTS_EVERY = timedelta(minutes=1)
RETENTION_AT = (3, 30)  # hour, minute in UTC: daily, off the top of the hour
# A new leader's first minutes go to its first cycle; the catch-up report follows.
CATCH_UP_DELAY = timedelta(seconds=30)
# Reconciliation needs what the first cycles learn (metric definitions, aliases).
RECONCILE_DELAY = timedelta(minutes=5)


class DaemonRuntime(Protocol):
    """What the jobs need from `leakwatch.pipeline.runtime.Runtime`."""

    sessions: SessionFactory

    def run_cycle(self) -> CycleSummary: ...

    def health_problems(self) -> Mapping[str, str]: ...

    def catch_up_tail(self) -> bool: ...

    def evaluate_alerts(self) -> object: ...

    def send_notifications(self) -> object: ...

    def weekly_report(self) -> object: ...

    def weekly_report_missed(self, now: datetime) -> bool: ...

    def apply_retention(self) -> int: ...

    def reconcile(self) -> object: ...


class Jobs:
    """The scheduled jobs of one daemon process, guarded by the leader check."""

    def __init__(
        self,
        runtime: DaemonRuntime,
        *,
        clock: Clock,
        metrics: DaemonMetrics,
        status: DaemonStatus,
        may_run: Callable[[], bool],
        prices: Mapping[str, Price] | None = None,
    ) -> None:
        self._runtime = runtime
        self._prices = dict(prices or {})
        self._clock = clock
        self._metrics = metrics
        self._status = status
        self._may_run = may_run
        self._running: dict[str, int] = {}
        self._idle = threading.Condition()

    @property
    def sessions(self) -> SessionFactory:
        return self._runtime.sessions

    # -- the jobs ----------------------------------------------------------------------

    def check_cycle(self) -> None:
        self._run("check_cycle", self._cycle)

    def alerts_and_outbox(self) -> None:
        self._run("alerts_and_outbox", self._alerts_and_outbox)

    def weekly_report(self) -> None:
        self._run("weekly_report", self._runtime.weekly_report)

    def retention(self) -> None:
        self._run("retention", self._runtime.apply_retention)

    def reconcile(self) -> None:
        self._run("reconcile", self._reconcile)

    def weekly_report_missed(self, now: datetime) -> bool:
        """Whether to catch up on a weekly report no leader wrote (False if unsure)."""
        try:
            return self._runtime.weekly_report_missed(now)
        except Exception as exc:
            structlog.get_logger().warning("report.catch_up_check_failed", error=str(exc))
            return False

    # -- what they do besides delegating -----------------------------------------------

    def _cycle(self) -> CycleSummary:
        try:
            summary = self._runtime.run_cycle()
        except Exception:
            self._metrics.cycles.labels(status="failed").inc()
            raise
        finally:
            self._status.set_problems(self._runtime.health_problems())
        self._metrics.observe_cycle(summary)
        if summary.status == "finished" and summary.finished_at is not None:
            self._status.cycle_succeeded(summary.finished_at)
        self.refresh_store_metrics()
        # A long history is counted after the lookups; the alert job runs meanwhile.
        self._runtime.catch_up_tail()
        return summary

    def _alerts_and_outbox(self) -> None:
        # Evaluate before sending, so what a transition queues goes out in this pass.
        # An evaluation that fails (every minute, if the cause persists) must not hold
        # back what the outbox already holds: send anyway, then fail the job.
        try:
            self._runtime.evaluate_alerts()
        except Exception:
            self._runtime.send_notifications()
            raise
        self._runtime.send_notifications()
        self.refresh_store_metrics()

    def _reconcile(self) -> None:
        self._runtime.reconcile()
        self.refresh_store_metrics()

    def refresh_store_metrics(self) -> None:
        """Re-read the store-backed gauges (a few aggregate queries)."""
        with transaction(self._runtime.sessions) as session:
            snapshot = read_store_snapshot(session, now=self._clock.now(), prices=self._prices)
            self._metrics.set_snapshot(snapshot)

    # -- the guard ---------------------------------------------------------------------

    def _run(self, name: str, work: Callable[[], Any]) -> None:
        log = structlog.get_logger()
        if not self._may_run():
            log.info("job.skipped", job=name, reason="not the leader")
            return
        with self._idle:
            self._running[name] = self._running.get(name, 0) + 1
        started = self._clock.monotonic()
        log.debug("job.started", job=name)
        try:
            work()
        except Exception as exc:
            self._metrics.job_failures.labels(job=name).inc()
            log.error(
                "job.failed",
                job=name,
                error=f"{type(exc).__name__}: {exc}",
                elapsed_s=round(self._clock.monotonic() - started, 3),
                exc_info=True,
            )
        else:
            log.info(
                "job.finished", job=name, elapsed_s=round(self._clock.monotonic() - started, 3)
            )
        finally:
            with self._idle:
                self._running[name] -= 1
                if not self._running[name]:
                    del self._running[name]
                self._idle.notify_all()

    def running(self) -> list[str]:
        with self._idle:
            return sorted(self._running)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no job runs; False if some still do after `timeout_s`."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._running, timeout=max(timeout_s, 0.0))


def weekly_trigger(settings: Settings) -> CronTrigger:
    """`report.weekly` ("mon 09:00") in `report.timezone`, as a cron trigger."""
    weekly = settings.report.weekly
    return CronTrigger(
        day_of_week=weekly.day_name,
        hour=weekly.hour,
        minute=weekly.minute,
        timezone=ZoneInfo(settings.report.timezone),
    )


def schedule_jobs(
    scheduler: Any, jobs: Jobs, settings: Settings, *, now: datetime, first_cycle_at: datetime
) -> None:
    """Add the daemon's jobs to an APScheduler 3.x scheduler (in-memory job store).

    The first cycle runs at `first_cycle_at` (the previous leader's last start plus one
    interval, or now), then every `checks.every`. Alerts and the outbox run every
    minute (or every cycle, if cycles are more frequent); totals reconciliation every
    `reconcile.every` (daily by default), first a few minutes after taking the lead.
    Grace times are generous so a late run still happens, once (coalesced), instead of
    being skipped.
    """
    every_s = settings.checks.every.total_seconds()
    alerts_s = min(ALERTS_EVERY.total_seconds(), every_s)
    scheduler.add_job(
        jobs.check_cycle,
        IntervalTrigger(seconds=every_s, start_date=first_cycle_at, timezone=UTC),
        id="check_cycle",
        name="check cycle",
        next_run_time=first_cycle_at,
        misfire_grace_time=max(int(every_s), 60),
        replace_existing=True,
    )
    scheduler.add_job(
        jobs.alerts_and_outbox,
        IntervalTrigger(seconds=alerts_s, start_date=now, timezone=UTC),
        id="alerts_and_outbox",
        name="alerts and outbox",
        next_run_time=now + timedelta(seconds=alerts_s),
        misfire_grace_time=max(int(alerts_s) * 5, 60),
        replace_existing=True,
    )
    scheduler.add_job(
        jobs.weekly_report,
        weekly_trigger(settings),
        id="weekly_report",
        name="weekly report",
        misfire_grace_time=int(timedelta(hours=12).total_seconds()),
        replace_existing=True,
    )
    if jobs.weekly_report_missed(now):
        # No leader was up when the last report fell due: write it now, once.
        scheduler.add_job(
            jobs.weekly_report,
            id="weekly_report_catch_up",
            name="weekly report (catch-up)",
            next_run_time=now + CATCH_UP_DELAY,
            misfire_grace_time=int(timedelta(hours=12).total_seconds()),
            replace_existing=True,
        )
    reconcile_s = settings.reconcile.every.total_seconds()
    scheduler.add_job(
        jobs.reconcile,
        IntervalTrigger(seconds=reconcile_s, start_date=now + RECONCILE_DELAY, timezone=UTC),
        id="reconcile",
        name="totals reconciliation",
        next_run_time=now + RECONCILE_DELAY,
        misfire_grace_time=max(int(reconcile_s), 60),
        replace_existing=True,
    )
    scheduler.add_job(
        jobs.retention,
        CronTrigger(hour=RETENTION_AT[0], minute=RETENTION_AT[1], timezone=UTC),
        id="retention",
        name="retention",
        misfire_grace_time=int(timedelta(hours=12).total_seconds()),
        replace_existing=True,
    )


__all__ = ["DaemonRuntime", "Jobs", "schedule_jobs", "weekly_trigger"]
