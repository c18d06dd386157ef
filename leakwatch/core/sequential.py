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
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from leakwatch.core.stats import wilson_interval

# The highest rate a test alternative may take: a clean sample must still be evidence.
_MAX_LEVEL = 0.999


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


# --- Monitoring a rate against an alert threshold -----------------------------------
#
# An alert needs two always-valid answers from the same stream of sampled outcomes,
# batch by batch (one batch per check cycle): "the rate is above the threshold" and
# "the rate is below it". Each is a one-sided CUSUM of log-likelihood ratios — Page's
# CUSUM, i.e. Wald's SPRT restarted whenever its evidence falls back to zero:
#
#   breach ← max(0, breach + LLR(threshold·ratio vs threshold))   fire  at ≥ ln(1/α)
#   clear  ← max(0, clear  + LLR(threshold/ratio vs threshold))   clear at ≥ ln(1/α)
#
# By Ville's inequality the likelihood ratio of a true rate at (or below) the threshold
# exceeds 1/α with probability at most α however often it is looked at, so a cycle is
# not a new chance of a false alarm the way a re-tested fixed-n bound is. `exp(−LLR)` of
# the run in hand is that bound for it: "the chance of so many leaks by luck".
#
# Each episode restarts the tests (the caller folds only what came after the last
# status change). While an alert fires, its clear test asks whether the leak *that
# fired* is gone — the rate back at the threshold rather than at the level the breach
# run showed (`fired_level`) — so a 100% leak resolves after a handful of clean
# samples, as fast as it fired, instead of after the hundreds it takes to show a rate
# under a third of the threshold. A partial fix that leaves the rate above the
# threshold resolves the episode and the restarted breach test fires a new one.


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Watch a rate against `threshold`: alternatives at threshold × / ÷ `ratio`, level α."""

    threshold: float
    alpha: float = 0.025
    ratio: float = 3.0
    # While an alert fires: the rate the breach showed, which the clear test tests.
    resolve_from: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.ratio <= 1.0 or self.threshold * self.ratio >= 1.0:
            raise ValueError(f"ratio must be > 1 with threshold × ratio < 1, got {self.ratio}")
        if self.resolve_from is not None and not self.threshold < self.resolve_from < 1.0:
            raise ValueError(f"resolve_from must be in (threshold, 1), got {self.resolve_from}")

    @property
    def bound(self) -> float:
        """Evidence (log-likelihood ratio) needed to decide either way: ln(1/α)."""
        return -math.log(self.alpha)

    @property
    def breach_steps(self) -> tuple[float, float]:
        """LLR added by a leaking and by a clean sample, for a rate above the threshold."""
        return _llr_steps(self.threshold, min(self.threshold * self.ratio, 0.999))

    @property
    def clear_steps(self) -> tuple[float, float]:
        """LLR added by a leaking and by a clean sample, for a rate below the threshold.

        While an alert fires (`resolve_from`): for the threshold against the rate it
        fired at, i.e. evidence that the leak which fired is gone.
        """
        if self.resolve_from is not None:
            return _llr_steps(self.resolve_from, self.threshold)
        return _llr_steps(self.threshold, self.threshold / self.ratio)


@dataclass(frozen=True, slots=True)
class MonitorState:
    """Both CUSUMs, with the samples and leaks gathered since each last restarted.

    The counts say in plain words what the evidence is ("31 of 412 leaked"): they are
    the run of samples the statistic has been adding up since it last fell to zero.
    """

    breach: float = 0.0
    breach_leaks: float = 0
    breach_samples: float = 0
    clear: float = 0.0
    clear_leaks: float = 0
    clear_samples: float = 0

    def breached(self, config: MonitorConfig) -> bool:
        return self.breach >= config.bound

    def cleared(self, config: MonitorConfig) -> bool:
        return self.clear >= config.bound

    def settled(self, config: MonitorConfig) -> bool:
        """Clear enough to resolve an alert: evidence the rate is under the threshold,
        or the evidence that fired is gone and what came since points under it.

        The second is as quick as the firing was; a small group would take days to
        gather the first. With `resolve_from` (an episode restarted at its firing) the
        clear test itself is against the fired level, and only it resolves.
        """
        if config.resolve_from is not None:
            return self.cleared(config)
        return self.cleared(config) or (self.breach <= 0.0 and self.clear > 0.0)

    def breach_odds(self, config: MonitorConfig) -> float:
        """Log-likelihood ratio of the breach run's own counts (not capped at the bound).

        exp(−this) bounds the chance of seeing that run (or a more extreme one, at any
        point of it) were the rate at the threshold: Ville's inequality again.
        """
        up_leak, up_clean = config.breach_steps
        return self.breach_leaks * up_leak + (self.breach_samples - self.breach_leaks) * up_clean

    def clear_odds(self, config: MonitorConfig) -> float:
        """Log-likelihood ratio of the clear run's own counts (not capped at the bound)."""
        down_leak, down_clean = config.clear_steps
        return self.clear_leaks * down_leak + (self.clear_samples - self.clear_leaks) * down_clean


