"""Evaluate alert rules against the store and record what they decide. I/O (database).

The decisions are `leakwatch.core.alerting`'s; this module feeds it observations built
with the store queries and persists its answer. For each alert (a rule, or a rule and
one group when it is split `by`) one transaction writes the new `Alert` state, an
`AlertTransition` row when something happened, and the outbox rows that tell Slack —
so a restart neither re-fires (the state says "announced") nor forgets (the outbox
still holds what was not delivered).

Without Slack (`deliver=False`) alerts are evaluated, stored and logged exactly the
same, and their notifications are written with status `skipped`: `leakwatch status`
and the weekly report see them, and configuring Slack later does not flood the channel
with stale history.

Silence and acknowledgement live on the `Alert` row and are interpreted by the core:
a silence suppresses every notification until it ends (then what was held back is
reconciled), an ack stops updates and repeats for the current episode.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlmodel import Session

from leakwatch.core.alerting import (
    AlertRule,
    AlertState,
    AlertStatus,
    Decision,
    DecisionTest,
    HealthKind,
    NotificationKind,
    Observation,
    RateKind,
    episode_evidence,
    evaluate,
    evaluate_health,
    explain_evidence,
    inhibit,
)
from leakwatch.core.durations import format_duration
from leakwatch.core.exposure import (
    Exposure,
    Segment,
    Volume,
    scope_exposure,
    segments_of,
    volumes_in,
)
from leakwatch.core.pricing import Price
from leakwatch.core.reconcile import MetricShortfall, worst_shortfall
from leakwatch.core.report_content import Example
from leakwatch.core.results import AlertResult
from leakwatch.core.sampling import STRATUM_FIELDS, ProbeTarget
from leakwatch.core.stats import Interval, OutcomeTally, RateEstimate, rate_from_weight_sums
from leakwatch.errors import LeakwatchError
from leakwatch.notify.blocks import AlertView, MessageKind, render
from leakwatch.notify.outbox import OutboxKind, enqueue
from leakwatch.store.alerts import (
    alerts_of_rule,
    lock_or_create,
    save_decision,
    state_of,
)
from leakwatch.store.billing import reconciled_scope_totals
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import Alert
from leakwatch.store.outbox import NotificationStatus
from leakwatch.store.queries import (
    OutcomeCounts,
    example_transactions,
    outcome_batches,
    outcome_counts,
    pooled_counts,
    segment_counts,
    volume_rows,
)


@dataclass(frozen=True, slots=True)
class HealthSignals:
    """Health conditions measured by the check cycle / daemon; None means not measured.

    A condition that was not measured leaves its alert as it is. `details` holds the
    human explanation per condition, keyed by `HealthKind` value, or
    `"<kind>:<source>"` for the per-source ones (e.g. "no new events for 2h 10m").
    """

    # Per source: no new events for longer than `health.source_stale_after`.
    source_stale: Mapping[str, bool] = field(default_factory=dict)
    # Per source: bad-line rate over the last cycle above `health.bad_line_rate`.
    bad_line_rate_high: Mapping[str, bool] = field(default_factory=dict)
    # Metronome answered 401/403 to our bearer token.
    token_rejected: bool | None = None
    # Metronome unreachable, or its error rate above `health.api_error_rate`.
    api_unreachable: bool | None = None
    # At least `health.cycles_behind` scheduled cycles missed or overrunning.
    cycles_behind: bool | None = None
    details: Mapping[str, str] = field(default_factory=dict)

    def conditions(self) -> list[tuple[HealthKind, str, bool, str]]:
        """List (kind, scope, failing, detail) for every measured condition."""
        found: list[tuple[HealthKind, str, bool, str]] = []
        for kind, value in (
            (HealthKind.TOKEN_REJECTED, self.token_rejected),
            (HealthKind.API_UNREACHABLE, self.api_unreachable),
            (HealthKind.CYCLES_BEHIND, self.cycles_behind),
        ):
            if value is not None:
                found.append((kind, "", value, self.details.get(kind.value, "")))
        for kind, per_source in (
            (HealthKind.SOURCE_STALE, self.source_stale),
            (HealthKind.BAD_LINE_RATE, self.bad_line_rate_high),
        ):
            for source, value in sorted(per_source.items()):
                detail = self.details.get(f"{kind.value}:{source}", "")
                found.append((kind, f"source={source}", value, detail))
        return found


_HEALTH_SEVERITY = {
    HealthKind.TOKEN_REJECTED: "critical",
    HealthKind.API_UNREACHABLE: "critical",
    HealthKind.SOURCE_STALE: "warning",
    HealthKind.CYCLES_BEHIND: "warning",
    HealthKind.BAD_LINE_RATE: "warning",
}
_HEALTH_TITLE = {
    HealthKind.TOKEN_REJECTED: "Metronome rejects the API token",
    HealthKind.API_UNREACHABLE: "Metronome unreachable or erroring",
    HealthKind.SOURCE_STALE: "Source log is stale",
    HealthKind.CYCLES_BEHIND: "Check cycles are falling behind",
    HealthKind.BAD_LINE_RATE: "Too many unusable lines in the source log",
}


@dataclass(frozen=True, slots=True)
class WindowSegments:
    """A rule window's outcomes and volumes per (source, event type) segment."""

    tallies: Mapping[Segment, OutcomeTally]
    volumes: Mapping[Segment, Volume]


