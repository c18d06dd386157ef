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
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

import structlog
from sqlmodel import Session, col, select

from leakwatch.core.alerting import (
    AlertRule,
    AlertState,
    AlertStatus,
    Decision,
    HealthKind,
    NotificationKind,
    Observation,
    evaluate,
    evaluate_health,
)
from leakwatch.core.durations import format_duration
from leakwatch.core.results import AlertResult
from leakwatch.core.stats import rate_from_weight_sums
from leakwatch.errors import LeakwatchError
from leakwatch.notify.blocks import AlertView, MessageKind, render
from leakwatch.notify.outbox import NotificationKind as OutboxKind
from leakwatch.notify.outbox import enqueue
from leakwatch.store.alerts import alerts_of_rule, apply_state, lock_or_create, state_of
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import Alert, AlertTransition, VolumeCount
from leakwatch.store.outbox import NotificationStatus
from leakwatch.store.queries import OutcomeCounts, example_transactions, outcome_counts


class UnitPriceLike(Protocol):
    """A price per unit of a quantity property (config's `UnitPrice`)."""

    @property
    def per_unit(self) -> float: ...


Price = float | UnitPriceLike


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
    for rule in rules:
        since = now - rule.window
        by = rule.by.value if rule.by is not None else None
        with transaction(sessions) as session:
            groups = {c.group: c for c in outcome_counts(session, since=since, until=now, by=by)}
            if by is not None:
                # Open alerts of groups with no samples now must still be stepped.
                for alert in alerts_of_rule(session, rule.name):
                    group = alert.scope.partition("=")[2] if alert.scope else None
                    if group is not None and group not in groups and alert.status != "inactive":
                        groups[group] = OutcomeCounts(group=group)
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
                        now,
                        prices,
                        currency,
                        deliver,
                    )
                )
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
    now: datetime,
    prices: Mapping[str, Price] | None,
    currency: str,
    deliver: bool,
) -> AlertResult:
    by = rule.by.value if rule.by is not None else None
    scope = scope_of(by, group)
    since = now - rule.window
    with transaction(sessions) as session:
        alert = lock_or_create(session, rule.name, scope, kind="rate", severity=rule.severity.value)
        state = state_of(alert)
        observation = _observation(rule, counts)
        decision = evaluate(rule, state, observation, now)
        estimate = decision.estimate
        leaked = revenue = None
        if estimate is not None:
            leaked, revenue = _estimates(session, estimate.rate, by, group, since, now, prices)
        examples: list[str] = []
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
            examples=tuple(examples),
            reason=decision.reason,
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
            "examples": examples,
        }
        return _record(session, alert, state, decision, view, now, facts, deliver)


def _observation(rule: AlertRule, counts: OutcomeCounts) -> Observation:
    """Counts as the core wants them; the weighted estimate when the sample is stratified."""
    plain = Observation.from_counts(rule.rate, counts.counts)
    decided_outcomes = [o for o in counts.counts if o.is_decided]
    weight_decided = counts.weight(decided_outcomes)
    if plain.decided <= 0 or abs(weight_decided - plain.decided) < 1e-9:
        return plain
    squares = sum(counts.weights_squared.get(o, 0.0) for o in decided_outcomes)
    if weight_decided <= 0 or squares <= 0:
        return plain
    weighted = rate_from_weight_sums(
        plain.leaks,
        plain.decided,
        counts.weight(rule.rate.outcomes),
        weight_decided,
        squares,
        rule.confidence,
    )
    return Observation(leaks=plain.leaks, decided=plain.decided, weighted=weighted)


def _estimates(
    session: Session,
    rate: float,
    by: str | None,
    group: str | None,
    since: datetime,
    until: datetime,
    prices: Mapping[str, Price] | None,
) -> tuple[float | None, float | None]:
    """Leaked events and revenue at risk over the window, when volumes are known.

    Volume is counted per UTC day by the tailer; a day partly inside the window
    counts in proportion. No per-customer volume exists, so a customer scope has none.
    """
    if by == "customer_id":
        return None, None
    query = select(VolumeCount).where(
        col(VolumeCount.day) >= since.date(), col(VolumeCount.day) <= until.date()
    )
    if by == "event_type" and group is not None:
        query = query.where(VolumeCount.event_type == group)
    if by == "source" and group is not None:
        query = query.where(VolumeCount.source == group)
    events_by_type: dict[str, float] = {}
    quantity_by_type: dict[str, float] = {}
    for row in session.exec(query).all():
        share = _day_share(row.day, since, until)
        events_by_type[row.event_type] = (
            events_by_type.get(row.event_type, 0.0) + row.events * share
        )
        quantity_by_type[row.event_type] = (
            quantity_by_type.get(row.event_type, 0.0) + row.quantity_sum * share
        )
    if not events_by_type:
        return None, None
    leaked = rate * sum(events_by_type.values())
    if not prices:
        return leaked, None
    revenue = 0.0
    for event_type, events in events_by_type.items():
        price = prices.get(event_type)
        if price is None:
            continue
        if isinstance(price, float | int):
            revenue += rate * events * float(price)
        else:
            revenue += rate * quantity_by_type.get(event_type, 0.0) * price.per_unit
    return leaked, revenue


def _day_share(day: date, since: datetime, until: datetime) -> float:
    """The share of a day's count that falls inside [since, until)."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    counted_until = min(start + timedelta(days=1), until)
    span = (counted_until - start).total_seconds()
    if span <= 0:
        return 0.0
    overlap = (counted_until - max(start, since)).total_seconds()
    return max(0.0, min(1.0, overlap / span))


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
    if after.status is AlertStatus.FIRING and before.status is not AlertStatus.FIRING:
        alert.opened_at = now
        alert.resolved_at = None
    if before.status is AlertStatus.FIRING and after.status is AlertStatus.INACTIVE:
        alert.resolved_at = now
    apply_state(alert, after, now, facts)
    session.add(alert)

    changed = after.status is not before.status
    transition = decision.notification.value if decision.notification else None
    if transition is None and changed:
        transition = after.status.value
    if transition is not None:
        session.add(
            AlertTransition(
                alert_id=alert.id,
                episode=after.episode,
                transition=transition,
                at=now,
                observation={**dict(facts), "reason": decision.reason},
            )
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
