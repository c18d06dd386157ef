"""What a running leakwatch holds, and the plain operations its jobs perform. I/O.

`Runtime` is assembled once by `wiring.build_runtime` for `leakwatch check`,
`reconcile` and the daemon; each method is one job: run a cycle, evaluate alerts,
send notifications, write the weekly report, apply retention. The scheduler only calls these.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import Engine

from leakwatch.clock import Clock
from leakwatch.config import Settings
from leakwatch.core.alerting import AlertRule
from leakwatch.core.durations import format_duration
from leakwatch.core.formatting import format_percent
from leakwatch.core.results import AlertResult, CycleSummary, SendReport
from leakwatch.errors import LeakwatchError
from leakwatch.metronome.client import SearchClient
from leakwatch.metronome.errors import RequestFailed, TokenRejected
from leakwatch.notify.outbox import OutboxSender
from leakwatch.notify.report_send import ReportSlack
from leakwatch.pipeline.alert import (
    AlertEvaluationFailed,
    HealthSignals,
    evaluate_alerts,
    evaluate_health_alerts,
)
from leakwatch.pipeline.check import CheckCycle
from leakwatch.store import runs
from leakwatch.store.db import session_factory, transaction
from leakwatch.store.retention import drop_old_detail

if TYPE_CHECKING:
    from leakwatch.core.reconcile import ReconcileResult
    from leakwatch.pipeline.report import ReportOutcome


@dataclass
class HealthTracker:
    """What the last cycles said about Metronome, for the health alerts."""

    token_rejected: bool | None = None
    api_unreachable: bool | None = None
    bad_line_rate: dict[str, float] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    def observe(self, summary: CycleSummary, *, error_rate_limit: float) -> None:
        """Take one finished cycle's measure of Metronome.

        The failure share is over lookup *batches*, not HTTP attempts: with retries,
        a batch that failed every attempt is one failure among as many attempts, so a
        total outage would score 1 / attempts and never cross the limit. A batch still
        failing when the cycle's time ran out counts as failed, so a cycle that could
        not search at all is a failed one. A cycle that looked nothing up says nothing.
        """
        if summary.answered_ids:
            # Only an answer proves the token works; a cycle with nothing to look up
            # says nothing about it.
            self.token_rejected = False
        failed = summary.search_batches_failed
        batches = summary.search_batches_answered + failed
        if batches:
            self.api_unreachable = failed / batches > error_rate_limit
            cause = f": {summary.lookup_failure}" if failed and summary.lookup_failure else ""
            self.details["api_unreachable"] = (
                f"{failed} of {batches} lookup batches failed in the last cycle{cause}"
            )
        for name, report in summary.sources.items():
            read = report.lines_read
            if read:
                self.bad_line_rate[name] = report.bad_lines / read

    def problems(self) -> dict[str, str]:
        """What is wrong with Metronome now, by condition: what /healthz reports."""
        found: dict[str, str] = {}
        if self.api_unreachable:
            found["metronome_unreachable"] = self.details.get("api_unreachable", "")
        if self.token_rejected:
            found["token_rejected"] = self.details.get("token_rejected", "")
        return found

    def observe_failure(self, exc: BaseException) -> None:
        if isinstance(exc, TokenRejected):
            self.token_rejected = True
            self.details["token_rejected"] = str(exc)
        else:
            self.api_unreachable = True
            self.details["api_unreachable"] = f"last cycle failed: {exc}"


class Runtime:
    """The parts a running leakwatch holds, built by `wiring.build_runtime`; one method per job.

    It opens nothing: the engine, the search client, the cycle (with its sources), the
    outbox sender and the report's Slack clients are handed in. `close()` releases them
    (the runtime owns what it was given).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock,
        engine: Engine,
        search: SearchClient,
        cycle: CheckCycle,
        sender: OutboxSender | None,
        rules: Sequence[AlertRule],
        report_slack: ReportSlack | None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = engine
        self.sessions = session_factory(engine)
        self.search = search
        self.cycle = cycle
        self.sender = sender
        self.rules = list(rules)
        self.report_slack = report_slack
        self.health = HealthTracker()
        self.last_summary: CycleSummary | None = None

    def close(self) -> None:
        for source in self.cycle.sources:
            source.close()
        self.search.close()
        self.engine.dispose()

    # -- jobs ------------------------------------------------------------------------

    def run_cycle(self, *, draw: bool = True) -> CycleSummary:
        """One check cycle; Metronome failures are remembered for the health alerts."""
        try:
            summary = self.cycle.run(draw=draw)
        except TokenRejected as exc:
            self.health.observe_failure(exc)
            raise LeakwatchError(
                "Metronome rejected the API token (HTTP 401/403): check METRONOME_BEARER_TOKEN"
            ) from None
        self.health.observe(summary, error_rate_limit=self.settings.health.api_error_rate)
        self.last_summary = summary
        return summary

    def health_problems(self) -> dict[str, str]:
        """What the last cycles found wrong with Metronome (for /healthz)."""
        return self.health.problems()

    def catch_up_tail(self) -> bool:
        """Count more of a long history in what is left of the cycle's time.

        Run after the cycle's lookups (and `check`'s alerts), so they never wait for
        it; True once every source's volumes are counted (see `CheckCycle.catch_up`).
        """
        return self.cycle.catch_up()

    def reconcile(
        self, *, days: int | None = None, customer: str | None = None
    ) -> "ReconcileResult":
        """Compare expected and billed totals per customer × metric × day, and save them."""
        from leakwatch.pipeline.reconcile import run_reconciliation

        config = self.settings.reconcile
        try:
            return run_reconciliation(
                sessions=self.sessions,
                sources=self.cycle.sources,
                client=self.search,
                now=self.clock.now(),
                days=days or config.days,
                settle=config.settle,
                tolerance=config.tolerance,
                prices=self.settings.report.prices,
                customer=customer,
                pinned_aliases=config.aliases,
                expectations={
                    source.name: {k: frozenset(v) for k, v in source.expected_metrics.items()}
                    for source in self.settings.sources
                },
            )
        except TokenRejected as exc:
            self.health.observe_failure(exc)
            raise LeakwatchError(
                "Metronome rejected the API token (HTTP 401/403): check METRONOME_BEARER_TOKEN"
            ) from None
        except RequestFailed as exc:
            raise LeakwatchError(
                f"could not fetch usage from Metronome at {self.search.base_url}: {exc}"
            ) from None

    def evaluate_alerts(self) -> list[AlertResult]:
        """Step every rate rule and every health condition; queue what must be said."""
        now = self.clock.now()
        failed: AlertEvaluationFailed | None = None
        try:
            results = evaluate_alerts(
                self.sessions,
                self.rules,
                now,
                prices=dict(self.settings.report.prices),
                currency=self.settings.report.currency,
                deliver=self.sender is not None,
            )
        except AlertEvaluationFailed as exc:
            # Some rate rules could not be recorded: health alerts still get stepped,
            # then the failure is raised for the job to log.
            failed, results = exc, exc.results
        results += evaluate_health_alerts(
            self.sessions,
            self.health_signals(now),
            now,
            deliver=self.sender is not None,
        )
        log = structlog.get_logger()
        for result in results:
            if result.notification is not None:
                log.info(
                    "alert.transition",
                    rule=result.rule_name,
                    scope=result.scope,
                    status=result.status.value,
                    notification=result.notification.value,
                    reason=result.reason,
                )
        if failed is not None:
            raise failed
        return results

    def send_notifications(self) -> SendReport | None:
        """Deliver what the outbox holds; None when Slack is not configured."""
        if self.sender is None:
            return None
        return self.sender.send_due()

    def weekly_report(self) -> "ReportOutcome":
        """Write last week's report and send it once when Slack is configured."""
        from leakwatch.pipeline.report import produce_weekly_report

        outcome = produce_weekly_report(
            self.settings,
            sessions=self.sessions,
            slack=self.report_slack,
            now=self.clock.now(),
            send=self.report_slack is not None,
        )
        structlog.get_logger().info(
            "report.written",
            week=outcome.content.week,
            files=[p.name for p in outcome.paths],
            sent=outcome.sent,
        )
        return outcome

    def weekly_report_missed(self, now: datetime) -> bool:
        from leakwatch.pipeline.report import weekly_report_missed

        return weekly_report_missed(self.settings, self.sessions, now=now)

    def apply_retention(self) -> int:
        """Drop sampled-event detail older than daemon.retention; aggregates stay."""
        before = self.clock.now() - self.settings.daemon.retention
        with transaction(self.sessions) as session:
            dropped = drop_old_detail(session, before=before)
        structlog.get_logger().info("retention.applied", dropped=dropped, before=before.isoformat())
        return dropped

    # -- health ----------------------------------------------------------------------

    def health_signals(self, now: datetime) -> HealthSignals:
        health = self.settings.health
        stale: dict[str, bool] = {}
        details = dict(self.health.details)
        with transaction(self.sessions) as session:
            states = runs.source_states(session)
            last_finished = runs.last_finished_at(session)
        for source in self.settings.sources:
            state = states.get(source.name)
            if state is None or state.last_scan_at is None:
                continue
            seen = state.last_new_events_at
            quiet_for = now - seen if seen else None
            is_stale = quiet_for is None or quiet_for > health.source_stale_after
            stale[source.name] = is_stale
            if is_stale:
                details[f"source_stale:{source.name}"] = (
                    f"no new events for {format_duration(quiet_for)}"
                    if quiet_for
                    else "no events seen yet"
                )
        bad = {
            name: rate > health.bad_line_rate for name, rate in self.health.bad_line_rate.items()
        }
        for name, rate in self.health.bad_line_rate.items():
            details[f"bad_line_rate:{name}"] = (
                f"{format_percent(rate)} of new lines unusable "
                f"(alerting above {format_percent(health.bad_line_rate)})"
            )
        behind: bool | None = None
        if last_finished is not None:
            missed = (now - last_finished) / self.settings.checks.every
            behind = missed >= health.cycles_behind
            if behind:
                details["cycles_behind"] = (
                    f"last finished cycle {format_duration(now - last_finished)} ago"
                )
        return HealthSignals(
            source_stale=stale,
            bad_line_rate_high=bad,
            token_rejected=self.health.token_rejected,
            api_unreachable=self.health.api_unreachable,
            cycles_behind=behind,
            details=details,
        )
