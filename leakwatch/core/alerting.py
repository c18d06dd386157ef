"""Decide alert transitions and notifications from observed rates. Pure: no I/O.

`evaluate` is one step of a small state machine per alert (rule × group):

    inactive ──confident breach──► pending ──for_ elapsed, still breaching──► firing
        ▲                            │ confident clear                          │
        └────────────────────────────┴──────────── confident clear ◄────────────┘

- *Confident breach* and *confident clear* come from the rule's `decision`:
  - `sequential` (the default): the observation carries the evidence of a CUSUM over
    the window's cycles (`core.sequential`): breach when it holds 1/α for a rate of
    3 × the threshold against the threshold — a level that holds under any number of
    looks (docs/detection.md) — clear when it holds as much for a third of the
    threshold, or when the evidence that fired is gone and what came since points
    under the threshold. No minimum sample: the test is valid at any size, and
    `explain_evidence` says in plain words why.
  - `interval`: the Wilson lower bound of the window's rate exceeds the threshold,
    with at least `min_samples` decided samples; clear when the upper bound is below.
  In between (the hysteresis band) every state holds: a pending alert neither fires
  nor resets, a firing alert does not resolve. Too few samples (interval): the state
  holds — except for a group of a split (`by`) rule with no samples at all left in
  its window: the group is gone, and its alert resolves.
- A firing alert notifies `fire` once per episode, `update` when its rate got
  materially worse — the whole current interval lies above the interval last
  notified — `repeat` every `repeat_interval` otherwise (carrying current numbers),
  and `resolve` when it clears. Improvements do not send an update: a rate swinging
  between two disjoint levels would otherwise post a message every cycle; the repeat
  and the resolve tell the way down.
- Silence (Alertmanager-like): every notification is suppressed until it ends, but
  transitions still happen. What was suppressed is reconciled afterwards: a firing
  episode never announced gets its `fire`, an announced one that cleared meanwhile
  gets its `resolve`. A resolve for an episode never announced is never sent.
- Acknowledge: someone is on it, so `update` and `repeat` stop for this episode;
  `resolve` is still sent (the acker wants to know it is over), and the next
  episode starts unacknowledged.

`decide_notification` is the dedup stage on its own, a pure function returning a
reason, as in Alertmanager's notify pipeline. Health alerts (`evaluate_health`) run
the same machine on a boolean condition, with no band.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from leakwatch.core.events import DECIDED_OUTCOMES, Outcome
from leakwatch.core.formatting import format_instant, format_percent
from leakwatch.core.sequential import MonitorConfig, MonitorState, fired_level, monitor_over
from leakwatch.core.stats import Interval, RateEstimate, rate_estimate


class RateKind(StrEnum):
    """Which outcomes a rule counts, over all decided outcomes."""

    LEAK_RATE = "leak_rate"
    MISSING_RATE = "missing_rate"
    UNMATCHED_CUSTOMER_RATE = "unmatched_customer_rate"
    UNMATCHED_METRIC_RATE = "unmatched_metric_rate"
    DUPLICATE_RATE = "duplicate_rate"
    MISMATCH_RATE = "mismatch_rate"
    # Not sampled: the share of expected usage Metronome did not bill (reconciliation).
    BILLED_GAP = "billed_gap"

    @property
    def outcomes(self) -> frozenset[Outcome]:
        return _RATE_OUTCOMES[self]


_RATE_OUTCOMES: dict[RateKind, frozenset[Outcome]] = {
    RateKind.LEAK_RATE: frozenset(o for o in DECIDED_OUTCOMES if o.is_leak),
    RateKind.MISSING_RATE: frozenset({Outcome.MISSING}),
    RateKind.UNMATCHED_CUSTOMER_RATE: frozenset({Outcome.UNMATCHED_CUSTOMER}),
    RateKind.UNMATCHED_METRIC_RATE: frozenset({Outcome.UNMATCHED_METRIC}),
    RateKind.DUPLICATE_RATE: frozenset({Outcome.DUPLICATE}),
    RateKind.MISMATCH_RATE: frozenset({Outcome.MISMATCH}),
    RateKind.BILLED_GAP: frozenset(),
}


class GroupBy(StrEnum):
    EVENT_TYPE = "event_type"
    CUSTOMER_ID = "customer_id"
    SOURCE = "source"


class DecisionTest(StrEnum):
    """How a rate rule decides: see the module docstring."""

    SEQUENTIAL = "sequential"
    INTERVAL = "interval"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class AlertStatus(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


class NotificationKind(StrEnum):
    FIRE = "fire"
    UPDATE = "update"
    REPEAT = "repeat"
    RESOLVE = "resolve"


class HealthKind(StrEnum):
    """Conditions about leakwatch itself, each a boolean computed by the shell."""

    SOURCE_STALE = "source_stale"
    TOKEN_REJECTED = "token_rejected"  # noqa: S105 -- a condition name, not a secret
    API_UNREACHABLE = "api_unreachable"
    CYCLES_BEHIND = "cycles_behind"
    BAD_LINE_RATE = "bad_line_rate"


DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One configured alert; with `by`, one alert per offending group."""

    name: str
    rate: RateKind
    threshold: float
    window: timedelta
    min_samples: int
    confidence: float = 0.95
    by: GroupBy | None = None
    severity: Severity = Severity.WARNING
    for_: timedelta = timedelta(0)
    repeat_interval: timedelta = DEFAULT_REPEAT_INTERVAL
    decision: DecisionTest = DecisionTest.SEQUENTIAL

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"alert {self.name!r}: threshold must be in (0, 1)")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"alert {self.name!r}: confidence must be in (0, 1)")
        if self.min_samples < 0:
            raise ValueError(f"alert {self.name!r}: min_samples must be ≥ 0")
        if self.window <= timedelta(0) or self.repeat_interval <= timedelta(0):
            raise ValueError(f"alert {self.name!r}: window and repeat_interval must be > 0")
        if self.for_ < timedelta(0):
            raise ValueError(f"alert {self.name!r}: for must be ≥ 0")

    def monitor(self, groups: int = 1, resolve_from: float | None = None) -> MonitorConfig:
        """The sequential test of this rule (or of one of its `groups`, Bonferroni).

        α is the one-sided level of the rule's interval, shared out over the groups a
        split rule watches, so forty customers are not forty chances of a false alarm.
        `resolve_from` is the rate a firing episode fired at (`episode_evidence`).
        """
        alpha = (1.0 - self.confidence) / 2.0 / max(1, groups)
        return MonitorConfig(threshold=self.threshold, alpha=alpha, resolve_from=resolve_from)


