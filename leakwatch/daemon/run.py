"""`leakwatch run`: the always-on daemon. I/O (signals, threads, database, HTTP).

The process, from start to exit:

1. Start-up checks, each failing with a message that says what to fix: the token is
   set, sources are configured and readable, the health address is usable, the
   database answers and its schema is migrated (migrations run under an advisory
   lock on Postgres, so replicas starting together do not race).
2. The election loop in the main thread: a follower tries the Postgres advisory lock
   every few seconds (at most a quarter of `checks.every`), so it takes over within
   one check interval of the leader's death; the leader re-checks it holds the lock
   on the same beat and before every job. On SQLite the lock file is taken at
   start-up and held for life.
3. The leader's jobs run on an APScheduler 3.x `BackgroundScheduler` with in-memory
   jobs: added when leadership is gained, removed when it is lost. Jobs run in
   daemon threads, so a job stuck in I/O cannot hold the process past its deadline.
4. SIGTERM or SIGINT: stop scheduling, tell the running cycle to stop looking up
   (what it has checked is recorded; the rest is picked up by the next leader), wait
   for running jobs up to `daemon.shutdown_timeout`, release the lock, exit 0.
"""

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from leakwatch.clock import Clock
from leakwatch.config import Settings
from leakwatch.core.durations import format_duration
from leakwatch.daemon.health import STALE_AFTER_CYCLES, DaemonStatus, HealthServer, Role
from leakwatch.daemon.jobs import Jobs, schedule_jobs
from leakwatch.daemon.leader import Leadership
from leakwatch.daemon.metrics import DaemonMetrics
from leakwatch.errors import LeakwatchError, UsageProblem
from leakwatch.store import runs
from leakwatch.store.db import transaction
from leakwatch.wiring import (
    build_leader,
    build_runtime,
    build_source,
    metronome_endpoint,
    require_token,
)

# Leave this much of the shutdown allowance for releasing the lock and closing up.
SHUTDOWN_MARGIN_S = 1.0


@dataclass(frozen=True)
class DaemonTiming:
    """How often the election loop looks, derived from `checks.every`."""

    election_every_s: float

    @classmethod
    def for_settings(cls, settings: Settings) -> "DaemonTiming":
        every_s = settings.checks.every.total_seconds()
        return cls(election_every_s=max(0.5, min(5.0, every_s / 4)))


class DaemonThreadExecutor(BaseExecutor):  # type: ignore[misc]
    """Run each job in its own daemon thread.

    APScheduler's ThreadPoolExecutor uses non-daemon pool threads that the interpreter
    joins at exit, so one job hung on a socket would keep the process alive past
    `daemon.shutdown_timeout`. Concurrency stays bounded by `max_instances=1` per job.
    """

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def target() -> None:
            try:
                events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
            except BaseException as exc:
                self._run_job_error(job.id, exc, exc.__traceback__)
            else:
                self._run_job_success(job.id, events)

        threading.Thread(target=target, name=f"leakwatch-job:{job.id}", daemon=True).start()