def scope_of(by: str | None, group: str | None) -> str:
    """Name an alert's scope: "" for everything, else `by=group`."""
    return "" if by is None or group is None else f"{by}={group}"


def evaluate_alerts(
    sessions: SessionFactory,
    rules: Sequence[AlertRule],
    now: datetime,
    *,
    prices: Mapping[str, Price] | None = None,
    currency: str = "$",
    deliver: bool = True,
) -> list[AlertResult]:
    """Evaluate every rule (and every group of a split rule) at `now` and record it."""
    results: list[AlertResult] = []
    failures: list[str] = []
    # All-traffic rules first: while one fires, its groups' messages are held back.
    firing_overall: dict[RateKind, str] = {}
    for rule in sorted(rules, key=lambda r: r.by is not None):
        if rule.rate is RateKind.BILLED_GAP:
            try:
                results += _evaluate_billed_gap(sessions, rule, now, deliver)
            except Exception as exc:
                structlog.get_logger().error(
                    "alert.evaluation_failed",
                    rule=rule.name,
                    error=type(exc).__name__,
                    exc_info=True,
                )
                failures.append(f"{rule.name}: {type(exc).__name__}")
            continue
        by = rule.by.value if rule.by is not None else None
        with transaction(sessions) as session:
            window = _window_segments(session, by, now - rule.window, now)
            groups, evidence = _groups_and_batches(session, rule, now, window)
        for group, counts in sorted(groups.items(), key=lambda kv: kv[0] or ""):
            # One alert that cannot be recorded (every minute, if the cause persists)
            # must not keep every rule after it from being evaluated.
            try:
                results.append(
                    _evaluate_one(
                        sessions,
                        rule,
                        group if by else None,
                        counts,
                        evidence.get(group, []) if evidence is not None else None,
                        window,
                        max(1, len(groups)) if by else 1,
                        now,
                        prices,
                        currency,
                        deliver,
                        firing_overall.get(rule.rate) if by else None,
                    )
                )
                if by is None and results[-1].status is AlertStatus.FIRING:
                    firing_overall.setdefault(rule.rate, rule.name)
            except Exception as exc:
                scope = scope_of(by, group if by else None)
                structlog.get_logger().error(
                    "alert.evaluation_failed",
                    rule=rule.name,
                    scope=scope,
                    error=type(exc).__name__,
                    exc_info=True,
                )
                failures.append(
                    f"{rule.name}{f' [{scope}]' if scope else ''}: {type(exc).__name__}"
                )
    if failures:
        raise AlertEvaluationFailed(failures, results)
    return results


class AlertEvaluationFailed(LeakwatchError):
    """Some alerts could not be evaluated; the others were, and are in `results`."""

    def __init__(self, failures: list[str], results: list[AlertResult]) -> None:
        super().__init__(f"{len(failures)} alert(s) not evaluated: " + "; ".join(failures))
        self.failures = failures
        self.results = results


