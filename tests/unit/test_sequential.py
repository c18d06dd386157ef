"""SPRT and Bernoulli CUSUM against the figures in reference/statistics-notes.md."""

import random
from dataclasses import replace

import pytest

from leakwatch.core.sequential import (
    CusumConfig,
    CusumState,
    MonitorConfig,
    MonitorState,
    SequentialDecision,
    SprtConfig,
    SprtState,
    cusum_update,
    fired_level,
    monitor_over,
    sprt_update,
)

LOW_VS_HIGH = SprtConfig(p0=0.001, p1=0.01)


def run_sprt(config: SprtConfig, p: float, rng: random.Random) -> SprtState:
    state = SprtState()
    decision = SequentialDecision.CONTINUE
    while decision is SequentialDecision.CONTINUE:
        state, decision = sprt_update(config, state, rng.random() < p)
    return state


def test_sprt_bounds() -> None:
    assert LOW_VS_HIGH.upper_bound == pytest.approx(2.944439)
    assert LOW_VS_HIGH.lower_bound == pytest.approx(-2.944439)


def test_sprt_accepts_clean_after_a_clean_run() -> None:
    """The notes say ~325; the ratio crosses ln(β/(1−α)) at the 326th clean sample."""
    state = SprtState()
    for _ in range(325):
        state, decision = sprt_update(LOW_VS_HIGH, state, leaked=False)
    assert decision is SequentialDecision.CONTINUE
    state, decision = sprt_update(LOW_VS_HIGH, state, leaked=False)
    assert decision is SequentialDecision.CLEAN
    assert state.samples == 326


def test_sprt_decision_is_sticky() -> None:
    state = SprtState(decision=SequentialDecision.LEAK, samples=10)
    again, decision = sprt_update(LOW_VS_HIGH, state, leaked=False)
    assert again == state
    assert decision is SequentialDecision.LEAK


def test_sprt_flags_a_one_percent_leak_in_about_250_samples() -> None:
    rng = random.Random(11)
    runs = [run_sprt(LOW_VS_HIGH, 0.01, rng) for _ in range(600)]
    mean_samples = sum(r.samples for r in runs) / len(runs)
    power = sum(r.decision is SequentialDecision.LEAK for r in runs) / len(runs)
    assert 200 <= mean_samples <= 300
    assert power >= 0.92  # β = 5%, with sampling noise


def test_sprt_rarely_flags_a_clean_stream() -> None:
    rng = random.Random(12)
    runs = [run_sprt(LOW_VS_HIGH, 0.001, rng) for _ in range(600)]
    false_alarms = sum(r.decision is SequentialDecision.LEAK for r in runs) / len(runs)
    assert false_alarms <= 0.07  # α = 5%, with sampling noise


def test_sprt_rejects_bad_configs() -> None:
    with pytest.raises(ValueError, match="p0 < p1"):
        SprtConfig(p0=0.02, p1=0.01)


def test_cusum_slope_is_the_sprt_slope() -> None:
    config = CusumConfig(p0=0.001, p1=0.01, threshold=2.5)
    assert config.slope == pytest.approx(0.003915, abs=1e-6)
    assert LOW_VS_HIGH.p0 < config.slope < LOW_VS_HIGH.p1


def test_cusum_resets_at_zero_and_alarms_at_threshold() -> None:
    config = CusumConfig(p0=0.001, p1=0.01, threshold=2.5)
    state = CusumState()
    state, decision = cusum_update(config, state, leaked=False)
    assert state.statistic == 0.0
    for _ in range(2):
        state, decision = cusum_update(config, state, leaked=True)
    assert decision is SequentialDecision.CONTINUE
    state, decision = cusum_update(config, state, leaked=True)
    assert decision is SequentialDecision.LEAK
    assert state.alarm
    assert state.samples == 4


