"""Alert decisions as tables of steps: what each observation does to state and Slack.

With 1,000 decided samples and a 1% threshold: 30 leaks is a confident breach
([2.1%, 4.2%]), 2 is a confident clear ([0.05%, 0.72%]), 10 sits in the band.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from leakwatch.core.alerting import (
    AlertRule,
    AlertState,
    AlertStatus,
    Decision,
    GroupBy,
    HealthKind,
    NotificationKind,
    Observation,
    RateKind,
    acknowledge,
    decide_notification,
    episode_evidence,
    evaluate,
    evaluate_health,
    inhibit,
    silence,
    unsilence,
)
from leakwatch.core.events import Outcome
from leakwatch.core.sequential import monitor_over
from leakwatch.core.stats import wilson_interval

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
RULE = AlertRule(
    name="leak rate",
    rate=RateKind.LEAK_RATE,
    threshold=0.01,
    window=timedelta(hours=24),
    min_samples=100,
)
BREACH, BAND, CLEAR = 30, 10, 2
FIRE, UPDATE, REPEAT, RESOLVE = (
    NotificationKind.FIRE,
    NotificationKind.UPDATE,
    NotificationKind.REPEAT,
    NotificationKind.RESOLVE,
)
INACTIVE, PENDING, FIRING = AlertStatus.INACTIVE, AlertStatus.PENDING, AlertStatus.FIRING

Action = Callable[[AlertState], AlertState]


@dataclass(frozen=True)
class Step:
    minute: int
    leaks: int
    status: AlertStatus
    notification: NotificationKind | None = None
    decided: int = 1000
    before: Action | None = None  # an operator action applied to the stored state first


def silence_for(minutes: int) -> Action:
    return lambda state: silence(state, T0 + timedelta(minutes=minutes))


def run(rule: AlertRule, steps: list[Step]) -> list[Decision]:
    state: AlertState | None = None
    decisions = []
    for step in steps:
        if step.before is not None:
            state = step.before(state or AlertState())
        now = T0 + timedelta(minutes=step.minute)
        decision = evaluate(rule, state, Observation(step.leaks, step.decided), now)
        decisions.append(decision)
        state = decision.new_state
    return decisions


FOR_30M = replace(RULE, for_=timedelta(minutes=30))

SCENARIOS: dict[str, tuple[AlertRule, list[Step]]] = {
    "fire on confident breach": (RULE, [Step(0, BREACH, FIRING, FIRE)]),
    "band does not fire": (RULE, [Step(0, BAND, INACTIVE), Step(15, BAND, INACTIVE)]),
    "hysteresis band holds firing, clear resolves": (
        RULE,
        [
            Step(0, BREACH, FIRING, FIRE),
            Step(15, BAND, FIRING),
            Step(30, BAND, FIRING),
            Step(45, CLEAR, INACTIVE, RESOLVE),
            Step(60, BAND, INACTIVE),
        ],
    ),
    "min_samples: no decision on few samples": (
        RULE,
        [Step(0, 30, INACTIVE, decided=99), Step(15, 30, FIRING, FIRE, decided=100)],
    ),
    "min_samples: firing holds when samples dry up": (
        RULE,
        [Step(0, BREACH, FIRING, FIRE), Step(15, 0, FIRING, decided=10)],
    ),
    "for_: pending until the breach held long enough": (
        FOR_30M,
        [
            Step(0, BREACH, PENDING),
            Step(15, BREACH, PENDING),
            Step(30, BREACH, FIRING, FIRE),
        ],
    ),
    "for_: band holds pending but does not fire": (
        FOR_30M,
        [Step(0, BREACH, PENDING), Step(45, BAND, PENDING), Step(60, BREACH, FIRING, FIRE)],
    ),
    "for_: clear before firing is silent": (
        FOR_30M,
        [Step(0, BREACH, PENDING), Step(15, CLEAR, INACTIVE), Step(30, BREACH, PENDING)],
    ),
    "repeat every repeat_interval while firing": (
        RULE,
        [
            Step(0, BREACH, FIRING, FIRE),
            Step(60, BREACH, FIRING),
            Step(239, BREACH, FIRING),
            Step(240, BREACH, FIRING, REPEAT),
            Step(300, BAND, FIRING),
            Step(480, BAND, FIRING, REPEAT),
        ],
    ),
    "update when the rate got materially worse": (
        RULE,
        [
            Step(0, BREACH, FIRING, FIRE),
            Step(15, 35, FIRING),  # overlaps [2.1%, 4.2%]
            Step(30, 100, FIRING, UPDATE),  # [8.3%, 12.0%]
            Step(45, 105, FIRING),
            Step(60, BREACH, FIRING),  # better is no news until the repeat or resolve
            Step(75, 100, FIRING),  # and back up to what was notified is no news either
        ],
    ),
    "oscillating between two levels updates once": (
        RULE,
        [
            Step(0, BREACH, FIRING, FIRE),
            Step(15, 100, FIRING, UPDATE),
            Step(30, BREACH, FIRING),
            Step(45, 100, FIRING),
            Step(60, BREACH, FIRING),
            Step(75, 100, FIRING),
        ],
    ),
    "silence suppresses resolve, sent when silence ends": (
        RULE,
        [
            Step(0, BREACH, FIRING, FIRE),
            Step(15, BREACH, FIRING, before=silence_for(120)),
            Step(60, CLEAR, INACTIVE),
            Step(119, CLEAR, INACTIVE),
            Step(120, CLEAR, INACTIVE, RESOLVE),
            Step(135, CLEAR, INACTIVE),
        ],
    ),
    "silence suppresses fire, sent late if still firing": (
        RULE,
        [
            Step(0, BREACH, FIRING, before=silence_for(60)),
            Step(30, BREACH, FIRING),
            Step(60, BAND, FIRING, FIRE),  # told with the band's numbers
            Step(75, BREACH, FIRING, UPDATE),  # so a confident 3% is news
        ],
    ),
    "silence ends before reconcile even with few samples": (
        RULE,
        [
            Step(0, BREACH, FIRING, before=silence_for(60)),
            Step(60, 0, FIRING, FIRE, decided=5),
        ],
    ),
    "episode fired and cleared inside a silence is never told": (
        RULE,
        [
            Step(0, BREACH, FIRING, before=silence_for(60)),
            Step(30, CLEAR, INACTIVE),
            Step(90, CLEAR, INACTIVE),
        ],
    ),
    "unsilence lets the repeat through": (
        RULE,
        [
            Step(0, BREACH, FIRING, FIRE),
            Step(240, BREACH, FIRING, before=silence_for(600)),
            Step(300, BREACH, FIRING, REPEAT, before=unsilence),
        ],
    ),
    "ack stops repeats and updates, not the resolve": (
        RULE,
        [
            Step(0, BREACH, FIRING, FIRE),
            Step(15, BREACH, FIRING, before=acknowledge),
            Step(240, 100, FIRING),
            Step(480, 100, FIRING),
            Step(495, CLEAR, INACTIVE, RESOLVE),
            Step(510, BREACH, FIRING, FIRE),  # a new episode is not acknowledged
            Step(750, BREACH, FIRING, REPEAT),
        ],
    ),
    "ack of an inactive alert does nothing": (
        RULE,
        [Step(0, CLEAR, INACTIVE, before=acknowledge), Step(15, BREACH, FIRING, FIRE)],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    rule, steps = SCENARIOS[name]
    decisions = run(rule, steps)
    observed = [(d.new_state.status, d.notification) for d in decisions]
    expected = [(s.status, s.notification) for s in steps]
    assert observed == expected, [d.reason for d in decisions]


def test_episodes_are_counted_and_state_survives_a_restart() -> None:
    decisions = run(
        RULE,
        [
            Step(0, BREACH, FIRING, FIRE),
            Step(15, CLEAR, INACTIVE, RESOLVE),
            Step(30, BREACH, FIRING, FIRE),
        ],
    )
    stored = decisions[-1].new_state
    assert stored.episode == 2
    assert stored.since == T0 + timedelta(minutes=30)
    # A restart reloads the stored state: the same observation does not fire again.
    again = evaluate(RULE, stored, Observation(BREACH, 1000), T0 + timedelta(minutes=31))
    assert again.notification is None
    assert again.new_state.status is FIRING


def test_not_enough_samples_says_so() -> None:
    decision = evaluate(RULE, None, Observation(50, 99), T0)
    assert decision.notification is None
    assert "not enough samples" in decision.reason
    assert decision.new_state.last_rate == pytest.approx(50 / 99)


def test_fire_reason_and_estimate() -> None:
    decision = evaluate(RULE, None, Observation(BREACH, 1000), T0)
    assert decision.estimate is not None
    assert decision.estimate.interval == wilson_interval(BREACH, 1000)
    assert decision.new_state.notified_interval == decision.estimate.interval
    assert "leak_rate 3.0%" in decision.reason
    assert "threshold 1.0%" in decision.reason


def test_flapping_rate_gives_no_flapping_notifications() -> None:
    """A rate wandering around the threshold: a point-estimate rule would flap, ours not."""
    leaks_per_cycle = [BREACH, 12, 8, 14, 7, 11, 6, 13, 9, 15, 8, 12, 7, 10, 14, 9, 6, 13]
    steps = [Step(15 * i, leaks, FIRING) for i, leaks in enumerate(leaks_per_cycle)]
    decisions = run(replace(RULE, repeat_interval=timedelta(days=1)), steps)
    notifications = [d.notification for d in decisions if d.notification is not None]
    assert notifications == [FIRE]
    naive_flips = sum(
        (a / 1000 > RULE.threshold) != (b / 1000 > RULE.threshold)
        for a, b in pairwise(leaks_per_cycle)
    )
    assert naive_flips >= 10


def test_band_only_series_never_notifies() -> None:
    steps = [Step(15 * i, leaks, INACTIVE) for i, leaks in enumerate([12, 8, 14, 6, 13, 9])]
    assert all(d.notification is None for d in run(RULE, steps))


@pytest.mark.parametrize(
    ("state", "candidate", "expected", "reason"),
    [
        (AlertState(), None, None, "nothing"),
        (AlertState(silenced_until=T0 + timedelta(hours=1)), FIRE, None, "silenced"),
        (AlertState(silenced_until=T0), FIRE, FIRE, "announcing it"),
        (AlertState(announced=False), RESOLVE, None, "never announced"),
        (AlertState(announced=True, acked=True), RESOLVE, RESOLVE, "announcing it resolved"),
        (AlertState(announced=True, acked=True), REPEAT, None, "acknowledged"),
        (AlertState(announced=True, acked=True), UPDATE, None, "acknowledged"),
        (AlertState(announced=True), UPDATE, UPDATE, "posting an update"),
    ],
)
def test_decide_notification(
    state: AlertState,
    candidate: NotificationKind | None,
    expected: NotificationKind | None,
    reason: str,
) -> None:
    notification, why = decide_notification(state, candidate, T0)
    assert notification == expected
    assert reason in why


@pytest.mark.parametrize(
    ("conditions", "for_min", "expected"),
    [
        ([True, True, False], 0, [FIRE, None, RESOLVE]),
        ([False, False], 0, [None, None]),
        ([True, True, True], 30, [None, None, FIRE]),  # minutes 0, 15, 30
        ([True, False, True], 30, [None, None, None]),
    ],
)
def test_health(conditions: list[bool], for_min: int, expected: list[NotificationKind]) -> None:
    state = None
    notifications = []
    for i, condition in enumerate(conditions):
        decision = evaluate_health(
            HealthKind.TOKEN_REJECTED,
            condition,
            state,
            T0 + timedelta(minutes=15 * i),
            for_=timedelta(minutes=for_min),
        )
        notifications.append(decision.notification)
        state = decision.new_state
    assert notifications == expected


def test_health_repeats() -> None:
    first = evaluate_health(HealthKind.SOURCE_STALE, True, None, T0)
    later = evaluate_health(
        HealthKind.SOURCE_STALE,
        True,
        first.new_state,
        T0 + timedelta(hours=1),
        repeat_interval=timedelta(hours=1),
    )
    assert (first.notification, later.notification) == (FIRE, REPEAT)
    assert "source_stale" in later.reason


@pytest.mark.parametrize(
    ("rate", "leaks"),
    [
        (RateKind.LEAK_RATE, 1 + 2 + 3 + 4 + 5),
        (RateKind.MISSING_RATE, 1),
        (RateKind.UNMATCHED_CUSTOMER_RATE, 2),
        (RateKind.UNMATCHED_METRIC_RATE, 3),
        (RateKind.DUPLICATE_RATE, 4),
        (RateKind.MISMATCH_RATE, 5),
    ],
)
def test_observation_from_counts(rate: RateKind, leaks: int) -> None:
    counts = {
        Outcome.MATCHED: 100,
        Outcome.MISSING: 1,
        Outcome.UNMATCHED_CUSTOMER: 2,
        Outcome.UNMATCHED_METRIC: 3,
        Outcome.DUPLICATE: 4,
        Outcome.MISMATCH: 5,
        Outcome.PENDING: 50,
        Outcome.EXPIRED: 60,
        Outcome.ERROR: 70,
    }
    assert Observation.from_counts(rate, counts) == Observation(leaks=leaks, decided=115)


def test_rule_validation() -> None:
    with pytest.raises(ValueError, match="threshold"):
        replace(RULE, threshold=1.5)


def test_a_split_groups_alert_resolves_when_no_samples_are_left() -> None:
    rule = AlertRule(
        name="by type",
        rate=RateKind.LEAK_RATE,
        threshold=0.01,
        window=timedelta(hours=24),
        min_samples=50,
        by=GroupBy.EVENT_TYPE,
    )
    start = datetime(2026, 11, 20, tzinfo=UTC)
    fired = evaluate(rule, None, Observation(leaks=20, decided=100), start)
    assert fired.notification is NotificationKind.FIRE
    few = evaluate(rule, fired.new_state, Observation(leaks=2, decided=10), start)
    assert few.new_state.status is AlertStatus.FIRING  # too few samples: it holds
    gone = evaluate(rule, few.new_state, Observation(leaks=0, decided=0), start)
    assert gone.new_state.status is AlertStatus.INACTIVE
    assert gone.notification is NotificationKind.RESOLVE
    fleet = replace(rule, by=None)
    held = evaluate(fleet, fired.new_state, Observation(leaks=0, decided=0), start)
    assert held.new_state.status is AlertStatus.FIRING  # the whole fleet never "goes"


# --- the sequential decision ---------------------------------------------------------


def test_sequential_evidence_fires_and_says_why_in_plain_words() -> None:
    from leakwatch.core.sequential import monitor_over

    evidence = monitor_over(RULE.monitor(), [(13, 412)])
    decision = evaluate(RULE, None, Observation(13, 412, evidence=evidence), T0)
    assert decision.new_state.status is AlertStatus.FIRING
    assert "3.2% of 412 lookups leaked (13)" in decision.reason
    assert "chance of seeing so many by luck under 1.0% is below 1 in" in decision.reason


def test_sequential_evidence_needs_no_minimum_but_holds_in_the_band() -> None:
    from leakwatch.core.sequential import monitor_over

    few = monitor_over(RULE.monitor(), [(1, 40)])
    decision = evaluate(RULE, None, Observation(1, 40, evidence=few), T0)
    assert decision.new_state.status is AlertStatus.INACTIVE
    assert "not yet" in decision.reason
    firing = evaluate(
        RULE, None, Observation(13, 412, evidence=monitor_over(RULE.monitor(), [(13, 412)])), T0
    ).new_state
    band = monitor_over(RULE.monitor(), [(13, 412), (5, 500)])
    held = evaluate(RULE, firing, Observation(5, 500, evidence=band), T0 + timedelta(minutes=15))
    assert held.new_state.status is AlertStatus.FIRING  # at 1%: neither way yet
    cleared = monitor_over(RULE.monitor(), [(0, 600)])
    resolved = evaluate(
        RULE, firing, Observation(0, 600, evidence=cleared), T0 + timedelta(minutes=30)
    )
    assert resolved.notification is NotificationKind.RESOLVE


def test_a_split_rule_shares_its_false_alarm_level_over_its_groups() -> None:
    assert RULE.monitor(groups=40).bound > RULE.monitor().bound


# --- episodes: each restarts the tests; a firing one clears against its own level -----


def _batches(*counts: tuple[int, int]) -> list[tuple[datetime, float, float]]:
    """One batch per 2-minute cycle from T0, oldest first."""
    return [(T0 + timedelta(minutes=2 * i), x, n) for i, (x, n) in enumerate(counts)]


def test_a_firing_episode_clears_against_the_rate_it_fired_at() -> None:
    # A customer whose every event leaks: 8 of 8 fired it (Bonferroni over 41).
    customer = replace(RULE, by=GroupBy.CUSTOMER_ID)
    fired = _batches((4, 4), (4, 4))
    evidence, _ = episode_evidence(customer, 41, fired, None)
    firing = evaluate(customer, None, Observation(8, 8, evidence=evidence, groups=41), fired[-1][0])
    assert firing.new_state.status is AlertStatus.FIRING
    # Fixed: ten clean samples of it show the leak that fired is gone, where a test of
    # "under a third of the threshold" would want hundreds.
    later = fired[-1][0]
    after = [*fired, (later + timedelta(minutes=2), 0, 5), (later + timedelta(minutes=4), 0, 5)]
    evidence, level = episode_evidence(customer, 41, after, firing.new_state)
    assert level is not None and level > 0.3
    assert evidence.clear_samples == 10
    decision = evaluate(
        customer,
        firing.new_state,
        Observation(8, 18, evidence=evidence, groups=41, resolve_from=level),
        later + timedelta(minutes=4),
    )
    assert decision.notification is NotificationKind.RESOLVE
    assert "since it fired: 0% of 10 lookups leaked (0)" in decision.reason
    assert "the leak that fired is gone" in decision.reason
    plain = monitor_over(customer.monitor(41), [(0, 10)])
    assert not plain.cleared(customer.monitor(41))


def test_after_a_resolve_the_old_breach_run_is_spent() -> None:
    batches = _batches((13, 412), (0, 600))
    resolved = AlertState(status=AlertStatus.INACTIVE, since=batches[-1][0], episode=1)
    evidence, level = episode_evidence(RULE, 1, batches, resolved)
    assert level is None
    assert evidence.breach == 0.0  # the 13 leaks before the resolve count no more
    fresh, _ = episode_evidence(RULE, 1, batches[:1], None)
    assert fresh.breached(RULE.monitor())


def test_a_partial_fix_resolves_the_episode_and_fires_a_new_one() -> None:
    start = _batches((30, 30))  # 100%: fires
    evidence, _ = episode_evidence(RULE, 1, start, None)
    firing = evaluate(RULE, None, Observation(30, 30, evidence=evidence), start[0][0]).new_state
    at = start[0][0]
    # Down to 5%: far from the 100% it fired at, so this episode resolves ...
    partial = [*start, *((at + timedelta(minutes=2 * i), 5, 100) for i in range(1, 4))]
    evidence, level = episode_evidence(RULE, 1, partial, firing)
    resolved = evaluate(
        RULE, firing, Observation(15, 300, evidence=evidence, resolve_from=level), partial[-1][0]
    )
    assert resolved.notification is NotificationKind.RESOLVE
    # ... and 5% is still above 1%: the restarted breach test fires the next one.
    more = [*partial, *((partial[-1][0] + timedelta(minutes=2 * i), 5, 100) for i in (1, 2))]
    evidence, level = episode_evidence(RULE, 1, more, resolved.new_state)
    again = evaluate(RULE, resolved.new_state, Observation(10, 200, evidence=evidence), more[-1][0])
    assert level is None
    assert again.notification is NotificationKind.FIRE
    assert again.new_state.episode == 2


def test_a_group_alert_is_held_back_while_the_all_traffic_alert_fires() -> None:
    customer = replace(RULE, name="leak rate by customer", by=GroupBy.CUSTOMER_ID)
    evidence = monitor_over(customer.monitor(41), [(13, 13)])
    fired = evaluate(customer, None, Observation(13, 13, evidence=evidence, groups=41), T0)
    assert fired.notification is NotificationKind.FIRE
    held = inhibit(fired, AlertState(), "leak rate")
    assert held.notification is None
    assert held.new_state.status is AlertStatus.FIRING
    assert not held.new_state.announced
    assert "'leak rate' fires for all traffic, so not announcing it" in held.reason
    # Still firing once the all-traffic alert is over: now it is news of its own.
    later = evaluate(
        customer,
        held.new_state,
        Observation(13, 13, evidence=evidence, groups=41),
        T0 + timedelta(minutes=2),
    )
    assert later.notification is NotificationKind.FIRE
    # Cleared while held back: never announced, so nothing to resolve.
    gone = evaluate(
        customer,
        held.new_state,
        Observation(0, 900, evidence=monitor_over(customer.monitor(41), [(0, 900)]), groups=41),
        T0 + timedelta(minutes=2),
    )
    assert gone.new_state.status is AlertStatus.INACTIVE
    assert gone.notification is None