@dataclass(frozen=True, slots=True)
class AlertState:
    """What the store keeps per alert so a restart neither re-fires nor forgets it.

    `since` is when the current status began; `episode` counts firing episodes (the
    current or last one); `announced` says whether the episode's `fire` went out;
    `notified_interval` is the interval the last fire/update/repeat carried.
    """

    status: AlertStatus = AlertStatus.INACTIVE
    since: datetime | None = None
    episode: int = 0
    announced: bool = False
    last_notified_at: datetime | None = None
    notified_interval: Interval | None = None
    last_rate: float | None = None
    last_interval: Interval | None = None
    silenced_until: datetime | None = None
    acked: bool = False

    def is_silenced(self, now: datetime) -> bool:
        return self.silenced_until is not None and now < self.silenced_until


@dataclass(frozen=True, slots=True)
class Observation:
    """Counts over a rule's window: `leaks` of `decided` outcomes.

    `weighted` carries a Horvitz–Thompson estimate for stratified samples; without
    it the rate is the simple one with a Wilson interval at the rule's confidence.
    """

    leaks: float
    decided: float
    weighted: RateEstimate | None = None
    evidence: MonitorState | None = None
    groups: int = 1
    # The rate a firing episode fired at; its clear test is against it (`episode_evidence`).
    resolve_from: float | None = None
    # An exact figure (totals reconciliation), not a sample: no interval, no minimum.
    exact_summary: str | None = None

    @classmethod
    def from_counts(cls, rate: RateKind, counts: Mapping[Outcome, int]) -> "Observation":
        """Count `rate`'s outcomes over the decided ones (pending, expired, error excluded)."""
        decided = sum(n for outcome, n in counts.items() if outcome in DECIDED_OUTCOMES)
        leaks = sum(n for outcome, n in counts.items() if outcome in rate.outcomes)
        return cls(leaks=leaks, decided=decided)


