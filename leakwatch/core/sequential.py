"""Sequential tests on a stream of sampled outcomes: Wald's SPRT and Bernoulli CUSUM. Pure.

Both answer "is the leak rate p1 rather than p0?" with fewer samples than a fixed-n
test for the same error rates (reference/statistics-notes.md). Each is a frozen state
plus an `update(config, state, leaked) -> (state, decision)` step, so the caller
persists the state wherever it likes and a benchmark can replay a stream.

- SPRT decides once: `LEAK` when the log-likelihood ratio reaches ln((1−β)/α),
  `CLEAN` when it falls to ln(β/(1−α)). A decided state stays decided; start a new
  `SprtState()` to test again.
- CUSUM never stops: B ← max(0, B + x − γ), alarm while B ≥ h, with γ the SPRT slope
  (the leak count per sample at which the evidence is neutral). After an alarm the
  caller resets with `CusumState()` once it has acted.
"""

import math
from dataclasses import dataclass
from enum import StrEnum


class SequentialDecision(StrEnum):
    """What a sequential test says after a sample."""

    CONTINUE = "continue"
    LEAK = "leak"
    CLEAN = "clean"


@dataclass(frozen=True, slots=True)
class SprtConfig:
    """H0: rate = p0 against H1: rate = p1 (> p0), with error rates alpha and beta."""

    p0: float
    p1: float
    alpha: float = 0.05
    beta: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.p0 < self.p1 < 1.0:
            raise ValueError(f"need 0 < p0 < p1 < 1, got p0={self.p0}, p1={self.p1}")
        if not (0.0 < self.alpha < 1.0 and 0.0 < self.beta < 1.0):
            raise ValueError("alpha and beta must be in (0, 1)")

    @property
    def leak_step(self) -> float:
        """Log-likelihood ratio added by a leaking sample: ln(p1 / p0)."""
        return math.log(self.p1 / self.p0)

    @property
    def clean_step(self) -> float:
        """Log-likelihood ratio added by a clean sample: ln((1 − p1) / (1 − p0)) < 0."""
        return math.log1p(-self.p1) - math.log1p(-self.p0)

    @property
    def upper_bound(self) -> float:
        return math.log((1.0 - self.beta) / self.alpha)

    @property
    def lower_bound(self) -> float:
        return math.log(self.beta / (1.0 - self.alpha))

    @property
    def slope(self) -> float:
        """Leaks per sample at which the evidence is neutral: between p0 and p1."""
        return -self.clean_step / (self.leak_step - self.clean_step)


@dataclass(frozen=True, slots=True)
class SprtState:
    samples: int = 0
    leaks: int = 0
    log_likelihood_ratio: float = 0.0
    decision: SequentialDecision = SequentialDecision.CONTINUE


def sprt_update(
    config: SprtConfig, state: SprtState, leaked: bool
) -> tuple[SprtState, SequentialDecision]:
    """Add one sampled outcome; return the new state and the decision (sticky once made)."""
    if state.decision is not SequentialDecision.CONTINUE:
        return state, state.decision
    llr = state.log_likelihood_ratio + (config.leak_step if leaked else config.clean_step)
    if llr >= config.upper_bound:
        decision = SequentialDecision.LEAK
    elif llr <= config.lower_bound:
        decision = SequentialDecision.CLEAN
    else:
        decision = SequentialDecision.CONTINUE
    new_state = SprtState(
        samples=state.samples + 1,
        leaks=state.leaks + int(leaked),
        log_likelihood_ratio=llr,
        decision=decision,
    )
    return new_state, decision


@dataclass(frozen=True, slots=True)
class CusumConfig:
    """Bernoulli CUSUM tuned to detect a shift from p0 to p1, alarming at `threshold` (h)."""

    p0: float
    p1: float
    threshold: float = 2.5

    def __post_init__(self) -> None:
        if not 0.0 < self.p0 < self.p1 < 1.0:
            raise ValueError(f"need 0 < p0 < p1 < 1, got p0={self.p0}, p1={self.p1}")
        if self.threshold <= 0:
            raise ValueError("threshold must be positive")

    @property
    def slope(self) -> float:
        """γ: the reference value subtracted per sample (the SPRT slope)."""
        return SprtConfig(self.p0, self.p1).slope


@dataclass(frozen=True, slots=True)
class CusumState:
    statistic: float = 0.0
    samples: int = 0
    alarm: bool = False


def cusum_update(
    config: CusumConfig, state: CusumState, leaked: bool
) -> tuple[CusumState, SequentialDecision]:
    """Add one sampled outcome; LEAK while the statistic is at or above the threshold."""
    statistic = max(0.0, state.statistic + float(leaked) - config.slope)
    alarm = statistic >= config.threshold
    new_state = CusumState(statistic=statistic, samples=state.samples + 1, alarm=alarm)
    return new_state, SequentialDecision.LEAK if alarm else SequentialDecision.CONTINUE
