"""Rates with honest intervals, weighted estimates and what they cost. Pure: no I/O.

Samples are the scarce resource, so every rate leakwatch shows carries a Wilson
interval (never the normal/Wald one, which at small rates covers the truth far less
often than it claims and gives [0, 0] for 0/1000; see reference/statistics-notes.md).

Weighted (stratified) samples use the Horvitz–Thompson ratio estimator for the rate
and the Kish effective sample size n_eff = (Σw)² / Σw² for its interval: unequal
weights make a sample worth fewer independent draws than it holds, and n_eff is that
number. Wilson on (p̂, n_eff) keeps Wilson's behaviour at small rates (bounded in
[0, 1], a non-zero upper bound at zero leaks) with a width that reflects the weights.
Kish's design effect ignores the variance that stratification *removes*, so the
interval is, if anything, conservative — the right side to err on for an alarm.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True, slots=True)
class Interval:
    """A closed interval [lo, hi] on a rate (fractions, not percentages)."""

    lo: float
    hi: float

    def overlaps(self, other: "Interval") -> bool:
        return self.lo <= other.hi and other.lo <= self.hi

    def __contains__(self, value: float) -> bool:
        return self.lo <= value <= self.hi


@dataclass(frozen=True, slots=True)
class RateEstimate:
    """A rate estimated from a sample: `count` of `decided`, with its interval.

    For weighted samples `count` and `decided` are the raw sample counts while `rate`
    is the weighted estimate and `effective_n` the Kish effective sample size; for a
    simple random sample `effective_n == decided`.
    """

    count: float
    decided: float
    rate: float
    interval: Interval
    effective_n: float


@dataclass(frozen=True, slots=True)
class StratumTally:
    """One stratum's sampled outcomes and the weight (1 / inclusion probability) of each."""

    leaks: float
    decided: float
    weight: float


@dataclass(frozen=True, slots=True)
class Estimate:
    """A quantity with its interval, e.g. leaked events or revenue at risk."""

    point: float
    lo: float
    hi: float


def z_for(confidence: float) -> float:
    """Return the two-sided standard normal quantile for `confidence` (1.96 at 95%)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> Interval:
    """Return the Wilson score interval for `successes` out of `n`; (0, 1) when n == 0.

    `successes` and `n` may be fractional (an effective sample size).
    """
    if n <= 0:
        return Interval(0.0, 1.0)
    z = z_for(confidence)
    p_hat = min(max(successes / n, 0.0), 1.0)
    z2_n = z * z / n
    denominator = 1.0 + z2_n
    centre = (p_hat + z2_n / 2.0) / denominator
    half_width = z * math.sqrt(p_hat * (1.0 - p_hat) / n + z2_n / (4.0 * n)) / denominator
    # At p̂ = 0 or 1 the bound is exactly 0 or 1; rounding must not push it past.
    lo = 0.0 if p_hat == 0.0 else max(0.0, centre - half_width)
    hi = 1.0 if p_hat == 1.0 else min(1.0, centre + half_width)
    return Interval(lo, hi)


def rate_estimate(count: float, decided: float, confidence: float = 0.95) -> RateEstimate:
    """Estimate a rate from a simple random sample: `count` of `decided` outcomes."""
    rate = count / decided if decided > 0 else 0.0
    return RateEstimate(
        count=count,
        decided=decided,
        rate=rate,
        interval=wilson_interval(count, decided, confidence),
        effective_n=decided,
    )


def weighted_rate_estimate(
    strata: Iterable[StratumTally], confidence: float = 0.95
) -> RateEstimate:
    """Estimate a rate from a stratified sample (Horvitz–Thompson, Kish n_eff; see module)."""
    count = decided = weighted_leaks = weighted_decided = weight_squares = 0.0
    for stratum in strata:
        if stratum.decided <= 0 or stratum.weight <= 0:
            continue
        count += stratum.leaks
        decided += stratum.decided
        weighted_leaks += stratum.weight * stratum.leaks
        weighted_decided += stratum.weight * stratum.decided
        weight_squares += stratum.weight * stratum.weight * stratum.decided
    return rate_from_weight_sums(
        count, decided, weighted_leaks, weighted_decided, weight_squares, confidence
    )


def kish_effective_n(weights: Iterable[float]) -> float:
    """Return (Σw)² / Σw²: how many unweighted draws a weighted sample is worth."""
    total = squares = 0.0
    for weight in weights:
        total += weight
        squares += weight * weight
    return total * total / squares if squares > 0 else 0.0


def estimate_leaked(estimate: RateEstimate, volume: int) -> Estimate:
    """Scale a leak rate to the source's event `volume` for the same period."""
    return Estimate(
        point=estimate.rate * volume,
        lo=estimate.interval.lo * volume,
        hi=estimate.interval.hi * volume,
    )


def revenue_at_risk(
    leaked: Estimate, price_per_unit: float, mean_units_per_event: float = 1.0
) -> Estimate:
    """Price leaked events: per event, or per unit with the caller's mean units per event.

    The mean quantity (e.g. tokens per request) is the caller's to supply, measured
    over the same events, so this stays a pure multiplication.
    """
    per_event = price_per_unit * mean_units_per_event
    return Estimate(leaked.point * per_event, leaked.lo * per_event, leaked.hi * per_event)


def samples_to_detect(p: float, confidence: float = 0.95) -> int:
    """Return n such that a rate-`p` leak shows at least once with `confidence` (rule of 3).

    n = ⌈ln(1 − c) / ln(1 − p)⌉ ≈ 3/p at 95%: 299 for 1%, 2,995 for 0.1%.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must be in (0, 1], got {p}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if p == 1.0:
        return 1
    return math.ceil(math.log1p(-confidence) / math.log1p(-p))


def rate_from_weight_sums(
    count: float,
    decided: float,
    weighted_count: float,
    weighted_decided: float,
    weighted_decided_squares: float,
    confidence: float = 0.95,
) -> RateEstimate:
    """The Horvitz–Thompson rate from sums the database computed (Σw, Σw² per outcome).

    The same estimate as `weighted_rate_estimate`, for when the store has already
    aggregated: rate = Σw·leak / Σw, Wilson on the Kish effective size (Σw)² / Σw².
    Uniform weights give the plain Wilson interval on the raw counts.
    """
    if weighted_decided <= 0 or weighted_decided_squares <= 0:
        return RateEstimate(count, decided, 0.0, Interval(0.0, 1.0), 0.0)
    rate = min(1.0, weighted_count / weighted_decided)
    effective_n = weighted_decided * weighted_decided / weighted_decided_squares
    return RateEstimate(
        count=count,
        decided=decided,
        rate=rate,
        interval=wilson_interval(rate * effective_n, effective_n, confidence),
        effective_n=effective_n,
    )