@dataclass(frozen=True, slots=True)
class Decision:
    """The state to store, the notification to enqueue (if any), and why."""

    new_state: AlertState
    notification: NotificationKind | None
    reason: str
    estimate: RateEstimate | None = None


def evaluate(
    rule: AlertRule, state: AlertState | None, observation: Observation, now: datetime
) -> Decision:
    """Step one alert with the rates observed over its window at `now`."""
    state = state or AlertState()
    estimate = observation.weighted or rate_estimate(
        observation.leaks, observation.decided, rule.confidence
    )
    observed = replace(state, last_rate=estimate.rate, last_interval=estimate.interval)
    described = (
        f"{rule.rate.value} {format_percent(estimate.rate)} "
        f"[{format_percent(estimate.interval.lo)}, {format_percent(estimate.interval.hi)}] "
        f"vs threshold {format_percent(rule.threshold)} over {observation.decided:g} decided"
    )
    if (
        rule.by is not None
        and observation.decided == 0
        and state.status is not AlertStatus.INACTIVE
    ):
        # A group with no samples left in the window is gone (a customer churned, an
        # event type retired): nothing is leaking there any more that we can see.
        decision = _step(
            observed,
            breach=False,
            clear=True,
            measured=None,
            for_=rule.for_,
            repeat_interval=rule.repeat_interval,
            now=now,
            described="no samples of this group left in the window",
        )
        return replace(decision, estimate=estimate)
    if observation.exact_summary is not None:
        # Exact totals: the rate is known, so it breaches or clears by itself; the
        # next reconciliation is the only new evidence, hence no hysteresis band.
        decision = _step(
            observed,
            breach=estimate.rate > rule.threshold,
            clear=estimate.rate <= rule.threshold,
            measured=estimate.interval,
            for_=rule.for_,
            repeat_interval=rule.repeat_interval,
            now=now,
            described=observation.exact_summary,
        )
        return replace(decision, estimate=estimate)
    if observation.evidence is not None:
        # The sequential test is valid at any sample size and under any number of
        # looks: no minimum, and its own evidence says why (see `explain_evidence`).
        monitor = rule.monitor(observation.groups, observation.resolve_from)
        breach = observation.evidence.breached(monitor)
        clear = observation.evidence.settled(monitor)
        decision = _step(
            observed,
            breach=breach,
            clear=clear,
            measured=estimate.interval,
            for_=rule.for_,
            repeat_interval=rule.repeat_interval,
            now=now,
            described=f"{described}: "
            + explain_evidence(
                rule, observation.evidence, observation.groups, observation.resolve_from
            ),
        )
        return replace(decision, estimate=estimate)
    if observation.decided < rule.min_samples:
        reconciled = _reconcile_only(observed, now)
        if reconciled is not None:
            return replace(reconciled, estimate=estimate)
        return Decision(
            observed,
            None,
            f"not enough samples: {observation.decided:g} decided < {rule.min_samples} "
            f"required; staying {state.status.value}",
            estimate,
        )
    decision = _step(
        observed,
        breach=estimate.interval.lo > rule.threshold,
        clear=estimate.interval.hi < rule.threshold,
        measured=estimate.interval,
        for_=rule.for_,
        repeat_interval=rule.repeat_interval,
        now=now,
        described=described,
    )
    return replace(decision, estimate=estimate)


