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

`OutcomeTally` is the one way any view turns sampled outcomes into rates: the leak
rate and every per-outcome rate share one denominator (the weight of decided samples),
so the per-outcome rates add up to the leak rate under any sampling design.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import NormalDist

from leakwatch.core.events import DECIDED_OUTCOMES, LEAKING_OUTCOMES, Outcome


@dataclass(frozen=True, slots=True)
class Interval:
    """A closed interval [lo, hi] on a rate (fractions, not percentages)."""

    lo: float
    hi: float

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


@dataclass
class OutcomeTally:
    """Sampled outcomes of one group, as the store aggregates them: per outcome the
    sample count, Σw, Σw² and Σw·quantity (w = 1 / inclusion probability).

    Every rate a user reads — `status`, alerts, the report, `/metrics` — comes from
    `rate`, so the same samples give the same number everywhere.
    """

    counts: dict[Outcome, int] = field(default_factory=dict)
    weights: dict[Outcome, float] = field(default_factory=dict)
    weights_squared: dict[Outcome, float] = field(default_factory=dict)
    # Σ weight·quantity over samples that carry a quantity (per-unit prices).
    weighted_quantity: dict[Outcome, float] = field(default_factory=dict)

    def add(
        self,
        outcome: Outcome,
        count: int,
        weight_sum: float,
        weight_sq_sum: float,
        weighted_quantity_sum: float = 0.0,
    ) -> None:
        """Add one aggregated row (an outcome's sums) to the tally."""
        self.counts[outcome] = self.counts.get(outcome, 0) + count
        self.weights[outcome] = self.weights.get(outcome, 0.0) + weight_sum
        self.weights_squared[outcome] = self.weights_squared.get(outcome, 0.0) + weight_sq_sum
        self.weighted_quantity[outcome] = (
            self.weighted_quantity.get(outcome, 0.0) + weighted_quantity_sum
        )

    def merge(self, other: "OutcomeTally") -> None:
        """Add every outcome of `other` (pooling two groups' samples)."""
        for outcome, count in other.counts.items():
            self.add(
                outcome,
                count,
                other.weights.get(outcome, 0.0),
                other.weights_squared.get(outcome, 0.0),
                other.weighted_quantity.get(outcome, 0.0),
            )

    def count(self, outcomes: Iterable[Outcome]) -> int:
        return sum(self.counts.get(o, 0) for o in outcomes)

    def weight(self, outcomes: Iterable[Outcome]) -> float:
        return sum(self.weights.get(o, 0.0) for o in outcomes)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def decided(self) -> int:
        return self.count(DECIDED_OUTCOMES)

    @property
    def leaks(self) -> int:
        return self.count(LEAKING_OUTCOMES)

    def rate(self, outcomes: Iterable[Outcome], confidence: float = 0.95) -> RateEstimate:
        """The weighted share of decided samples whose outcome is one of `outcomes`.

        Horvitz–Thompson ratio with Wilson on the Kish effective size (see module);
        equal weights give the plain proportion and the textbook Wilson interval. With
        nothing decided the rate is 0 with the uninformative interval [0, 1].
        """
        chosen = frozenset(outcomes) & DECIDED_OUTCOMES
        return rate_from_weight_sums(
            self.count(chosen),
            self.decided,
            self.weight(chosen),
            self.weight(DECIDED_OUTCOMES),
            sum(self.weights_squared.get(o, 0.0) for o in DECIDED_OUTCOMES),
            confidence,
        )

    def leak_rate(self, confidence: float = 0.95) -> RateEstimate:
        return self.rate(LEAKING_OUTCOMES, confidence)

    def outcome_rates(self, confidence: float = 0.95) -> dict[Outcome, RateEstimate]:
        """Each leaking outcome seen, as its own weighted rate (they add up to the leak rate)."""
        return {
            o: self.rate([o], confidence)
            for o in sorted(LEAKING_OUTCOMES, key=list(Outcome).index)
            if self.counts.get(o)
        }

    def quantity_share(self, outcomes: Iterable[Outcome]) -> float | None:
        """The weighted share of sampled *quantity* among decided samples with `outcomes`.

        None when no decided sample carries a quantity.
        """
        decided = sum(self.weighted_quantity.get(o, 0.0) for o in DECIDED_OUTCOMES)
        if decided <= 0:
            return None
        chosen = frozenset(outcomes) & DECIDED_OUTCOMES
        return sum(self.weighted_quantity.get(o, 0.0) for o in chosen) / decided
