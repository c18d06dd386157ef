"""Intervals, weighted rates and cost estimates against reference/statistics-notes.md."""

import random

import pytest
from scipy import stats as scipy_stats

from leakwatch.core.events import Outcome
from leakwatch.core.stats import (
    Interval,
    OutcomeTally,
    StratumTally,
    kish_effective_n,
    rate_estimate,
    samples_to_detect,
    weighted_rate_estimate,
    wilson_interval,
    z_for,
)


@pytest.mark.parametrize(
    ("successes", "n", "lo_pct", "hi_pct"),
    [(0, 1000, 0.00, 0.38), (1, 1000, 0.02, 0.56), (5, 1000, 0.21, 1.17)],
)
def test_wilson_matches_reference_figures(
    successes: int, n: int, lo_pct: float, hi_pct: float
) -> None:
    interval = wilson_interval(successes, n)
    assert round(interval.lo * 100, 2) == lo_pct
    assert round(interval.hi * 100, 2) == hi_pct


@pytest.mark.parametrize(
    ("successes", "n", "confidence"), [(3, 40, 0.95), (17, 250, 0.99), (1, 7, 0.9)]
)
def test_wilson_matches_scipy(successes: int, n: int, confidence: float) -> None:
    expected = scipy_stats.binomtest(successes, n).proportion_ci(confidence, method="wilson")
    interval = wilson_interval(successes, n, confidence)
    assert interval.lo == pytest.approx(expected.low, abs=1e-12)
    assert interval.hi == pytest.approx(expected.high, abs=1e-12)


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) == Interval(0.0, 1.0)
    assert wilson_interval(0, 5).lo == 0.0
    assert wilson_interval(5, 5).hi == 1.0
    assert z_for(0.95) == pytest.approx(1.959964, abs=1e-6)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 10, confidence=1.0)


def test_wilson_covers_small_rates_by_simulation() -> None:
    """At p = 0.5%, n = 1,000 the 95% Wilson interval covers the truth 92–97% of the time."""
    rng = random.Random(20261120)
    p, n, trials = 0.005, 1000, 1500
    covered = 0
    for _ in range(trials):
        leaks = sum(rng.random() < p for _ in range(n))
        covered += p in wilson_interval(leaks, n)
    assert 0.92 <= covered / trials <= 0.97


def test_rate_estimate() -> None:
    estimate = rate_estimate(5, 1000)
    assert estimate.rate == 0.005
    assert estimate.effective_n == 1000
    assert estimate.interval == wilson_interval(5, 1000)
    assert rate_estimate(0, 0).interval == Interval(0.0, 1.0)


def test_equal_weights_reduce_to_the_simple_estimate() -> None:
    strata = [StratumTally(3, 400, 2.5), StratumTally(2, 600, 2.5)]
    weighted = weighted_rate_estimate(strata)
    simple = rate_estimate(5, 1000)
    assert weighted.rate == pytest.approx(simple.rate)
    assert weighted.effective_n == pytest.approx(1000)
    assert weighted.interval.lo == pytest.approx(simple.interval.lo)
    assert weighted.interval.hi == pytest.approx(simple.interval.hi)


def test_weighted_rate_is_horvitz_thompson() -> None:
    """A rare stratum sampled heavily must count for its share of traffic, not its samples."""
    # 99,000 events sampled at 1% (weight 100), 1,000 events sampled at 50% (weight 2).
    big = StratumTally(leaks=0, decided=990, weight=100.0)
    rare = StratumTally(leaks=500, decided=500, weight=2.0)
    estimate = weighted_rate_estimate([big, rare])
    assert estimate.rate == pytest.approx(1000 / (99_000 + 1000))
    assert estimate.count == 500
    assert estimate.decided == 1490
    assert estimate.effective_n == pytest.approx(kish_effective_n([100.0] * 990 + [2.0] * 500))
    assert estimate.effective_n < 1490
    assert estimate.rate in estimate.interval


def test_weighted_rate_unbiased_by_simulation() -> None:
    rng = random.Random(7)
    population = [(0.001, 90_000), (0.20, 1_000)]  # (leak rate, size) per stratum
    sample_sizes = [300, 300]
    true_rate = sum(p * size for p, size in population) / sum(s for _, s in population)
    estimates = []
    for _ in range(400):
        strata = []
        for (p, size), n in zip(population, sample_sizes, strict=True):
            leaks = sum(rng.random() < p for _ in range(n))
            strata.append(StratumTally(leaks, n, size / n))
        estimates.append(weighted_rate_estimate(strata).rate)
    assert sum(estimates) / len(estimates) == pytest.approx(true_rate, rel=0.1)


def test_weighted_rate_without_samples() -> None:
    estimate = weighted_rate_estimate([StratumTally(0, 0, 10.0)])
    assert estimate.interval == Interval(0.0, 1.0)
    assert estimate.effective_n == 0.0


def test_per_outcome_rates_share_the_leak_rate_denominator_under_stratified_weights() -> None:
    # A rare stratum (weight 1) full of unmatched customers, a big one (weight 50) with
    # a few missing: unweighted shares would overstate the rare stratum's outcome.
    tally = OutcomeTally()
    tally.add(Outcome.MATCHED, 95, 95 * 50.0, 95 * 2500.0)
    tally.add(Outcome.MISSING, 5, 5 * 50.0, 5 * 2500.0)
    tally.add(Outcome.UNMATCHED_CUSTOMER, 40, 40.0, 40.0)
    tally.add(Outcome.MATCHED, 60, 60.0, 60.0)
    tally.add(Outcome.PENDING, 7, 7.0, 7.0)
    rates = tally.outcome_rates()
    assert set(rates) == {Outcome.MISSING, Outcome.UNMATCHED_CUSTOMER}
    assert sum(r.rate for r in rates.values()) == pytest.approx(tally.leak_rate().rate)
    assert rates[Outcome.UNMATCHED_CUSTOMER].rate == pytest.approx(40 / (5000 + 100))
    assert tally.leak_rate().rate == pytest.approx((250 + 40) / 5100)
    assert tally.decided == 200 and tally.leaks == 45 and tally.total == 207


def test_equal_weights_give_the_plain_wilson_interval() -> None:
    tally = OutcomeTally()
    tally.add(Outcome.MATCHED, 995, 995.0, 995.0)
    tally.add(Outcome.MISSING, 5, 5.0, 5.0)
    estimate = tally.leak_rate()
    plain = wilson_interval(5, 1000)
    assert estimate.rate == pytest.approx(0.005)
    assert (estimate.interval.lo, estimate.interval.hi) == pytest.approx((plain.lo, plain.hi))


@pytest.mark.parametrize(
    ("p", "confidence", "n"),
    [(0.01, 0.95, 299), (0.005, 0.95, 598), (0.001, 0.95, 2995), (1, 0.95, 1)],
)
def test_samples_to_detect_is_the_rule_of_three(p: float, confidence: float, n: int) -> None:
    assert samples_to_detect(p, confidence) == n


def test_samples_to_detect_rejects_zero_rate() -> None:
    with pytest.raises(ValueError, match="p must be"):
        samples_to_detect(0.0)