def explain_evidence(
    rule: AlertRule,
    evidence: MonitorState,
    groups: int = 1,
    resolve_from: float | None = None,
) -> str:
    """Say in plain words what the sequential test has seen and what it concludes.

    "3.1% of 412 lookups leaked; at this rate the chance of seeing so many by luck
    under 1% is below 1 in 1,000": the counts are the run the evidence was gathered
    over, the odds Ville's bound exp(−evidence) for a rate at the threshold. While an
    alert fires (`resolve_from`), it says what came since it fired against the rate
    it fired at.
    """
    monitor = rule.monitor(groups, resolve_from)
    threshold = format_percent(rule.threshold)
    if resolve_from is not None:
        fired = format_percent(resolve_from)
        if evidence.clear_samples <= 0:
            return f"fired at a rate of at least {fired}; no sign yet that it is over"
        seen = _run(evidence.clear_leaks, evidence.clear_samples)
        odds = _odds(evidence.clear_odds(monitor))
        verdict = "the leak that fired is gone" if evidence.cleared(monitor) else "not yet over"
        return (
            f"since it fired: {seen}; so few by luck at the {fired} it fired at: "
            f"1 in {odds} — {verdict}"
        )
    if evidence.breached(monitor) or (evidence.breach > 0 and not evidence.cleared(monitor)):
        seen = _run(evidence.breach_leaks, evidence.breach_samples)
        odds = _odds(evidence.breach_odds(monitor))
        if evidence.breached(monitor):
            return (
                f"{seen}; at this rate the chance of seeing so many by luck under "
                f"{threshold} is below 1 in {odds}"
            )
        needed = _odds(monitor.bound)
        return (
            f"{seen}; so many by luck under {threshold} would be a 1 in {odds} chance "
            f"— not yet the 1 in {needed} that fires"
        )
    if evidence.clear_samples > 0:
        seen = _run(evidence.clear_leaks, evidence.clear_samples)
        odds = _odds(evidence.clear_odds(monitor))
        if evidence.cleared(monitor):
            return (
                f"{seen}; the rate is below {threshold} (chance of so few by luck at "
                f"{threshold} or more: 1 in {odds})"
            )
        return (
            f"{seen}; no evidence of a rate above {threshold} left, and what came since "
            f"points below it (chance of so few at {threshold} or more: 1 in {odds})"
        )
    return f"no evidence either way yet about {threshold}"


def episode_evidence(
    rule: AlertRule,
    groups: int,
    batches: Sequence[tuple[datetime, float, float]],
    state: AlertState | None,
) -> tuple[MonitorState, float | None]:
    """Fold the window's batches (at, leaks, samples) for the episode `state` is in.

    Each episode restarts the sequential tests: an alert that is inactive since a
    resolve counts only the batches after it (the old breach run is spent), and a
    firing one tests what came after it fired against the rate its breach run showed
    (`core.sequential.fired_level`), returned as the second value for `Observation`.
    Before that, the whole window counts. Batches are oldest first.
    """
    config = rule.monitor(groups)
    since = state.since if state is not None else None
    status = state.status if state is not None else AlertStatus.INACTIVE
    if since is None or status is AlertStatus.PENDING:
        return monitor_over(config, ((x, n) for _, x, n in batches)), None
    before = [(x, n) for at, x, n in batches if at <= since]
    after = [(x, n) for at, x, n in batches if at > since]
    if status is AlertStatus.INACTIVE:
        return monitor_over(config, after), None
    level = fired_level(config, monitor_over(config, before), rule.confidence)
    return monitor_over(rule.monitor(groups, level), after), level


def _run(leaks: float, samples: float) -> str:
    rate = leaks / samples if samples else 0.0
    return f"{format_percent(rate)} of {samples:,.0f} lookups leaked ({leaks:,.0f})"