def test_cusum_catches_a_one_percent_leak_in_about_400_samples() -> None:
    config = CusumConfig(p0=0.001, p1=0.01, threshold=2.5)
    rng = random.Random(13)
    delays = []
    for _ in range(400):
        state = CusumState()
        while not state.alarm:
            state, _ = cusum_update(config, state, rng.random() < 0.01)
        delays.append(state.samples)
    assert 330 <= sum(delays) / len(delays) <= 470


# --- the alert monitor: two CUSUMs around a threshold --------------------------------


def test_monitor_breaches_on_a_rate_well_above_the_threshold() -> None:
    config = MonitorConfig(threshold=0.01)
    state = monitor_over(config, [(15, 500)])
    assert state.breached(config)
    assert (state.breach_leaks, state.breach_samples) == (15, 500)
    assert state.breach == config.bound  # a decided statistic stops at its bound
    assert state.breach_odds(config) > config.bound
    assert state.clear == 0.0


def test_monitor_clears_on_a_rate_well_below_and_restarts_its_run_at_zero() -> None:
    config = MonitorConfig(threshold=0.01)
    quiet_week = [(1, 500)] * 600
    state = monitor_over(config, [*quiet_week, (20, 500), (1, 500), (1, 500), (0, 500)])
    assert state.breach == 0.0 and state.breach_samples == 0
    assert state.cleared(config)
    # The quiet week's evidence stopped at the bound, so one leaky batch pushed it to
    # zero: the clear run began after it.
    assert state.clear_samples == 1_500


def test_monitor_holds_its_level_under_many_looks_at_the_threshold() -> None:
    """Ville: at the threshold, crossing ln(1/α) in a run is at most α, however often looked."""
    config = MonitorConfig(threshold=0.01, alpha=0.05)
    rng = random.Random(5)
    runs = crossed = 0
    for _ in range(400):
        state = MonitorState()
        for _ in range(40):
            leaks = sum(rng.random() < 0.01 for _ in range(50))
            state = monitor_over(config, [(leaks, 50)], state)
            if state.breached(config):
                crossed += 1
                break
            if state.breach == 0.0:
                break
        runs += 1
    assert crossed / runs <= 0.05


def test_monitor_rejects_impossible_batches() -> None:
    config = MonitorConfig(threshold=0.01)
    with pytest.raises(ValueError):
        monitor_over(config, [(6, 5)])
    with pytest.raises(ValueError):
        MonitorConfig(threshold=0.5, ratio=3.0)


def test_the_fired_level_is_the_breach_runs_lower_bound_never_under_the_alternative() -> None:
    config = MonitorConfig(threshold=0.01)
    all_leaked = monitor_over(config, [(8, 8)])
    assert 0.6 < fired_level(config, all_leaked, 0.95) < 0.7  # Wilson's lower bound of 8/8
    three_percent = monitor_over(config, [(13, 412)])
    assert fired_level(config, three_percent, 0.95) == pytest.approx(0.03)
    assert fired_level(config, MonitorState(), 0.95) == pytest.approx(0.03)


def test_clearing_against_the_fired_level_takes_as_few_samples_as_firing() -> None:
    """A 100% leak fires on 7 samples (α/41) and, once fixed, clears on about as many."""
    config = MonitorConfig(threshold=0.01, alpha=0.025 / 41)
    fired = monitor_over(config, [(1, 1)] * 7)
    assert fired.breached(config)
    level = fired_level(config, fired, 0.95)
    episode = replace(config, resolve_from=level)
    clean = MonitorState()
    samples = 0
    while not clean.settled(episode):
        clean = monitor_over(episode, [(0, 1)], clean)
        samples += 1
    assert samples <= 12
    # Against a third of the threshold the same clean run is nowhere near.
    slow = monitor_over(config, [(0, 1)] * samples)
    assert not slow.cleared(config)


@pytest.mark.parametrize("level", [0.005, 0.01, 1.0])
def test_the_fired_level_must_lie_between_the_threshold_and_one(level: float) -> None:
    with pytest.raises(ValueError, match="resolve_from"):
        MonitorConfig(threshold=0.01, resolve_from=level)