def evaluate_health_alerts(
    sessions: SessionFactory,
    signals: HealthSignals,
    now: datetime,
    *,
    for_: timedelta = timedelta(0),
    repeat_interval: timedelta = timedelta(hours=4),
    deliver: bool = True,
) -> list[AlertResult]:
    """Step every measured health condition at `now` and record it like a rate alert."""
    results: list[AlertResult] = []
    for kind, scope, failing, detail in signals.conditions():
        with transaction(sessions) as session:
            alert = lock_or_create(
                session, kind.value, scope, kind="health", severity=_HEALTH_SEVERITY[kind]
            )
            state = state_of(alert)
            decision = evaluate_health(
                kind, failing, state, now, for_=for_, repeat_interval=repeat_interval
            )
            view = AlertView(
                rule_name=_HEALTH_TITLE[kind],
                severity=alert.severity,
                scope=scope,
                status=decision.new_state.status.value,
                episode=decision.new_state.episode,
                now=now,
                is_health=True,
                detail=detail or kind.value.replace("_", " "),
                since=decision.new_state.since,
                reason=decision.reason,
            )
            results.append(
                _record(session, alert, state, decision, view, now, {"failing": failing}, deliver)
            )
    return results


def _evaluate_one(
    sessions: SessionFactory,
    rule: AlertRule,
    group: str | None,
    counts: OutcomeCounts,
    batches: Sequence[tuple[datetime, float, float]] | None,
    window: WindowSegments | None,
    groups: int,
    now: datetime,
    prices: Mapping[str, Price] | None,
    currency: str,
    deliver: bool,
    inhibited_by: str | None = None,
) -> AlertResult:
    by = rule.by.value if rule.by is not None else None
    scope = scope_of(by, group)
    since = now - rule.window
    with transaction(sessions) as session:
        alert = lock_or_create(session, rule.name, scope, kind="rate", severity=rule.severity.value)
        state = state_of(alert)
        evidence = level = None
        if batches is not None:
            evidence, level = episode_evidence(rule, groups, batches, state)
        observation = replace(
            _observation(rule, counts), evidence=evidence, groups=groups, resolve_from=level
        )
        decision = evaluate(rule, state, observation, now)
        if inhibited_by is not None:
            decision = inhibit(decision, state, inhibited_by)
        why = explain_evidence(rule, evidence, groups, level) if evidence is not None else ""
        estimate = decision.estimate
        leaked = revenue = None
        if estimate is not None:
            exposure = _exposure(rule, by, group, window, prices or {})
            leaked = exposure.leaked_events.point if exposure.leaked_events else None
            revenue = exposure.revenue_at_risk.point if exposure.revenue_at_risk else None
        examples: list[Example] = []
        if decision.notification in (
            NotificationKind.FIRE,
            NotificationKind.UPDATE,
            NotificationKind.REPEAT,
        ):
            examples = example_transactions(
                session, outcomes=rule.rate.outcomes, since=since, until=now, by=by, group=group
            )
        interval = estimate.interval if estimate is not None else None
        view = AlertView(
            rule_name=rule.name,
            severity=rule.severity.value,
            scope=scope,
            status=decision.new_state.status.value,
            episode=decision.new_state.episode,
            now=now,
            rate_name=rule.rate.value,
            outcomes=tuple(sorted(o.value for o in rule.rate.outcomes)),
            rate=estimate.rate if estimate is not None else None,
            lower=interval.lo if interval is not None else None,
            upper=interval.hi if interval is not None else None,
            threshold=rule.threshold,
            confidence=rule.confidence,
            leaks=round(observation.leaks),
            samples=round(observation.decided),
            window_label=format_duration(rule.window),
            since=decision.new_state.since,
            estimated_leaked_events=leaked,
            revenue_at_risk=revenue,
            currency=currency,
            examples=tuple((e.transaction_id, e.outcome, e.reason) for e in examples),
            breakdown=tuple(
                sorted(
                    (
                        (o.value, counts.counts[o])
                        for o in rule.rate.outcomes
                        if counts.counts.get(o)
                    ),
                    key=lambda pair: -pair[1],
                )
            ),
            window_days=rule.window.total_seconds() / 86_400,
            reason=decision.reason,
            why=why,
        )
        facts = {
            "rate": view.rate,
            "lower": view.lower,
            "upper": view.upper,
            "threshold": rule.threshold,
            "leaks": view.leaks,
            "samples": view.samples,
            "window_s": rule.window.total_seconds(),
            "estimated_leaked_events": leaked,
            "revenue_at_risk": revenue,
            "examples": [e.transaction_id for e in examples],
            "decision": rule.decision.value,
            "why": why,
        }
        return _record(session, alert, state, decision, view, now, facts, deliver)