def _odds(log_ratio: float) -> str:
    """exp(log_ratio) as a round "1 in N" figure, never rounded up past the bound."""
    # Past a million the figure means nothing more; "below 1 in 1,000,000" stays true.
    value = math.exp(min(log_ratio, math.log(1e6)))
    if value < 10:
        return f"{math.floor(value * 10) / 10:g}"
    digits = 10 ** max(0, math.floor(math.log10(value)) - 1)
    return f"{math.floor(value / digits) * digits:,}"


def evaluate_health(
    kind: HealthKind,
    condition: bool,
    state: AlertState | None,
    now: datetime,
    *,
    for_: timedelta = timedelta(0),
    repeat_interval: timedelta = DEFAULT_REPEAT_INTERVAL,
) -> Decision:
    """Step one health alert: `condition` true is a breach, false a clear (no band)."""
    return _step(
        state or AlertState(),
        breach=condition,
        clear=not condition,
        measured=None,
        for_=for_,
        repeat_interval=repeat_interval,
        now=now,
        described=f"{kind.value} {'true' if condition else 'false'}",
    )


# How a notification reads in a reason ("…; announcing it in Slack").
_NOTIFICATION_WORDS = {
    NotificationKind.FIRE: "announcing it",
    NotificationKind.UPDATE: "posting an update: it got worse",
    NotificationKind.REPEAT: "reminding: still firing",
    NotificationKind.RESOLVE: "announcing it resolved",
}


def decide_notification(
    state: AlertState, candidate: NotificationKind | None, now: datetime
) -> tuple[NotificationKind | None, str]:
    """Decide whether `candidate` goes out for `state` at `now`, and say why.

    The dedup stage: silence suppresses everything, acknowledgement suppresses
    updates and repeats, and a resolve for an episode never announced is dropped.
    """
    if candidate is None:
        return None, "nothing to notify"
    said = _NOTIFICATION_WORDS[candidate]
    if state.is_silenced(now):
        until = format_instant(state.silenced_until) if state.silenced_until else "later"
        return None, f"silenced until {until}, so not {said}"
    if candidate is NotificationKind.RESOLVE and not state.announced:
        return None, "never announced, so no resolve notice"
    if state.acked and candidate in (NotificationKind.UPDATE, NotificationKind.REPEAT):
        return None, f"acknowledged, so not {said}"
    return candidate, said


def inhibit(decision: Decision, before: AlertState, by: str) -> Decision:
    """Hold back a group's fire, update or repeat while the all-traffic alert `by` fires.

    Alertmanager's inhibition: a leak everywhere breaches every event type and every
    customer too, and one message says it; forty more would bury it. The group's state
    still moves, unannounced, like a silenced one: if it is still firing when the
    all-traffic alert resolves, its `fire` goes out then (a leak of its own is news),
    and a resolve of an episode never announced is never sent.
    """
    kind = decision.notification
    if kind is None or kind is NotificationKind.RESOLVE:
        return decision
    state = decision.new_state
    if kind is NotificationKind.FIRE and before.status is not AlertStatus.FIRING:
        held = replace(state, announced=False, last_notified_at=None, notified_interval=None)
    else:
        held = replace(
            state,
            announced=before.announced,
            last_notified_at=before.last_notified_at,
            notified_interval=before.notified_interval,
        )
    said = _NOTIFICATION_WORDS[kind]
    return replace(
        decision,
        new_state=held,
        notification=None,
        reason=f"{decision.reason}; but {by!r} fires for all traffic, so not {said}",
    )


def silence(state: AlertState, until: datetime) -> AlertState:
    """Suppress this alert's notifications until `until`; transitions carry on."""
    return replace(state, silenced_until=until)


def unsilence(state: AlertState) -> AlertState:
    return replace(state, silenced_until=None)


