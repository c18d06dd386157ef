"""SPRT and Bernoulli CUSUM against the figures in reference/statistics-notes.md."""

import random

import pytest

from leakwatch.core.sequential import (
    CusumConfig,
    CusumState,
    SequentialDecision,
    SprtConfig,
    SprtState,
    cusum_update,
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
