"""One check cycle: tail → budget → draw → search → classify → record. The shell.

Each step's decisions are pure functions (`core.budget`, `core.classify`); this module
only moves data between the sources, the search client and the store, and says what
happened in a `CycleSummary`. A cycle killed at any point can simply run again: draws
are recorded before any lookup, verdicts by primary key after it (see store.outcomes).
"""

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from leakwatch.clock import Clock
from leakwatch.core.alerting import AlertRule
from leakwatch.core.budget import cycle_budget, split_budget
from leakwatch.core.classify import (
    ClassifyPolicy,
    Verdict,
    classify,
    error_verdict,
    expire_if_needed,
)
from leakwatch.core.events import DrawnEvent, Outcome, SearchItem
from leakwatch.core.reconcile import learn_billing
from leakwatch.core.results import CycleSummary, SourceReport
from leakwatch.core.sampling import (
    PROBE_LOOKBACK_CYCLES,
    Probe,
    ProbeTarget,
    plan_probes,
    probe_reserve,
    probe_stratum,
)
from leakwatch.metronome.client import SearchClient, SearchStats
from leakwatch.metronome.errors import TokenRejected
from leakwatch.pipeline.alert import probe_targets
from leakwatch.sources.base import SampleResult, ScanResult, Source
from leakwatch.sources.checkpoints import CheckpointStore
from leakwatch.store import runs
from leakwatch.store.billing import save_learned_billing
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import SampledEvent as SampledEventRow
from leakwatch.store.outcomes import (
    NEW_ROW,
    RecheckPolicy,
    count_due,
    due_rows,
    record_samples,
    record_verdicts,
    recorded_identities,
    refresh_statistics_if_stale,
    sample_row,
    source_event_of,
    verdict_update,
)

_WRITE_CHUNK = 1_000
# Search calls between two looks at the stop flag (a few seconds at typical budgets).
_REQUESTS_PER_SLICE = 5

# Told after each slice of lookups: (ids done, ids due this cycle, 429s so far).
LookupProgress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class ConfiguredSource:
    """A source with what the cycle needs to know about drawing from and judging it."""

    source: Source
    sample_size: int
    policy: ClassifyPolicy
    stratify_by: str | None = None
    floor: int = 0
    # Event type → property priced per unit, recorded with each sample as its quantity.
    quantity_properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.source.name


@dataclass(frozen=True)
class CycleSettings:
    requests_per_second: float
    max_ids_per_request: int
    every: timedelta
    budget_share: float
    recheck_share: float
    recheck: RecheckPolicy
    default_policy: ClassifyPolicy
    # How long a cycle tails before it draws. What was appended since the last cycle
    # fits easily; a long history does not, and is counted after the lookups instead
    # (`CheckCycle.catch_up`), over as many cycles as it takes, while volumes are
    # estimated from the draw. So the first cycle on a year of logs checks at once.
    tail_slice: timedelta = timedelta(seconds=5)
    # Follow-up probes (`core.sampling.plan_probes`): up to this share of each source's
    # draw goes to groups of these rules whose evidence is rising or whose alert
    # fires, at most `probe_per_group` each, drawn from the group's events of the last
    # `PROBE_LOOKBACK_CYCLES` cycles.
    rules: Sequence[AlertRule] = ()
    probe_share: float = 0.0
    probe_per_group: int = 0