def build_scheduler() -> BackgroundScheduler:
    """A scheduler whose jobs coalesce, never overlap, and tolerate lateness."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        executors={"default": DaemonThreadExecutor()},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
    )

    def on_event(event: JobEvent) -> None:
        reason = "missed" if event.code == EVENT_JOB_MISSED else "still running"
        structlog.get_logger().warning("job.not_run", job=event.job_id, reason=reason)

    scheduler.add_listener(on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    # Our own wrapper logs every job's outcome; APScheduler's stdlib chatter would
    # duplicate it (and `job.not_run` covers its warnings).
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    return scheduler


# -- start-up checks -------------------------------------------------------------------


def check_sources(settings: Settings) -> None:
    """Fail with a clear message unless every source can be read right now."""

    if not settings.sources:
        raise UsageProblem(
            "no [[sources]] configured; add one (see `leakwatch init`) so there is something "
            "to check"
        )
    problems: list[str] = []
    for configured in settings.sources:
        source = build_source(settings, configured)
        try:
            problems += [f"sources[{configured.name}]: {p}" for p in source.problems()]
        finally:
            source.close()
    if problems:
        raise LeakwatchError("a source cannot be read:\n" + "\n".join(f"  - {p}" for p in problems))


# -- the daemon --------------------------------------------------------------------------


class Daemon:
    """One daemon process: election loop, scheduler, health server, graceful stop."""

    def __init__(
        self, settings: Settings, *, clock: Clock, stop: threading.Event, leader: Leadership
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.stop = stop
        self.timing = DaemonTiming.for_settings(settings)
        self.status = DaemonStatus(clock)
        self.metrics = DaemonMetrics()
        self.metrics.check_interval.set(settings.checks.every.total_seconds())
        self._leading = threading.Event()
        self._wake = threading.Event()
        self._scheduled = False
        self.leader = leader

    def should_stop(self) -> bool:
        """What the running cycle polls: stop looking up on shutdown or lost leadership."""
        return self.stop.is_set() or not self._leading.is_set()

    def may_run(self) -> bool:
        """The check right before each job: still leader, not stopping."""
        if self.stop.is_set() or not self._leading.is_set():
            return False
        if self.leader.is_leader():
            return True
        self._leading.clear()
        self._wake.set()
        return False

    def request_stop(self) -> None:
        self.stop.set()
        self._wake.set()

    def run(self) -> int:
        log = structlog.get_logger()
        settings = self.settings
        log.info(
            "daemon.starting",
            database=make_url(settings.database_url).render_as_string(hide_password=True),
            health_address=settings.daemon.health_address,
            every=format_duration(settings.checks.every),
            **metronome_endpoint(settings),
        )
        require_token(settings)
        check_sources(settings)
        self.leader.claim_at_start()
        try:
            return self._run_started()
        finally:
            self.leader.release()

    def _run_started(self) -> int:
        log = structlog.get_logger()
        settings = self.settings
        with self.leader.migrating():
            runtime = build_runtime(
                settings,
                clock=self.clock,
                observer=self.metrics.observer(),
                should_stop=self.should_stop,
                migrate=True,
            )
        jobs = Jobs(
            runtime,
            clock=self.clock,
            metrics=self.metrics,
            status=self.status,
            may_run=self.may_run,
            prices=settings.report.prices,
        )
        health = HealthServer(
            settings.daemon.health_address,
            status=self.status,
            registry=self.metrics.registry,
            clock=self.clock,
            stale_after=settings.checks.every * STALE_AFTER_CYCLES,
        )
        try:
            health.start()
        except OSError as exc:
            runtime.close()
            raise UsageProblem(
                f"daemon.health_address {settings.daemon.health_address}: cannot listen: {exc}; "
                "set another with LEAKWATCH_HEALTH_ADDRESS"
            ) from None
        scheduler = build_scheduler()
        scheduler.start()
        finished = True
        try:
            jobs.refresh_store_metrics()
            self.status.set_role(Role.FOLLOWER)
            log.info("daemon.started", health_port=health.port)
            self._election_loop(scheduler, jobs)
        finally:
            self.status.set_role(Role.STOPPING)
            self._leading.clear()
            scheduler.remove_all_jobs()
            scheduler.shutdown(wait=False)
            deadline_s = settings.daemon.shutdown_timeout.total_seconds() - SHUTDOWN_MARGIN_S
            finished = jobs.wait_idle(deadline_s)
            if not finished:
                log.warning("daemon.shutdown_timeout", abandoned=jobs.running())
            self.leader.release()
            self.metrics.leader.set(0)
            health.stop()
            if finished:
                runtime.close()
            log.info("daemon.stopped", jobs_finished=finished)
        return 0

    def _election_loop(self, scheduler: BackgroundScheduler, jobs: Jobs) -> None:
        log = structlog.get_logger()
        while not self.stop.is_set():
            if self._scheduled:
                if not self._leading.is_set() or not self.leader.is_leader():
                    self._step_down(scheduler)
                    log.warning("leader.lost")
            elif self.leader.try_acquire():
                self._step_up(scheduler, jobs)
                log.info("leader.elected", role="leader")
            self._wake.wait(self.timing.election_every_s)
            self._wake.clear()

    def _step_up(self, scheduler: BackgroundScheduler, jobs: Jobs) -> None:
        now = self.clock.now()
        self._leading.set()
        self.status.set_role(Role.LEADER)
        self.metrics.leader.set(1)
        schedule_jobs(
            scheduler,
            jobs,
            self.settings,
            now=now,
            first_cycle_at=self._first_cycle_at(jobs, now),
        )
        self._scheduled = True

    def _step_down(self, scheduler: BackgroundScheduler) -> None:
        self._leading.clear()
        scheduler.remove_all_jobs()
        self._scheduled = False
        self.status.set_role(Role.FOLLOWER)
        self.metrics.leader.set(0)

    def _first_cycle_at(self, jobs: Jobs, now: datetime) -> datetime:
        """One interval after the last cycle any leader started; now if that has passed."""
        try:
            with transaction(jobs.sessions) as session:
                last = runs.last_started_at(session)
        except SQLAlchemyError:
            return now
        if last is None:
            return now
        return max(now, last + self.settings.checks.every)


def run_daemon(settings: Settings, *, clock: Clock, stop: threading.Event | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT (or `stop` is set); 0 on a clean stop.

    Start-up problems raise `LeakwatchError` (exit 1) or `UsageProblem` (exit 2) with a
    message that says what to fix. Signal handlers are installed when called from the
    main thread.
    """
    daemon = Daemon(
        settings, clock=clock, stop=stop or threading.Event(), leader=build_leader(settings)
    )
    restore = _install_signal_handlers(daemon.request_stop)
    try:
        return daemon.run()
    finally:
        restore()


def _install_signal_handlers(on_signal: Callable[[], None]) -> Callable[[], None]:
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, _frame: FrameType | None) -> None:
        structlog.get_logger().info("daemon.stopping", signal=signal.Signals(signum).name)
        on_signal()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


__all__ = ["Daemon", "DaemonThreadExecutor", "build_scheduler", "check_sources", "run_daemon"]