def _evaluate_billed_gap(
    sessions: SessionFactory, rule: AlertRule, now: datetime, deliver: bool
) -> list[AlertResult]:
    """Step a `billed_gap` rule: the worst metric's exact shortfall, overall or per customer.

    Its window counts reconciled UTC days from the one `window` ago; the figures are
    totals, not samples, so the decision needs neither an interval nor a minimum.
    """
    by = rule.by.value if rule.by is not None else None
    since_day = (now - rule.window).astimezone(UTC).date()
    results: list[AlertResult] = []
    with transaction(sessions) as session:
        totals = reconciled_scope_totals(session, since=since_day, by_customer=by is not None)
        scopes: dict[str | None, list[MetricShortfall]] = {}
        names: dict[str | None, str | None] = {}
        for t in totals:
            scopes.setdefault(t.group, []).append(
                MetricShortfall(t.metric, t.expected, t.billed, t.days)
            )
            names[t.group] = t.name
        for alert in alerts_of_rule(session, rule.name):
            group = alert.scope.partition("=")[2] if alert.scope else None
            if alert.status != "inactive":
                scopes.setdefault(group, [])  # a vanished scope is stepped, and clears
    for group, rows in sorted(scopes.items(), key=lambda kv: kv[0] or ""):
        worst = worst_shortfall(rows)
        share = worst.share if worst is not None else 0.0
        summary = worst.describe() if worst is not None else "nothing reconciled in the window"
        scope = scope_of(by, group)
        with transaction(sessions) as session:
            alert = lock_or_create(
                session, rule.name, scope, kind="rate", severity=rule.severity.value
            )
            state = state_of(alert)
            observation = Observation(
                leaks=max(0.0, worst.expected - worst.billed) if worst else 0.0,
                decided=worst.expected if worst else 0.0,
                weighted=RateEstimate(
                    count=max(0.0, worst.expected - worst.billed) if worst else 0.0,
                    decided=worst.expected if worst else 0.0,
                    rate=share,
                    interval=Interval(share, share),
                    effective_n=worst.expected if worst else 0.0,
                ),
                exact_summary=summary,
            )
            decision = evaluate(rule, state, observation, now)
            view = AlertView(
                rule_name=rule.name,
                severity=rule.severity.value,
                scope=scope if names.get(group) is None else f"{scope} ({names[group]})",
                status=decision.new_state.status.value,
                episode=decision.new_state.episode,
                now=now,
                rate_name=rule.rate.value,
                outcomes=(),
                rate=share,
                lower=share,
                upper=share,
                threshold=rule.threshold,
                confidence=rule.confidence,
                window_label=format_duration(rule.window),
                since=decision.new_state.since,
                currency="",
                reason=decision.reason,
                why=summary,
            )
            facts = {
                "rate": share,
                "threshold": rule.threshold,
                "metric": worst.metric if worst else None,
                "expected": worst.expected if worst else None,
                "billed": worst.billed if worst else None,
                "window_s": rule.window.total_seconds(),
                "why": summary,
            }
            results.append(_record(session, alert, state, decision, view, now, facts, deliver))
    return results