def monitor_update(
    config: MonitorConfig, state: MonitorState, leaks: float, samples: float
) -> MonitorState:
    """Add one batch (`leaks` of `samples` decided outcomes) to both CUSUMs.

    Counts may be fractional: a weighted batch enters as its Kish-effective counts
    (rate × n_eff of n_eff, `core.stats.rate_from_weight_sums`).
    """
    if samples <= 0:
        return state
    if not 0 <= leaks <= samples:
        raise ValueError(f"need 0 ≤ leaks ≤ samples, got {leaks} of {samples}")
    up_leak, up_clean = config.breach_steps
    down_leak, down_clean = config.clear_steps
    breach = state.breach + leaks * up_leak + (samples - leaks) * up_clean
    clear = state.clear + leaks * down_leak + (samples - leaks) * down_clean
    # Each statistic stops at its bound, as an SPRT stops when it decides: evidence
    # piled up over a quiet week must not outweigh the first leaky cycle after it.
    breach = min(breach, config.bound)
    clear = min(clear, config.bound)
    breach_state = _run_after(
        breach, leaks, samples, state.breach, state.breach_leaks, state.breach_samples
    )
    clear_state = _run_after(
        clear, leaks, samples, state.clear, state.clear_leaks, state.clear_samples
    )
    return MonitorState(*breach_state, *clear_state)


def fired_level(config: MonitorConfig, state: MonitorState, confidence: float) -> float:
    """The rate a breach run showed: the clear test of the episode it fires tests it.

    The Wilson lower bound of the run's leaks at `confidence`, never under the breach
    alternative (threshold × ratio) and kept below 1 so a clean sample is evidence.
    """
    floor = min(config.threshold * config.ratio, _MAX_LEVEL)
    if state.breach_samples <= 0:
        return floor
    lower = wilson_interval(state.breach_leaks, state.breach_samples, confidence).lo
    return min(max(floor, lower), _MAX_LEVEL)


def monitor_over(
    config: MonitorConfig,
    batches: Iterable[tuple[float, float]],
    state: MonitorState | None = None,
) -> MonitorState:
    """Fold batches of (leaks, samples), oldest first, into the monitor."""
    state = state or MonitorState()
    for leaks, samples in batches:
        state = monitor_update(config, state, leaks, samples)
    return state


def _run_after(
    statistic: float,
    leaks: float,
    samples: float,
    before: float,
    run_leaks: float,
    run_samples: float,
) -> tuple[float, float, float]:
    """Clip a CUSUM at zero and count the run it has gathered since it last left zero."""
    if statistic <= 0.0:
        return 0.0, 0, 0
    if before <= 0.0:
        return statistic, leaks, samples
    return statistic, run_leaks + leaks, run_samples + samples


def _llr_steps(p0: float, p1: float) -> tuple[float, float]:
    return math.log(p1 / p0), math.log1p(-p1) - math.log1p(-p0)