class CheckCycle:
    """Runs cycles for a fixed set of sources against one search client and one store."""

    def __init__(
        self,
        *,
        sessions: SessionFactory,
        sources: Sequence[ConfiguredSource],
        search: SearchClient,
        checkpoints: Callable[[Session, datetime], CheckpointStore],
        clock: Clock,
        settings: CycleSettings,
        rng: random.Random | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        lookup_progress: "LookupProgress | None" = None,
    ) -> None:
        self._sessions = sessions
        self._sources = list(sources)
        self._search = search
        self._checkpoints = checkpoints
        self._clock = clock
        self._settings = settings
        self._rng = rng or random.Random()
        self._should_stop = should_stop
        self._lookup_progress = lookup_progress
        self._policies: Mapping[str, ConfiguredSource] = {s.name: s for s in self._sources}
        # Sources whose tail stopped short (their history is not all counted yet).
        self._behind: set[str] = set()
        self._catch_up_until: float | None = None

    @property
    def sources(self) -> list[Source]:
        return [configured.source for configured in self._sources]

    def run(self, *, draw: bool = True) -> CycleSummary:
        """Run one cycle; TokenRejected propagates after the run is recorded as failed.

        `draw=False` only works off what is due (pending, failed lookups, unmatched
        customers), spending the whole budget on it.
        """
        log = structlog.get_logger()
        now = self._clock.now()
        started_monotonic = self._clock.monotonic()
        with transaction(self._sessions) as session:
            run_id = runs.start_run(session, now)
        summary = CycleSummary(run_id=run_id, started_at=now)
        log.info("cycle.started", run_id=run_id, sources=len(self._sources))
        try:
            tail_until = started_monotonic + self._settings.tail_slice.total_seconds()
            self._tail_sources(summary, now, tail_until)
            self._check(summary, now, started_monotonic, draw=draw)
            summary.status = "finished"
        except TokenRejected as exc:
            summary.status = "failed"
            summary.error = str(exc)
            raise
        except Exception as exc:
            summary.status = "failed"
            summary.error = f"{type(exc).__name__}: {exc}"
            raise
        except BaseException:
            # Ctrl-C or interpreter exit: what was written stays; say how it ended.
            summary.status = "interrupted"
            summary.error = "interrupted"
            raise
        finally:
            summary.finished_at = self._clock.now()
            try:
                self._finish_run(summary)
            except SQLAlchemyError as exc:
                # Never let the bookkeeping hide why the cycle ended (a Ctrl-C, a lost
                # database): the next cycle marks this run abandoned.
                log.warning("cycle.finish_not_recorded", run_id=run_id, error=str(exc))
                if summary.status == "finished":
                    raise
            log.info(
                "cycle.finished",
                run_id=run_id,
                status=summary.status,
                checked=summary.checked,
                verdicts=dict(summary.verdicts),
                search_requests=summary.search_requests,
                error=summary.error,
            )
        return summary

    # -- steps -----------------------------------------------------------------------

    def catch_up(self) -> bool:
        """Go on tailing sources whose history is not counted yet, within the cycle's time.

        Called after the cycle (and, by `check`, after its alerts): the lookups and
        alerts never wait for a long history. Returns whether every source caught up.
        """
        log = structlog.get_logger()
        until = self._catch_up_until
        while self._behind and until is not None and self._clock.monotonic() < until:
            if self._should_stop():
                break
            now = self._clock.now()
            for configured in [s for s in self._sources if s.name in self._behind]:
                try:
                    scan = self._tail_one(configured, now, until)
                except (OSError, ValueError) as exc:
                    log.warning("source.unreadable", source=configured.name, error=str(exc))
                    self._behind.discard(configured.name)
                    continue
                log.info(
                    "tail.caught_up" if scan.caught_up else "tail.behind",
                    source=configured.name,
                    lines_read=scan.lines_read,
                    bytes_behind=scan.bytes_behind,
                )
        return not self._behind

    def _tail_one(self, configured: ConfiguredSource, now: datetime, until: float) -> ScanResult:
        """Read one source's appended lines until `until`; commit counts with checkpoints."""
        # Load, read the files outside any transaction, then apply the increments and
        # the new checkpoints together, atomically.
        with transaction(self._sessions) as session:
            known = self._checkpoints(session, now).load(configured.name)
        scan = configured.source.scan_new(
            known,
            now=now,
            should_stop=lambda: self._should_stop() or self._clock.monotonic() >= until,
        )
        with transaction(self._sessions) as session:
            self._checkpoints(session, now).apply(scan, day=now.date())
            _note_scan(session, configured, scan, now)
        if scan.caught_up:
            self._behind.discard(configured.name)
        else:
            self._behind.add(configured.name)
        return scan

    def _tail_sources(self, summary: CycleSummary, now: datetime, until: float) -> None:
        """Read what was appended since last time: exact volumes and bad lines."""
        log = structlog.get_logger()
        for configured in self._sources:
            report = summary.sources.setdefault(configured.name, SourceReport(configured.name))
            try:
                scan = self._tail_one(configured, now, until)
            except (OSError, ValueError) as exc:
                report.error = f"cannot read source: {exc}"
                log.warning("source.unreadable", source=configured.name, error=str(exc))
                continue
            report.volumes_counted = scan.caught_up
            report.tail_behind_bytes = scan.bytes_behind
            # Every non-empty read leaves a checkpoint: only without any is it worth
            # asking the source what is wrong. A scan that raised nothing and read
            # nothing almost always means a path matching no file, not a quiet pipeline.
            if not scan.checkpoints:
                problems = configured.source.problems()
                report.no_files = bool(problems)
                for problem in problems:
                    report.warnings.append(problem)
                    log.warning("source.problem", source=configured.name, problem=problem)
            report.lines_read = scan.lines_read
            report.new_events = sum(delta.events for delta in scan.volumes.values())
            report.bad_lines = sum(scan.bad_lines.values())
            report.warnings.extend(scan.notes)

    def _check(
        self, summary: CycleSummary, now: datetime, started_monotonic: float, *, draw: bool
    ) -> None:
        settings = self._settings
        budget = cycle_budget(
            requests_per_second=settings.requests_per_second,
            max_ids_per_request=settings.max_ids_per_request,
            every=settings.every,
            share=settings.budget_share,
        )
        summary.budget_ids = budget.ids
        with transaction(self._sessions) as session:
            # Before the cycle's first question of the samples: the due count, the
            # "already stored?" lookup and the due rows are planned on these statistics
            # (missing ones, after a restore or a first big load, planned the lookup as
            # a scan of the whole table: 1.4 s at 5 M rows instead of 40 ms).
            refresh_statistics_if_stale(session)
        with transaction(self._sessions) as session:
            due_count = count_due(session, now=now)
        recheck_ids, shares = split_budget(
            budget.ids,
            recheck_demand=due_count,
            sample_demands={
                s.name: s.sample_size
                for s in self._sources
                if draw and summary.sources[s.name].error is None
            },
            recheck_share=settings.recheck_share,
        )
        targets, overall = self._probe_targets(now) if draw else ([], 0.0)
        probes: dict[str, list[Probe]] = {}
        for name, share in shares.items():
            reserve = probe_reserve(share, settings.probe_share, overall)
            planned = plan_probes(targets, reserve, settings.probe_per_group, overall)
            if planned:
                probes[name] = planned
        main = {n: k - sum(p.size for p in probes.get(n, [])) for n, k in shares.items()}
        drawn = self._draw(summary, now, main)
        drawn += self._draw_probes(summary, now, probes, drawn)
        # Draws already recorded are not looked up again: their share of the budget
        # goes to re-checks rather than going unspent.
        unspent = max(0, sum(shares.values()) - len(drawn))
        with transaction(self._sessions) as session:
            due = due_rows(session, now=now, limit=recheck_ids + unspent)
        summary.rechecked = len(due)
        self._catch_up_until = started_monotonic + budget.seconds
        self._search_and_record(summary, drawn, due, now, self._catch_up_until)

    def _draw(
        self, summary: CycleSummary, now: datetime, shares: Mapping[str, int]
    ) -> list[DrawnEvent]:
        """Draw each source's share; return the samples the store does not hold yet."""
        log = structlog.get_logger()
        drawn: list[DrawnEvent] = []
        for configured in self._sources:
            report = summary.sources.setdefault(configured.name, SourceReport(configured.name))
            wanted = shares.get(configured.name, 0)
            if wanted <= 0 or report.error:
                continue
            with transaction(self._sessions) as session:
                since = runs.last_drawn_at(session, configured.name)
            try:
                result = self._sample(configured, wanted, now, since)
            except (OSError, ValueError) as exc:
                report.error = f"cannot sample source: {exc}"
                log.warning("source.sample_failed", source=configured.name, error=str(exc))
                continue
            with transaction(self._sessions) as session:
                runs.note_draw(
                    session, configured.name, kind=type(configured.source).__name__, now=now
                )
                known = recorded_identities(session, result.events)
            fresh: dict[tuple[str, str, str], DrawnEvent] = {}
            for sample in result.events:
                identity = (sample.source, sample.event.transaction_id, sample.event.payload_hash)
                if identity not in known:
                    fresh.setdefault(identity, sample)
            report.drawn = len(result.events)
            report.population = result.population
            window_days = (result.window.end - result.window.start) / timedelta(days=1)
            report.events_per_day = result.population / window_days if window_days else None
            report.warnings.extend(result.warnings)
            drawn.extend(fresh.values())
            log.info(
                "sample.drawn",
                source=configured.name,
                drawn=report.drawn,
                new=len(fresh),
                population=round(result.population),
                warnings=list(result.warnings),
            )
        return drawn

    def _probe_targets(self, now: datetime) -> tuple[list[ProbeTarget], float]:
        """Groups whose evidence asks for probes, and the all-traffic rules' urgency."""
        settings = self._settings
        if not settings.rules or settings.probe_share <= 0 or settings.probe_per_group <= 0:
            return [], 0.0
        with transaction(self._sessions) as session:
            return probe_targets(session, settings.rules, now)

    def _draw_probes(
        self,
        summary: CycleSummary,
        now: datetime,
        probes: Mapping[str, Sequence[Probe]],
        drawn: Sequence[DrawnEvent],
    ) -> list[DrawnEvent]:
        """Draw each source's probes within their groups; weight 0, so out of overall rates.

        A source that cannot draw within a group (no such field, a read error) skips
        the probe with a warning: the main draw still happened.
        """
        log = structlog.get_logger()
        taken = {(d.source, d.event.transaction_id, d.event.payload_hash) for d in drawn}
        found: list[DrawnEvent] = []
        lookback = self._settings.every * PROBE_LOOKBACK_CYCLES
        for configured in self._sources:
            report = summary.sources[configured.name]
            for probe in probes.get(configured.name, []):
                try:
                    result = configured.source.sample(
                        probe.size,
                        now=now,
                        rng=self._rng,
                        stratify_by=probe.field,
                        since=now - lookback,
                        within=probe.value,
                    )
                except (OSError, ValueError) as exc:
                    report.warnings.append(f"probe of {probe.field}={probe.value} failed: {exc}")
                    log.warning(
                        "sample.probe_failed",
                        source=configured.name,
                        group=f"{probe.field}={probe.value}",
                        error=str(exc),
                    )
                    continue
                with transaction(self._sessions) as session:
                    known = recorded_identities(session, result.events)
                fresh = []
                for sample in result.events:
                    identity = (
                        sample.source,
                        sample.event.transaction_id,
                        sample.event.payload_hash,
                    )
                    if identity in known or identity in taken:
                        continue
                    taken.add(identity)
                    fresh.append(replace(sample, weight=0.0, stratum=probe_stratum(probe.field)))
                report.probed += len(fresh)
                found.extend(fresh)
                log.info(
                    "sample.probed",
                    source=configured.name,
                    group=f"{probe.field}={probe.value}",
                    wanted=probe.size,
                    new=len(fresh),
                )
        return found

    def _sample(
        self, configured: ConfiguredSource, wanted: int, now: datetime, since: datetime | None
    ) -> SampleResult:
        """Draw what settled since the last draw first; top up from the whole window.

        Fresh events first: each is looked at soon after it settles, so a leak that
        starts now is in the next cycle's sample, and an alert resolves as soon as the
        fix shows (docs/detection.md). When fewer fresh events exist than the budget
        allows (a quiet source, the first cycle), the rest is drawn over the whole
        window as before, so the budget still audits history.
        """

        def draw(n: int, after: datetime | None) -> SampleResult:
            return configured.source.sample(
                n,
                now=now,
                rng=self._rng,
                stratify_by=configured.stratify_by,
                floor=configured.floor,
                since=after,
            )

        if since is None or since >= now:
            return draw(wanted, None)
        fresh = draw(wanted, since)
        if len(fresh.events) >= wanted:
            return fresh
        rest = draw(wanted - len(fresh.events), None)
        return replace(
            fresh,
            events=fresh.events + rest.events,
            population=rest.population,
            population_exact=rest.population_exact,
            strata_populations=rest.strata_populations,
            warnings=fresh.warnings + tuple(w for w in rest.warnings if w not in fresh.warnings),
        )

    def _search_and_record(
        self,
        summary: CycleSummary,
        drawn: list[DrawnEvent],
        due: list[SampledEventRow],
        now: datetime,
        deadline_monotonic: float,
    ) -> None:
        recheck = self._settings.recheck
        updates: list[dict[str, Any]] = []
        to_search: list[SampledEventRow] = []
        for row in due:
            policy = self._policy_for(row.source)
            expired = expire_if_needed(
                source_event_of(row), Outcome(row.outcome), now=now, policy=policy
            )
            if expired is not None:
                updates.append(
                    verdict_update(row, expired, now=now, recheck=recheck, counted_attempt=False)
                )
                summary.verdicts[expired.outcome.value] += 1
            else:
                to_search.append(row)
        self._update(updates)
        ids = list(
            dict.fromkeys(
                [s.event.transaction_id for s in drawn] + [r.transaction_id for r in to_search]
            )
        )
        answered, errors = self._look_up(summary, ids, deadline_monotonic)
        self._learn_billing(answered, now)
        self._record_new(summary, drawn, answered, errors, now)
        updates = []
        for row in to_search:
            verdict, counted = self._verdict_for(row, answered, errors, now)
            if verdict is None:
                summary.not_looked_up += 1
                continue
            updates.append(
                verdict_update(row, verdict, now=now, recheck=recheck, counted_attempt=counted)
            )
            summary.checked += 1
            summary.verdicts[verdict.outcome.value] += 1
            summary.healed += int(verdict.healed)
            if len(updates) >= _WRITE_CHUNK:
                self._update(updates)
                updates = []
        self._update(updates)

    def _look_up(
        self, summary: CycleSummary, ids: list[str], deadline_monotonic: float
    ) -> tuple[dict[str, tuple[SearchItem, ...]], dict[str, str]]:
        """Search in slices, so a shutdown request stops between calls, not after all.

        Ids left when asked to stop (or past the deadline) are simply not answered:
        new samples are recorded pending, due rows stay due.
        """
        answered: dict[str, tuple[SearchItem, ...]] = {}
        errors: dict[str, str] = {}
        # With someone watching, one request per slice, so the bar moves with each call.
        requests = 1 if self._lookup_progress is not None else _REQUESTS_PER_SLICE
        step = self._search.max_ids_per_request * requests
        before = _snapshot(self._search)
        try:
            for start in range(0, len(ids), step):
                if self._should_stop() or self._clock.monotonic() >= deadline_monotonic:
                    break
                result = self._search.search(
                    ids[start : start + step], deadline_monotonic=deadline_monotonic
                )
                answered.update(result.answered)
                errors.update(result.errors)
                if self._lookup_progress is not None:
                    rate_limited = _snapshot(self._search).rate_limited - before.rate_limited
                    self._lookup_progress(len(answered) + len(errors), len(ids), rate_limited)
        finally:
            summary.answered_ids += len(answered)
            summary.lookup_errors.update(errors.values())
            after = _snapshot(self._search)
            summary.search_requests += after.calls - before.calls
            summary.search_rate_limited += after.rate_limited - before.rate_limited
            summary.search_errors += after.failed_requests - before.failed_requests
            summary.search_batches_answered += after.ok - before.ok
            summary.search_batches_failed += (
                after.failed_requests
                - before.failed_requests
                + after.batches_abandoned
                - before.batches_abandoned
            )
            if after.failed_attempts > before.failed_attempts:
                summary.search_last_failure = after.last_failure
        return answered, errors

    def _learn_billing(self, answered: Mapping[str, Sequence[SearchItem]], now: datetime) -> None:
        """Keep the metric definitions and aliases the answers carry (for reconciliation)."""
        learned = learn_billing(item for items in answered.values() for item in items)
        if learned.definitions or learned.aliases:
            with transaction(self._sessions) as session:
                save_learned_billing(session, learned, now)

    def _record_new(
        self,
        summary: CycleSummary,
        drawn: list[DrawnEvent],
        answered: Mapping[str, Sequence[SearchItem]],
        errors: Mapping[str, str],
        now: datetime,
    ) -> None:
        """Write each new sample once, with its verdict (pending if it was not looked up)."""
        recheck = self._settings.recheck
        rows: list[dict[str, Any]] = []
        for sample in drawn:
            configured = self._policies.get(sample.source)
            row = sample_row(
                sample,
                now=now,
                run_id=summary.run_id,
                quantity_properties=configured.quantity_properties if configured else {},
            )
            txn = sample.event.transaction_id
            if txn in answered:
                verdict = classify(
                    sample.event,
                    answered[txn],
                    now=now,
                    policy=self._policy_for(sample.source),
                    attempts=1,
                )
                row.update(
                    verdict_update(NEW_ROW, verdict, now=now, recheck=recheck, counted_attempt=True)
                )
            elif txn in errors:
                verdict = error_verdict(errors[txn])
                row.update(
                    verdict_update(
                        NEW_ROW, verdict, now=now, recheck=recheck, counted_attempt=False
                    )
                )
            else:
                summary.not_looked_up += 1
                rows.append(row)
                continue
            del row["id"]
            rows.append(row)
            summary.checked += 1
            summary.verdicts[verdict.outcome.value] += 1
        for start in range(0, len(rows), _WRITE_CHUNK):
            with transaction(self._sessions) as session:
                record_samples(session, rows[start : start + _WRITE_CHUNK])
        for row in rows:
            summary.sources[row["source"]].newly_recorded += 1

    def _verdict_for(
        self,
        row: SampledEventRow,
        answered: Mapping[str, Sequence[Any]],
        errors: Mapping[str, str],
        now: datetime,
    ) -> tuple[Verdict | None, bool]:
        previous = Outcome(row.outcome)
        if row.transaction_id in answered:
            verdict = classify(
                source_event_of(row),
                answered[row.transaction_id],
                now=now,
                policy=self._policy_for(row.source),
                attempts=row.attempts + 1,
                previous=previous if row.attempts > 0 else None,
            )
            return verdict, True
        if row.transaction_id in errors:
            if previous.is_decided:
                # A failed re-check says nothing new about a decided event: keep it,
                # just look again later.
                kept = Verdict(
                    outcome=previous,
                    reason=row.reason,
                    evidence={**row.evidence, "last_recheck_error": errors[row.transaction_id]},
                    duplicate_count=row.duplicate_count,
                    differing_fields=tuple(row.differing_fields),
                    healed=row.healed,
                )
                return kept, False
            return error_verdict(errors[row.transaction_id]), False
        return None, False

    def _update(self, updates: list[dict[str, Any]]) -> None:
        if not updates:
            return
        with transaction(self._sessions) as session:
            record_verdicts(session, updates)

    def _policy_for(self, source: str) -> ClassifyPolicy:
        configured = self._policies.get(source)
        return configured.policy if configured else self._settings.default_policy

    def _finish_run(self, summary: CycleSummary) -> None:
        with transaction(self._sessions) as session:
            runs.finish_run(session, summary)


def _note_scan(
    session: Session, configured: ConfiguredSource, scan: ScanResult, now: datetime
) -> None:
    """Record what the daemon last saw of a source, with the scan's own increments."""
    runs.note_scan(
        session,
        configured.name,
        kind=type(configured.source).__name__,
        now=now,
        saw_new_events=any(delta.events for delta in scan.volumes.values()),
        newest_event_at=max(
            (c.last_event_at for c in scan.checkpoints if c.last_event_at), default=None
        ),
    )


def _snapshot(client: SearchClient) -> SearchStats:
    return replace(client.stats)