def _groups_and_batches(
    session: Session, rule: AlertRule, now: datetime, window: WindowSegments | None = None
) -> tuple[
    dict[str | None, OutcomeCounts], dict[str | None, list[tuple[datetime, float, float]]] | None
]:
    """A rule's groups over its window, and each group's cycles for the sequential test.

    Counts pool `window`'s segments when the caller read them already (see
    `_window_segments`), else they are read.
    """
    since = now - rule.window
    by = rule.by.value if rule.by is not None else None
    counted = (
        outcome_counts(session, since=since, until=now, by=by)
        if window is None
        else pooled_counts(window.tallies, by)
    )
    groups = {c.group: c for c in counted}
    if by is not None:
        # Open alerts of groups with no samples now must still be stepped.
        for alert in alerts_of_rule(session, rule.name):
            group = alert.scope.partition("=")[2] if alert.scope else None
            if group is not None and group not in groups and alert.status != "inactive":
                groups[group] = OutcomeCounts(group=group)
    return groups, _batches(session, rule, since, now, by)


def _batches(
    session: Session, rule: AlertRule, since: datetime, now: datetime, by: str | None
) -> dict[str | None, list[tuple[datetime, float, float]]] | None:
    """Per group, the window's cycles as (at, leaks, samples) for the sequential test.

    A weighted (stratified) batch counts for its Kish effective size; the group's own
    probes (weight 0, drawn uniformly within it) add their plain counts.
    """
    if rule.decision is not DecisionTest.SEQUENTIAL:
        return None
    batches = outcome_batches(session, outcomes=rule.rate.outcomes, since=since, until=now, by=by)
    found: dict[str | None, list[tuple[datetime, float, float]]] = {}
    for group, cycle_batches in batches.items():
        effective = []
        for b in cycle_batches:
            estimate = rate_from_weight_sums(
                b.leaks,
                b.decided,
                b.weighted_leaks,
                b.weighted_decided,
                b.weighted_decided_squares,
            )
            effective.append(
                (
                    b.sampled_at,
                    estimate.rate * estimate.effective_n + b.probe_leaks,
                    estimate.effective_n + b.probe_decided,
                )
            )
        found[group] = effective
    return found


def probe_targets(
    session: Session, rules: Sequence[AlertRule], now: datetime
) -> tuple[list[ProbeTarget], float]:
    """The groups of split rules that want follow-up probes at `now`, and how urgently.

    A group whose alert fires (its clear test needs samples), or whose breach evidence
    has left zero — the same evidence `evaluate_alerts` decides on. The second value
    is the all-traffic rules' urgency (their breach over their bound, the highest),
    which the probe reserve yields to (`core.sampling.probe_reserve`).
    """
    targets: list[ProbeTarget] = []
    overall = 0.0
    for rule in rules:
        if rule.rate is RateKind.BILLED_GAP or rule.decision is not DecisionTest.SEQUENTIAL:
            continue
        if rule.by is not None and rule.by.value not in STRATUM_FIELDS:
            continue
        groups, batches = _groups_and_batches(session, rule, now)
        if batches is None:
            continue
        states = {a.scope: state_of(a) for a in alerts_of_rule(session, rule.name)}
        if rule.by is None:
            evidence, _ = episode_evidence(rule, 1, batches.get(None, []), states.get(""))
            overall = max(overall, evidence.breach / rule.monitor().bound)
            continue
        width = max(1, len(groups))
        for group in groups:
            if group is None:
                continue
            state = states.get(scope_of(rule.by.value, group))
            evidence, _ = episode_evidence(rule, width, batches.get(group, []), state)
            if state is not None and state.status is not AlertStatus.INACTIVE:
                targets.append(ProbeTarget(rule.by.value, group, 1.0, firing=True))
            elif evidence.breach > 0:
                bound = rule.monitor(width).bound
                targets.append(ProbeTarget(rule.by.value, group, evidence.breach / bound))
    return targets, overall


def _observation(rule: AlertRule, counts: OutcomeCounts) -> Observation:
    """Counts as the core wants them, with the one weighted estimate of the rule's rate."""
    return Observation(
        leaks=counts.count(rule.rate.outcomes),
        decided=counts.decided,
        weighted=counts.rate(rule.rate.outcomes, rule.confidence),
    )