def acknowledge(state: AlertState) -> AlertState:
    """Stop updates and repeats for the current firing episode (a no-op otherwise)."""
    if state.status is not AlertStatus.FIRING:
        return state
    return replace(state, acked=True)


def _step(
    state: AlertState,
    *,
    breach: bool,
    clear: bool,
    measured: Interval | None,
    for_: timedelta,
    repeat_interval: timedelta,
    now: datetime,
    described: str,
) -> Decision:
    if state.status is AlertStatus.INACTIVE:
        if breach:
            if for_ <= timedelta(0):
                return _fire(state, measured, now, f"{described}: confident breach")
            pending = replace(state, status=AlertStatus.PENDING, since=now)
            return Decision(pending, None, f"{described}: confident breach, pending for {for_}")
        reconciled = _reconcile_only(state, now)
        if reconciled is not None:
            return reconciled
        band = "" if clear else " (in the hysteresis band)"
        return Decision(state, None, f"{described}: no confident breach{band}")

    if state.status is AlertStatus.PENDING:
        if clear:
            inactive = replace(state, status=AlertStatus.INACTIVE, since=now)
            return Decision(inactive, None, f"{described}: cleared before firing")
        pending_for = now - (state.since or now)
        if breach and pending_for >= for_:
            return _fire(state, measured, now, f"{described}: breach held for {pending_for}")
        hold = "breaching" if breach else "in the hysteresis band"
        return Decision(state, None, f"{described}: {hold}, pending for {pending_for} of {for_}")

    if clear:
        resolved = replace(state, status=AlertStatus.INACTIVE, since=now, acked=False)
        return _notify(resolved, NotificationKind.RESOLVE, measured, now, f"{described}: cleared")
    candidate: NotificationKind | None
    if not state.announced:
        candidate, why = NotificationKind.FIRE, "firing, not yet announced"
    elif (
        measured is not None
        and state.notified_interval is not None
        and measured.lo > state.notified_interval.hi
    ):
        candidate, why = NotificationKind.UPDATE, "rate rose above the last notified interval"
    elif state.last_notified_at is None or now - state.last_notified_at >= repeat_interval:
        candidate, why = NotificationKind.REPEAT, f"still firing after {repeat_interval}"
    else:
        candidate, why = None, "still firing"
    return _notify(state, candidate, measured, now, f"{described}: {why}")


def _fire(state: AlertState, measured: Interval | None, now: datetime, why: str) -> Decision:
    firing = replace(
        state,
        status=AlertStatus.FIRING,
        since=now,
        episode=state.episode + 1,
        announced=False,
        acked=False,
        notified_interval=None,
    )
    return _notify(firing, NotificationKind.FIRE, measured, now, why)


def _reconcile_only(state: AlertState, now: datetime) -> Decision | None:
    """Send what a silence held back, whatever the samples say now."""
    if state.status is AlertStatus.INACTIVE and state.announced:
        return _notify(state, NotificationKind.RESOLVE, None, now, "resolved while silenced")
    if state.status is AlertStatus.FIRING and not state.announced:
        return _notify(
            state, NotificationKind.FIRE, state.last_interval, now, "fired while silenced"
        )
    return None


def _notify(
    state: AlertState,
    candidate: NotificationKind | None,
    measured: Interval | None,
    now: datetime,
    why: str,
) -> Decision:
    notification, dedup_reason = decide_notification(state, candidate, now)
    if candidate is None:
        return Decision(state, None, why)
    if notification is None:
        # `announced` and `last_notified_at` stay as they were, so a suppressed fire or
        # resolve is reconciled once the silence ends, and a repeat is not postponed.
        return Decision(state, None, f"{why}; {dedup_reason}")
    if notification is NotificationKind.RESOLVE:
        sent = replace(state, announced=False, last_notified_at=now, notified_interval=None)
    else:
        sent = replace(state, announced=True, last_notified_at=now, notified_interval=measured)
    return Decision(sent, notification, f"{why}; {dedup_reason}")