def _window_segments(
    session: Session, by: str | None, since: datetime, until: datetime
) -> WindowSegments | None:
    """Read a rule's window per segment once: its groups' counts pool the segments, and
    each scope's exposure takes its own.

    None for a customer scope: customers are not segments (their counts are read from
    the samples), and no per-customer volume exists, so they have no exposure.
    """
    if by == "customer_id":
        return None
    return WindowSegments(
        tallies=segment_counts(session, since=since, until=until),
        volumes=volumes_in(volume_rows(session, since.date(), until.date()), since, until, until),
    )


def _exposure(
    rule: AlertRule,
    by: str | None,
    group: str | None,
    window: WindowSegments | None,
    prices: Mapping[str, Price],
) -> Exposure:
    """Leaked events and revenue at risk of the rule's outcomes over its window.

    The rule shared with status, the report and /metrics (`core.exposure`): each
    (source, event type) segment in scope at its own rate × its volume over the window.
    """
    if window is None:
        return Exposure()
    return scope_exposure(
        window.tallies,
        window.volumes,
        prices,
        outcomes=rule.rate.outcomes,
        confidence=rule.confidence,
        within=segments_of(
            source=group if by == "source" else None,
            event_type=group if by == "event_type" else None,
        ),
    )


def _record(
    session: Session,
    alert: Alert,
    before: AlertState,
    decision: Decision,
    view: AlertView,
    now: datetime,
    facts: Mapping[str, Any],
    deliver: bool,
) -> AlertResult:
    """Write state, transition and outbox rows for one decision, in the caller's transaction."""
    log = structlog.get_logger()
    after = decision.new_state
    assert alert.id is not None
    changed = after.status is not before.status
    transition = decision.notification.value if decision.notification else None
    if transition is None and changed:
        transition = after.status.value
    save_decision(
        session,
        alert,
        before=before,
        after=after,
        now=now,
        facts=facts,
        transition=transition,
        reason=decision.reason,
    )
    if decision.notification is not None:
        _enqueue_notifications(session, alert.id, decision.notification, view, now, deliver)
        log.info(
            "alert.notified",
            rule=alert.rule_name,
            scope=alert.scope,
            kind=decision.notification.value,
            episode=after.episode,
            reason=decision.reason,
            delivered_to_slack=deliver,
        )
    elif changed or before.silenced_until != after.silenced_until:
        log.info(
            "alert.transitioned",
            rule=alert.rule_name,
            scope=alert.scope,
            status=after.status.value,
            reason=decision.reason,
        )
    return AlertResult(
        alert_id=alert.id,
        rule_name=alert.rule_name,
        scope=alert.scope,
        status=after.status,
        notification=decision.notification,
        reason=decision.reason,
    )


def _enqueue_notifications(
    session: Session,
    alert_id: int,
    kind: NotificationKind,
    view: AlertView,
    now: datetime,
    deliver: bool,
) -> None:
    """Enqueue the message, and for replies the edit that shows the root's new status."""
    status = NotificationStatus.PENDING if deliver else NotificationStatus.SKIPPED
    note = None if deliver else "no Slack configured"
    root_key = f"alert:{alert_id}:ep{view.episode}:fire"
    stamp = now.astimezone(UTC).isoformat()
    if kind is NotificationKind.FIRE:
        enqueue(
            session,
            dedup_key=root_key,
            kind=OutboxKind.FIRE,
            message=render(view, MessageKind.FIRE),
            now=now,
            alert_id=alert_id,
            episode=view.episode,
            status=status,
            note=note,
        )
        return
    enqueue(
        session,
        dedup_key=f"alert:{alert_id}:ep{view.episode}:{kind.value}:{stamp}",
        kind=OutboxKind(kind.value),
        message=render(view, MessageKind(kind.value)),
        now=now,
        alert_id=alert_id,
        root_key=root_key,
        episode=view.episode,
        status=status,
        note=note,
    )
    enqueue(
        session,
        dedup_key=f"alert:{alert_id}:ep{view.episode}:edit:{stamp}",
        kind=OutboxKind.EDIT,
        message=render(view, MessageKind.EDIT),
        now=now,
        alert_id=alert_id,
        root_key=root_key,
        episode=view.episode,
        status=status,
        note=note,
    )


def rules_by_name(rules: Iterable[AlertRule]) -> dict[str, AlertRule]:
    return {rule.name: rule for rule in rules}
