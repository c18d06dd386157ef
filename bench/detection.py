"""Detection power: how many lookups (and hours) a leak costs, how often we cry wolf.

A virtual-clock simulation (nothing sleeps) of weeks of check cycles under the default
configuration (`leakwatch/templates/leakwatch.toml`, read with the real config loader):
its cycle period, sample size (the lookup budget), settle delay, sampling window,
stratification and alert rules. Each cycle draws the budget's samples, gives each a
leak/no-leak outcome, and steps every alert with leakwatch's real decision code
(`core.alerting.evaluate`, and for the sequential test `core.sequential.monitor_update`).

What is real and what is modelled (see docs/detection.md for the full account):
- real: the config defaults and rules, the stratum allocation (`core.sampling.allocate`),
  the alert state machine and its statistics (Wilson interval, CUSUM monitor);
- modelled: traffic (a steady stream of events over event types × customers), the
  draw (a multinomial over strata, from the window the sampler would read) and each
  sampled event's verdict (a Bernoulli draw at the scenario's leak rate: what `classify`
  answers for a simulator event that leaked). The store's window sums are computed in
  memory, as `store.queries.outcome_counts` computes them in SQL.

Scenarios: no leak (0.2% against a 1% threshold); step leaks of 0.5/1/3/10% starting at
a random time; a leak on one event type with 2% of the volume; a leak on one customer
with 0.5% of the volume (every event unmatched); a ramp 0→3% over a week. A leak is
fixed 6 h after its alert fires, and resolution is timed from the fix.

Run: `.venv/bin/python bench/detection.py [--quick] [--trials N]`. The full run
rewrites docs/detection.md and docs/detection-delay.png. `--quick` runs a few trials,
writes nothing, and exits 1 if the no-leak scenario raises an alert.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import tomllib
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from scipy import stats as sps

from leakwatch.config import Settings, settings_from_mapping
from leakwatch.core.alerting import (
    AlertRule,
    AlertState,
    AlertStatus,
    GroupBy,
    NotificationKind,
    Observation,
    RateKind,
    evaluate,
    inhibit,
)
from leakwatch.core.sampling import (
    PROBE_LOOKBACK_CYCLES,
    ProbeTarget,
    allocate,
    parse_stratify_by,
    plan_probes,
    probe_reserve,
)
from leakwatch.core.sequential import MonitorConfig, MonitorState, fired_level, monitor_update
from leakwatch.wiring import alert_rule

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "leakwatch" / "templates" / "leakwatch.toml"
DOC = ROOT / "docs" / "detection.md"
CHART = ROOT / "docs" / "detection-delay.png"
EPOCH = datetime(2026, 1, 5, tzinfo=UTC)

BACKGROUND = 0.002  # the leak rate when nothing is wrong
EVENTS_PER_HOUR = 12_000
EVENT_TYPES = {"api_request": 0.60, "llm_tokens": 0.25, "gpu_seconds": 0.13, "storage_gb": 0.02}
SMALL_TYPE = "storage_gb"
CUSTOMERS = 40  # plus one small customer
SMALL_CUSTOMER = "tiny-co"
SMALL_CUSTOMER_SHARE = 0.005
FIX_AFTER_H = 6.0  # a leak is fixed this long after its alert fires
RESOLVE_HORIZON_H = 72.0  # an alert still firing this long after the fix is "unresolved"
BETA = 0.05  # the miss rate the theoretical references are computed for


# --- the world -------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Strata (event type × customer) with their traffic shares."""

    types: tuple[str, ...]
    customers: tuple[str, ...]
    shares: np.ndarray  # (types, customers), sums to 1

    @classmethod
    def default(cls) -> World:
        ranks = np.arange(1, CUSTOMERS + 1, dtype=float)
        zipf = ranks**-1.1
        customer_shares = np.append(zipf / zipf.sum() * (1 - SMALL_CUSTOMER_SHARE), 0.005)
        type_shares = np.array(list(EVENT_TYPES.values()))
        names = (*tuple(f"cust-{i:02d}" for i in range(1, CUSTOMERS + 1)), SMALL_CUSTOMER)
        return cls(tuple(EVENT_TYPES), names, np.outer(type_shares, customer_shares))


@dataclass(frozen=True)
class Scenario:
    """Where a leak is and how its rate moves in event time (hours)."""

    name: str
    rate: float  # the in-scope leak rate once fully on (0: no leak)
    label: str
    scope_type: str | None = None
    scope_customer: str | None = None
    ramp_h: float = 0.0
    same_rate_as: str | None = None  # the all-traffic scenario to compare lookups with

    @property
    def leaks(self) -> bool:
        return self.rate > 0

    def scope(self, world: World) -> np.ndarray:
        mask = np.ones(world.shares.shape, dtype=bool)
        if self.scope_type is not None:
            mask &= np.array([t == self.scope_type for t in world.types])[:, None]
        if self.scope_customer is not None:
            mask &= np.array([c == self.scope_customer for c in world.customers])[None, :]
        return mask

    def excess_integral(self, tau: np.ndarray, start: float, end: float) -> np.ndarray:
        """∫ (rate − background) from −∞ to tau, for a leak on in [start, end)."""
        amplitude = self.rate - BACKGROUND
        u = np.clip(np.minimum(tau, end) - start, 0.0, None)
        if self.ramp_h <= 0:
            return amplitude * u
        r = self.ramp_h
        return amplitude * np.where(u <= r, u * u / (2 * r), r / 2 + (u - r))


SCENARIOS = (
    Scenario("no_leak", 0.0, "no leak (0.2%)"),
    Scenario("step_0.5", 0.005, "step 0.5%"),
    Scenario("step_1", 0.01, "step 1%"),
    Scenario("step_3", 0.03, "step 3%"),
    Scenario("step_10", 0.10, "step 10%"),
    Scenario("step_100", 1.0, "step 100% (reference)"),
    Scenario(
        "one_type",
        0.10,
        "10% on one event type (2% of volume)",
        scope_type=SMALL_TYPE,
        same_rate_as="step_10",
    ),
    Scenario(
        "one_customer",
        1.0,
        "one customer (0.5% of volume), all unmatched",
        scope_customer=SMALL_CUSTOMER,
        same_rate_as="step_100",
    ),
    Scenario("ramp_3", 0.03, "ramp 0→3% over a week", ramp_h=168.0),
)


# --- what the default configuration says ------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """The default config's numbers that decide detection."""

    every_h: float
    sample_size: int
    settle_h: float
    max_age_h: float
    stratify: tuple[str, ...]
    floor: int
    rules: tuple[AlertRule, ...]
    sampler: str  # "window": uniform over the sampling window; "fresh": newly settled events
    decision: str  # "interval" or "sequential"
    probe_share: float = 0.0  # share of each cycle's draw for follow-up probes
    probe_per_group: int = 0
    episodes: bool = True  # restart the tests per episode; clear against the fired level

    @property
    def lookups_per_hour(self) -> float:
        return self.sample_size / self.every_h


def default_setup(decision: str, sampler: str, *, split_rules: bool = True) -> Setup:
    settings: Settings = settings_from_mapping(tomllib.loads(TEMPLATE.read_text()))
    source = settings.sources[0]
    return Setup(
        every_h=settings.checks.every.total_seconds() / 3600,
        sample_size=source.sample_size,
        settle_h=source.settle_delay.total_seconds() / 3600,
        max_age_h=source.max_age.total_seconds() / 3600,
        stratify=parse_stratify_by(source.stratify_by),
        floor=source.stratum_floor,
        rules=tuple(alert_rule(r) for r in settings.alerts if split_rules or r.by is None),
        sampler=sampler,
        decision=decision,
        probe_share=settings.checks.probe_share,
        probe_per_group=settings.checks.probe_per_group,
    )


# --- one trial ---------------------------------------------------------------------------


@dataclass
class TrialResult:
    fired_h: float | None = None  # hours from leak start to the first alert
    lookups: float | None = None  # lookups spent from the leak's first eligible event
    resolved_h: float | None = None  # hours from the fix to the first alert's resolve
    lingering: int = 0  # other alerts still firing 72 h after the fix
    messages: int = 0  # fire messages sent from the leak's start (after inhibition)
    false_alarms: int = 0  # episodes while nothing leaked
    days: float = 0.0


@dataclass
class StreamAlert:
    """One alert instance (rule × group) as the daemon would keep it."""

    rule: AlertRule
    index: int  # which column of the rule's stream counts
    groups: int = 1
    state: AlertState = field(default_factory=AlertState)
    monitor: MonitorState = field(default_factory=MonitorState)
    updated: int = -1  # the cycle the monitor last took in
    resolve_from: float | None = None  # while firing: the rate it fired at

    @property
    def config(self) -> MonitorConfig:
        return self.rule.monitor(self.groups, self.resolve_from)


class Trial:
    def __init__(
        self, setup: Setup, world: World, scenario: Scenario, rng: np.random.Generator
    ) -> None:
        self.setup = setup
        self.world = world
        self.scenario = scenario
        self.rng = rng
        self.mask = scenario.scope(world)
        self.flat_shares = world.shares.ravel()
        self.allocation = self._allocation()

    def _allocation(self) -> np.ndarray | None:
        """Per-stratum draw sizes when the source is stratified (the real allocator)."""
        if not self.setup.stratify:
            return None
        per_cycle = EVENTS_PER_HOUR * (
            self.setup.every_h if self.setup.sampler == "fresh" else self.setup.max_age_h
        )
        keys = [
            self._stratum(t, c)
            for t in range(len(self.world.types))
            for c in range(len(self.world.customers))
        ]
        populations: dict[str, float] = {}
        for key, share in zip(keys, self.flat_shares, strict=True):
            populations[key] = populations.get(key, 0.0) + float(share) * per_cycle
        given = allocate(populations, self.setup.sample_size, self.setup.floor)
        cells = np.zeros(self.flat_shares.shape)
        for i, key in enumerate(keys):
            cells[i] = given[key] * self.flat_shares[i] / populations[key] * per_cycle
        return cells

    def _stratum(self, t: int, c: int) -> str:
        parts = {"event_type": self.world.types[t], "customer_id": self.world.customers[c]}
        return "|".join(parts[f] for f in self.setup.stratify)

    def counts(self, cycles: np.ndarray, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
        """Sampled and leaked counts per cycle and cell, for a leak on in [start, end)."""
        s = self.setup
        now = cycles * s.every_h
        hi = now - s.settle_h
        lo = hi - (s.every_h if s.sampler == "fresh" else s.max_age_h - s.settle_h)
        inside = BACKGROUND + (
            self.scenario.excess_integral(hi, start, end)
            - self.scenario.excess_integral(lo, start, end)
        ) / (hi - lo)
        if self.allocation is None:
            n = self.rng.multinomial(s.sample_size, self.flat_shares, size=len(cycles))
        else:
            n = self.rng.poisson(self.allocation, size=(len(cycles), self.allocation.size))
        inside = np.clip(inside, 0.0, 1.0)
        rates = np.where(self.mask.ravel()[None, :], inside[:, None], BACKGROUND)
        return n, self.rng.binomial(n, rates)

    def run(self, horizon_h: float, start: float) -> TrialResult:
        s = self.setup
        cycles = np.arange(1, int(horizon_h / s.every_h) + 1)
        n, x = self.counts(cycles, start, math.inf)
        self.leak = (start, math.inf)
        self.messages = 0
        self.firing_overall: dict[RateKind, str] = {}
        alerts = self._alerts()
        streams = self._streams(n, x)
        result = TrialResult(days=horizon_h / 24)
        fixed_at = math.inf
        primary = -1  # the alert that fired first
        k = 0
        firing: set[int] = set()
        live: set[int] = set()  # sequential evidence above zero: must be stepped
        marks = self._marks(alerts, streams)
        candidates = [int(i) for i in np.flatnonzero(marks.any(axis=1))] or [10**12]
        if s.decision == "sequential":
            k = self._first_run_to_cross(alerts, streams, len(cycles))
        while k < len(cycles):
            if not firing and not live:
                k = candidates[bisect_left(candidates, k)] if candidates[-1] >= k else len(cycles)
                if k >= len(cycles):
                    break
            now_h = float(cycles[k] * s.every_h)
            if s.probe_share > 0 and (firing or live):
                self._probe(k, now_h, alerts, streams, marks, n, x, firing | live)
            for i in sorted(firing | live | {int(j) for j in np.flatnonzero(marks[k])}):
                alert = alerts[i]
                leaks, decided, window = streams[(alert.rule.name, alert.index)]
                before = alert.state.status
                may_breach = self._may_breach(alert, leaks, decided, window, k)
                if alert.monitor.breach > 0:
                    live.add(i)
                else:
                    live.discard(i)
                if i not in firing and not may_breach:
                    continue
                if i in firing and self.setup.decision == "sequential":
                    if alert.updated != k:
                        alert.monitor = monitor_update(
                            alert.config, alert.monitor, float(leaks[k]), float(decided[k])
                        )
                        alert.updated = k
                    if not alert.monitor.settled(alert.config):
                        continue  # still firing: only a clear changes its status
                self._step(alert, leaks, decided, window, k, now_h)
                after = alert.state.status
                if after is not AlertStatus.INACTIVE:
                    firing.add(i)
                else:
                    firing.discard(i)
                if after is AlertStatus.FIRING and before is not AlertStatus.FIRING:
                    if not self.scenario.leaks or now_h < start:
                        result.false_alarms += 1
                    elif result.fired_h is None:
                        primary = i
                        result.fired_h = now_h - start
                        eligible = start + s.settle_h
                        result.lookups = s.lookups_per_hour * max(0.0, now_h - eligible)
                        fixed_at = now_h + FIX_AFTER_H
                        self.leak = (start, fixed_at)
                        first = k + 1
                        n2, x2 = self.counts(cycles[first:], start, fixed_at)
                        n[first:], x[first:] = n2, x2
                        streams = self._streams(n, x)
                        marks = self._marks(alerts, streams)
                        candidates = [int(i) for i in np.flatnonzero(marks.any(axis=1))] or [10**12]
            if now_h > fixed_at and result.resolved_h is None and primary not in firing:
                result.resolved_h = now_h - fixed_at
            if result.fired_h is not None and not firing and now_h > fixed_at:
                break
            if now_h > fixed_at + RESOLVE_HORIZON_H:
                result.lingering = len(firing - {primary})
                break  # still firing: counted as unresolved
            k += 1
        result.messages = self.messages
        return result

    # -- the decision, through the real core -------------------------------------------

    def _alerts(self) -> list[StreamAlert]:
        alerts = []
        for rule in self.setup.rules:
            width = {
                None: 1,
                GroupBy.EVENT_TYPE: len(self.world.types),
                GroupBy.CUSTOMER_ID: len(self.world.customers),
                GroupBy.SOURCE: 1,
            }[rule.by]
            alerts.extend(StreamAlert(rule, j, width) for j in range(width))
        return alerts

    def _streams(
        self, n: np.ndarray, x: np.ndarray
    ) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray, int]]:
        """Per alert: its per-cycle leaks and decided counts, and its window in cycles.

        A stratified draw weights each cell by share / allocation (Horvitz–Thompson);
        a group's batch then counts for its Kish effective size, as the store's
        weight sums make it count in `pipeline.alert` (equal weights: the raw counts).
        """
        shape = (n.shape[0], *self.world.shares.shape)
        if self.allocation is None:
            w = np.ones(self.world.shares.shape)
        else:
            w = (self.flat_shares / np.maximum(self.allocation, 1e-12)).reshape(
                self.world.shares.shape
            )
            w = w / w.mean()
        n3, x3 = n.reshape(shape), x.reshape(shape)
        wn, wx, wwn = n3 * w, x3 * w, n3 * w * w
        found = {}
        for rule in self.setup.rules:
            window = max(1, round(rule.window.total_seconds() / 3600 / self.setup.every_h))
            if rule.by is GroupBy.EVENT_TYPE:
                sums = [a.sum(axis=2) for a in (wx, wn, wwn)]
            elif rule.by is GroupBy.CUSTOMER_ID:
                sums = [a.sum(axis=1) for a in (wx, wn, wwn)]
            else:
                sums = [a.sum(axis=(1, 2))[:, None] for a in (wx, wn, wwn)]
            sx, sn, sww = sums
            with np.errstate(divide="ignore", invalid="ignore"):
                n_eff = np.where(sww > 0, sn * sn / np.where(sww > 0, sww, 1), 0.0)
                rate = np.where(sn > 0, sx / np.where(sn > 0, sn, 1), 0.0)
            for j in range(sn.shape[1]):
                found[(rule.name, j)] = (rate[:, j] * n_eff[:, j], n_eff[:, j], window)
        return found

    def _first_run_to_cross(
        self,
        alerts: Sequence[StreamAlert],
        streams: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, int]],
        horizon: int,
    ) -> int:
        """The first cycle worth stepping: where the earliest run that reaches a bound began.

        Page's CUSUM is S_k = X_k − min(0, min_{j≤k} X_j) for the cumulative sum X of
        the batch increments, so every stream's whole path is one vectorised line; an
        alert can only fire in a run that reaches its bound, and a run that starts at a
        zero of the statistic starts from an empty `MonitorState` — exactly what the
        stepping loop does. Before the earliest such run nothing can fire.
        """
        start = horizon
        for alert in alerts:
            leaks, decided, _ = streams[(alert.rule.name, alert.index)]
            up_leak, up_clean = alert.config.breach_steps
            x = np.cumsum(leaks * up_leak + (decided - leaks) * up_clean)
            lows = np.minimum.accumulate(np.minimum(x, 0.0))
            crossing = np.flatnonzero(x - lows >= alert.config.bound)
            if crossing.size == 0:
                continue
            first = int(crossing[0])
            zeros = np.flatnonzero(x[:first] - lows[:first] <= 0.0)
            start = min(start, int(zeros[-1]) + 1 if zeros.size else 0)
        return start

    def _marks(
        self,
        alerts: Sequence[StreamAlert],
        streams: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, int]],
    ) -> np.ndarray:
        """Cycles × alerts where an inactive alert could breach; elsewhere nothing changes.

        Interval test: a breach needs the window's rate above the threshold. Sequential
        test: its evidence only grows in a batch whose rate is above the CUSUM's slope,
        and a statistic at zero stays at zero otherwise (live ones are stepped anyway).
        """
        columns = []
        for alert in alerts:
            leaks, decided, window = streams[(alert.rule.name, alert.index)]
            if self.setup.decision == "interval":
                lw, dw = _window_sums(leaks, window), _window_sums(decided, window)
                rule = alert.rule
                columns.append((lw > rule.threshold * dw) & (dw >= rule.min_samples))
            else:
                up_leak, up_clean = alert.config.breach_steps
                columns.append(leaks * up_leak + (decided - leaks) * up_clean > 0)
        return np.stack(columns, axis=1)

    def _may_breach(
        self, alert: StreamAlert, leaks: np.ndarray, decided: np.ndarray, window: int, k: int
    ) -> bool:
        if self.setup.decision == "interval":
            lw = leaks[max(0, k - window + 1) : k + 1].sum()
            dw = decided[max(0, k - window + 1) : k + 1].sum()
            return bool(lw > alert.rule.threshold * dw and dw >= alert.rule.min_samples)
        if alert.monitor.breach <= 0:
            up_leak, up_clean = alert.config.breach_steps
            if leaks[k] * up_leak + (decided[k] - leaks[k]) * up_clean <= 0:
                return False
            if alert.resolve_from is None:
                alert.monitor = MonitorState()  # a new run of evidence (see docs)
        alert.monitor = monitor_update(
            alert.config, alert.monitor, float(leaks[k]), float(decided[k])
        )
        alert.updated = k
        return alert.monitor.breached(alert.config)

    def _step(
        self,
        alert: StreamAlert,
        leaks: np.ndarray,
        decided: np.ndarray,
        window: int,
        k: int,
        now_h: float,
    ) -> None:
        now = EPOCH + timedelta(hours=now_h)
        low = max(0, k - window + 1)
        observation = Observation(
            leaks=float(leaks[low : k + 1].sum()), decided=float(decided[low : k + 1].sum())
        )
        if self.setup.decision == "sequential":
            if alert.updated != k:
                alert.monitor = monitor_update(
                    alert.config, alert.monitor, float(leaks[k]), float(decided[k])
                )
                alert.updated = k
            observation = replace(
                observation,
                evidence=alert.monitor,
                groups=alert.groups,
                resolve_from=alert.resolve_from,
            )
        before = alert.state.status
        decision = evaluate(alert.rule, alert.state, observation, now)
        parent = self.firing_overall.get(alert.rule.rate) if alert.rule.by is not None else None
        if parent is not None:
            decision = inhibit(decision, alert.state, parent)
        if decision.notification is NotificationKind.FIRE and now_h >= self.leak[0]:
            self.messages += 1
        alert.state = decision.new_state
        after = alert.state.status
        if alert.rule.by is None:
            if after is AlertStatus.FIRING:
                self.firing_overall[alert.rule.rate] = alert.rule.name
            else:
                self.firing_overall.pop(alert.rule.rate, None)
        if self.setup.decision == "sequential" and self.setup.episodes and after is not before:
            # A new episode: the daemon folds only the batches after `state.since`
            # (`core.alerting.episode_evidence`); a firing one clears against its level.
            level = None
            if after is AlertStatus.FIRING:
                plain = alert.rule.monitor(alert.groups)
                level = fired_level(plain, alert.monitor, alert.rule.confidence)
            alert.monitor = MonitorState()
            alert.resolve_from = level

    # -- follow-up probes, through the real planner -------------------------------------

    def _probe(
        self,
        k: int,
        now_h: float,
        alerts: Sequence[StreamAlert],
        streams: dict[tuple[str, int], tuple[np.ndarray, np.ndarray, int]],
        marks: np.ndarray,
        n: np.ndarray,
        x: np.ndarray,
        watched: set[int],
    ) -> None:
        """Take this cycle's probes out of its draw and add them to their groups' batches.

        The planner is the real one (`core.sampling.plan_probes`) on the states the
        previous cycle left; a probe is a uniform draw of the group's events settled
        over the last `PROBE_LOOKBACK_CYCLES` cycles, counted only by its group's alerts.
        """
        s = self.setup
        if self.allocation is not None:
            raise ValueError("probes are modelled for unstratified draws only")
        targets = []
        fields = {GroupBy.EVENT_TYPE: self.world.types, GroupBy.CUSTOMER_ID: self.world.customers}
        overall = max(
            (a.monitor.breach / a.config.bound for a in alerts if a.rule.by is None), default=0.0
        )
        for i in sorted(watched):
            alert = alerts[i]
            names = fields.get(alert.rule.by) if alert.rule.by is not None else None
            if names is None or alert.rule.by is None:
                continue
            firing = alert.state.status is not AlertStatus.INACTIVE
            urgency = 1.0 if firing else alert.monitor.breach / alert.config.bound
            if firing or alert.monitor.breach > 0:
                targets.append(
                    ProbeTarget(alert.rule.by.value, names[alert.index], urgency, firing)
                )
        reserve = probe_reserve(s.sample_size, s.probe_share, overall)
        plan = plan_probes(targets, reserve, s.probe_per_group, overall)
        if not plan:
            return
        planned = sum(p.size for p in plan)
        row = n[k]
        keep = self.rng.multivariate_hypergeometric(row, max(0, int(row.sum()) - planned))
        kept = np.zeros_like(x[k])
        some = keep > 0
        kept[some] = self.rng.hypergeometric(x[k][some], (row - x[k])[some], keep[some])
        x[k], n[k] = kept, keep
        lookback_h = s.every_h * PROBE_LOOKBACK_CYCLES
        hi = now_h - s.settle_h
        lo = hi - lookback_h
        start, end = self.leak
        inside = BACKGROUND + (
            self.scenario.excess_integral(np.array([hi]), start, end)[0]
            - self.scenario.excess_integral(np.array([lo]), start, end)[0]
        ) / (hi - lo)
        rates = np.where(self.mask, min(max(inside, 0.0), 1.0), BACKGROUND)
        extra: dict[tuple[GroupBy, int], tuple[float, float]] = {}
        for probe in plan:
            by = GroupBy(probe.field)
            index = fields[by].index(probe.value)
            cells = np.zeros(self.world.shares.shape, dtype=bool)
            if by is GroupBy.EVENT_TYPE:
                cells[index, :] = True
            else:
                cells[:, index] = True
            shares = self.world.shares[cells]
            held = int(EVENTS_PER_HOUR * lookback_h * float(shares.sum()))
            size = min(probe.size, held)
            if size <= 0:
                continue
            drawn = self.rng.multinomial(size, shares / shares.sum())
            leaked = self.rng.binomial(drawn, rates[cells])
            extra[(by, index)] = (float(leaked.sum()), float(drawn.sum()))
        rows = self._streams(n[k : k + 1], x[k : k + 1])
        for i, alert in enumerate(alerts):
            key = (alert.rule.name, alert.index)
            leaks, decided, _ = streams[key]
            add_leaks, add_decided = (
                extra.get((alert.rule.by, alert.index), (0.0, 0.0))
                if alert.rule.by is not None
                else (0.0, 0.0)
            )
            leaks[k] = rows[key][0][0] + add_leaks
            decided[k] = rows[key][1][0] + add_decided
            up_leak, up_clean = alert.config.breach_steps
            marks[k, i] = leaks[k] * up_leak + (decided[k] - leaks[k]) * up_clean > 0


def _window_sums(values: np.ndarray, window: int) -> np.ndarray:
    total = np.concatenate([[0], np.cumsum(values)])
    idx = np.arange(1, len(values) + 1)
    return total[idx] - total[np.maximum(0, idx - window)]


# --- theory ------------------------------------------------------------------------------


def sprt_expected_samples(p0: float, p1: float, p: float, alpha: float, beta: float) -> float:
    """Wald's approximation of the SPRT's expected sample number when the rate is p."""
    a, b = math.log((1 - beta) / alpha), math.log(beta / (1 - alpha))
    up, down = math.log(p1 / p0), math.log1p(-p1) - math.log1p(-p0)
    drift = p * up + (1 - p) * down
    if abs(drift) < 1e-12:
        return -a * b / (p * up * up + (1 - p) * down * down)
    if p >= 1.0:
        return math.ceil(a / up)
    # Operating characteristic: L(p) = (A^h − 1)/(A^h − B^h), h ≠ 0 solving E[e^{hZ}] = 1.
    h = _oc_exponent(p, up, down)
    ea, eb = math.exp(h * a), math.exp(h * b)
    accept = (ea - 1) / (ea - eb)
    return (accept * b + (1 - accept) * a) / drift


def _oc_exponent(p: float, up: float, down: float) -> float:
    def f(h: float) -> float:
        return p * math.exp(h * up) + (1 - p) * math.exp(h * down) - 1

    lo, hi = (-60.0, -1e-9) if p * up + (1 - p) * down > 0 else (1e-9, 60.0)
    for _ in range(200):
        mid = (lo + hi) / 2
        if (f(mid) > 0) == (f(hi) > 0):
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def fixed_sample_size(p0: float, p1: float, alpha: float, beta: float) -> int | None:
    """The smallest n whose exact one-sided binomial test at level α has power 1 − β at p1."""
    if p1 <= p0:
        return None
    for n in range(1, 200_000):
        critical = int(sps.binom.isf(alpha, n, p0)) + 1  # P(X ≥ c | p0) ≤ α
        if sps.binom.sf(critical - 1, n, p1) >= 1 - beta:
            return n
    return None


# --- running and reporting ---------------------------------------------------------------


@dataclass
class Summary:
    scenario: Scenario
    trials: int
    detected: int
    hours: list[float]
    lookups: list[float]
    resolve_hours: list[float]
    unresolved: int
    lingering: int
    false_alarms: int
    days: float
    messages: list[int] = field(default_factory=list)  # fire messages per detected leak

    @property
    def detection(self) -> float:
        return self.detected / self.trials if self.trials else 0.0

    @property
    def false_alarms_per_30d(self) -> float:
        return 30 * self.false_alarms / self.days if self.days else 0.0


def run_scenario(
    setup: Setup, world: World, scenario: Scenario, trials: int, seed: int, days: float
) -> Summary:
    hours, lookups, resolves = [], [], []
    messages: list[int] = []
    detected = unresolved = false_alarms = lingering = 0
    total_days = 0.0
    for trial in range(trials):
        rng = np.random.default_rng([seed, trial, SCENARIOS.index(scenario)])
        if scenario.leaks:
            start = float(rng.uniform(24.0, 24.0 * 8))
            horizon = start + 24.0 * days
        else:
            start, horizon = math.inf, 24.0 * days
        result = Trial(setup, world, scenario, rng).run(horizon, start)
        false_alarms += result.false_alarms
        total_days += result.days if not scenario.leaks else min(start, horizon) / 24
        if result.fired_h is not None and result.lookups is not None:
            detected += 1
            hours.append(result.fired_h)
            lookups.append(result.lookups)
            lingering += result.lingering
            messages.append(result.messages)
            if result.resolved_h is None:
                unresolved += 1
            else:
                resolves.append(result.resolved_h)
    return Summary(
        scenario,
        trials,
        detected,
        hours,
        lookups,
        resolves,
        unresolved,
        lingering,
        false_alarms,
        total_days,
        messages,
    )


def _q(values: Sequence[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if values else None


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


@dataclass(frozen=True)
class Reference:
    esn: float | None
    fixed_n: int | None
    alpha: float


def reference(setup: Setup, scenario: Scenario) -> Reference:
    rule = setup.rules[0]
    alpha = (1 - rule.confidence) / 2
    if not scenario.leaks:
        return Reference(None, None, alpha)
    p0 = rule.threshold
    p1 = min(max(scenario.rate, p0 * 3), 0.999)
    esn = sprt_expected_samples(p0, p1, min(scenario.rate, 0.999999), alpha, BETA)
    return Reference(esn, fixed_sample_size(p0, min(scenario.rate, 0.999), alpha, BETA), alpha)


def table(setup: Setup, summaries: Sequence[Summary]) -> list[str]:
    by_name = {s.scenario.name: s for s in summaries}
    rows = [
        "| scenario | detected | lookups median | lookups p95 | hours median | hours p95 "
        "| resolve h median | resolve h p95 | false alarms / 30 d | SPRT ESN | fixed n "
        "| median ÷ ESN | p95 ÷ ESN | vs all-traffic | fire messages |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        ref = reference(setup, s.scenario)
        med, p95 = _q(s.lookups, 0.5), _q(s.lookups, 0.95)
        ratio = p95_ratio = vs = None
        if ref.esn and med is not None and p95 is not None and s.scenario.scope_type is None:
            share = 1.0 if s.scenario.scope_customer is None else SMALL_CUSTOMER_SHARE
            if share == 1.0:
                ratio, p95_ratio = med / ref.esn, p95 / ref.esn
        other = by_name.get(s.scenario.same_rate_as or "")
        if other is not None and med is not None and other.lookups:
            vs = med / max(1.0, float(np.median(other.lookups)))
        unresolved = f" (+{s.unresolved} unresolved)" if s.unresolved else ""
        if s.lingering:
            unresolved += f" ({s.lingering} other alerts left firing)"
        rows.append(
            f"| {s.scenario.label} | {s.detection:.0%} | {_fmt(med)} | {_fmt(p95)} "
            f"| {_fmt(_q(s.hours, 0.5), 1)} | {_fmt(_q(s.hours, 0.95), 1)} "
            f"| {_fmt(_q(s.resolve_hours, 0.5), 1)} | {_fmt(_q(s.resolve_hours, 0.95), 1)}"
            f"{unresolved} | {s.false_alarms_per_30d:.2f} "
            f"| {_fmt(ref.esn)} | {_fmt(ref.fixed_n)} | {_fmt(ratio, 2)} | {_fmt(p95_ratio, 2)} "
            f"| {_fmt(vs, 1) + '×' if vs is not None else '—'} "
            f"| {_fmt(_q(s.messages, 0.5), 0)} |"
        )
    return rows


def chart(results: dict[str, list[Summary]], path: Path) -> None:
    """Hours from leak start to alert, by leak size, one line per decision (PNG, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    sizes = ["step_0.5", "step_1", "step_3", "step_10"]
    short = {DEFAULT_LABEL: "now (default)", BEFORE_LABEL: "before (previous default)"}
    for (full_label, summaries), colour in zip(
        results.items(), ("#D55E00", "#0072B2", "#009E73"), strict=False
    ):
        label = short.get(full_label, full_label)
        by_name = {s.scenario.name: s for s in summaries}
        xs, med, lo, hi = [], [], [], []
        for name in sizes:
            s = by_name.get(name)
            if s is None or not s.hours:
                continue
            xs.append(s.scenario.rate * 100)
            m = float(np.median(s.hours))
            med.append(m)
            lo.append(m - float(np.quantile(s.hours, 0.05)))
            hi.append(float(np.quantile(s.hours, 0.95)) - m)
        if xs:
            axes.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=4, label=label, color=colour)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks([0.5, 1, 3, 10])
    axes.set_xticklabels(["0.5%", "1%", "3%", "10%"])
    axes.set_xlabel("leak rate (threshold 1%)")
    axes.set_ylabel("hours from leak start to alert (median, 5–95%)")
    axes.set_title("Detection delay by leak size, default configuration")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="png")


DOC_HEAD = """# Detection power

_Generated by `bench/detection.py` ({trials} seeded trials per scenario, {elapsed:.0f} s);
do not edit by hand._

The question: with the default configuration, how many lookups (and hours) does a real
leak cost before an alert fires, how often does an alert fire when nothing is wrong,
and how soon does it resolve once the leak is fixed?

Budget: the default config's {lookups_per_hour:,.0f} lookups per hour ({sample_size}
samples every {every_min:.0f} min). Threshold {threshold:.0%} (rule `{rule}`).

![detection delay by leak size](detection-delay.png)
"""

DOC_HOW = """
## How to read the table

- **lookups**: lookups spent from the moment the leak's first events became eligible
  for sampling (leak start + settle delay) to the cycle whose evaluation fired,
  i.e. the budget × that time. Hours: leak start to that alert.
- **resolve h**: hours from the fix (6 h after the alert) to the resolve notice of the
  alert that fired first; "unresolved" counts trials where it still fired 72 h after
  the fix, "other alerts left firing" the other alerts (other groups) still firing then.
- **false alarms / 30 d**: alert episodes raised while nothing leaked (the no-leak
  scenario; in leak scenarios, before the leak started).
- **SPRT ESN / fixed n**: the theoretical references for the scenario's in-scope rate
  against the threshold, at the decision's one-sided error level α and β = 5%: Wald's
  expected sample number (approximation with the operating characteristic) and the
  smallest n of an exact one-sided binomial test. For leaks at or below the threshold
  no test should alert often; the ESN there is the number of samples an SPRT takes to
  decide either way. For the one-type and one-customer leaks the references count
  samples of that type or customer, not all lookups.
- **median ÷ ESN**: the goal is ≤ 1.3 (median) and ≤ 2.5 (p95) for the 3% leak.
- **vs all-traffic**: median lookups of a one-type or one-customer leak over those of
  an all-traffic leak of the same rate (goal ≤ 3).
- **fire messages**: fire notices sent to Slack per detected leak (median), after
  group alerts are held back while the all-traffic alert fires.

## What is real and what is modelled

Real (imported from leakwatch and run unchanged): the default configuration parsed
from `leakwatch/templates/leakwatch.toml` by the real config loader (cycle period,
sample size, settle delay, sampling window, stratification and floor, probe share and
probes per group, alert rules); the stratum allocation (`core.sampling.allocate`); the
probe reserve and plan (`core.sampling.probe_reserve`, `plan_probes`, on the states the
previous cycle left, as `pipeline.check` plans them at a cycle's start); every alert
step (`core.alerting.evaluate`, with its Wilson interval, hysteresis and state
machine), the inhibition of group messages while the all-traffic alert fires
(`core.alerting.inhibit`) and, for the sequential decision, the CUSUM monitor
(`core.sequential.monitor_update`) with the level a firing episode clears against
(`core.sequential.fired_level`).

Modelled: traffic is a steady {events_per_hour:,} events/h over {types} event types ×
{customers} customers (Zipf shares, plus a customer with 0.5% of the volume); a draw is
a multinomial over those strata from the event-time window the sampler reads (the whole
sampling window for `window`, only the events settled since the previous cycle for
`fresh`); a probe is a multinomial over its group's strata from the events settled over
the last {lookback} cycles, capped by how many the group has there, taken out of the
cycle's draw; each sampled event leaks with the scenario's rate at its event time, as
`classify` would find it (decided on the first lookup: no missing-grace wait); the
store's window sums are computed in memory (what `outcome_counts` computes in SQL).
Alerts are skipped only in cycles where they provably cannot change (an inactive alert
whose window rate is under the threshold; a sequential statistic at zero with a batch
that cannot raise it; a firing alert whose evidence has not settled), so every decision
that matters goes through the real code.

Where the simulation differs from the daemon:
- The daemon recomputes a rule's evidence from the window's cycles at every evaluation
  (`store.queries.outcome_batches`, folded by `core.alerting.episode_evidence` from the
  alert's last status change); the simulation carries it from cycle to cycle with the
  same `monitor_update`, restarting it at each status change as the daemon's fold
  does. They agree while an episode's evidence is younger than the window (24 h); a
  longer run is cut at the window's start by the daemon.
- When a group's statistic leaves zero, the simulation starts its clear statistic from
  zero too (the daemon's would already be at zero after the leaky samples that raised
  the breach, in every scenario here).
- A probe may draw an event the main draw took in the same cycle; the daemon skips it
  (and draws one fewer), the simulation does not.
- Sampled events are not sent through the search client, the simulator and `classify`
  trial by trial (hundreds of thousands of cycles would take hours on two cores); that
  path is covered by the check-cycle tests against the simulator over loopback,
  `tests/integration/test_probes.py` runs probes through the real cycle and store,
  and `tests/integration/test_alerts.py` runs the sequential rule and the inhibition
  through the real store.
- Leaks are decided on the first lookup. A `missing` event waits `missing_grace` (2 h)
  and a second lookup, which adds about that to the hours (not the lookups) of a leak
  made of dropped events.
"""


def goal_figures(setup: Setup, summaries: Sequence[Summary]) -> dict[str, float | None]:
    """The issue's goals, measured on one variant's summaries."""
    by = {s.scenario.name: s for s in summaries}

    def med(name: str, values: str = "lookups") -> float | None:
        s = by.get(name)
        return _q(getattr(s, values), 0.5) if s is not None else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    step3 = by.get("step_3")
    esn = reference(setup, step3.scenario).esn if step3 is not None else None
    no_leak = by.get("no_leak")
    resolve = [
        ratio(_q(s.resolve_hours, 0.5), _q(s.hours, 0.5))
        for s in summaries
        if s.scenario.name in ("step_3", "step_10", "one_type", "one_customer") and s.hours
    ]
    lingering = sum(s.lingering for s in summaries if s.scenario.leaks) / max(
        1, sum(s.detected for s in summaries if s.scenario.leaks)
    )
    return {
        "false alarms per 90 days": None if no_leak is None else 3 * no_leak.false_alarms_per_30d,
        "3% leak: median lookups ÷ SPRT ESN": ratio(med("step_3"), esn),
        "3% leak: p95 lookups ÷ SPRT ESN": ratio(
            _q(step3.lookups, 0.95) if step3 is not None else None, esn
        ),
        "one event type ÷ all traffic at 10%": ratio(med("one_type"), med("step_10")),
        "one customer ÷ all traffic at 100%": ratio(med("one_customer"), med("step_100")),
        "worst median resolve ÷ median fire hours": max(
            (r for r in resolve if r is not None), default=None
        ),
        "other alerts still firing 72 h after the fix, per leak": lingering,
    }


GOALS = {
    "false alarms per 90 days": 1.0,
    "3% leak: median lookups ÷ SPRT ESN": 1.3,
    "3% leak: p95 lookups ÷ SPRT ESN": 2.5,
    "one event type ÷ all traffic at 10%": 3.0,
    "one customer ÷ all traffic at 100%": 3.0,
    "worst median resolve ÷ median fire hours": 1.0,
    "other alerts still firing 72 h after the fix, per leak": 0.0,
}


def goals(setup: Setup, results: dict[str, list[Summary]]) -> list[str]:
    """The goals table: before, now, and whether each is met (strictly below, or zero)."""
    after = goal_figures(setup, results.get(DEFAULT_LABEL, []))
    before = goal_figures(setup, results.get(BEFORE_LABEL, []))
    lines = [
        "\n## Goals\n",
        "| goal | target | before | now | met |",
        "|---|---|---|---|---|",
    ]
    for name, target in GOALS.items():
        now = after.get(name)
        met = now is not None and (now < target if target > 0 else now == 0)
        if name.startswith("worst median resolve"):
            met = now is not None and now <= target
        lines.append(
            f"| {name} | {'≤' if target else '='} {target:g} | {_fmt(before.get(name), 2)} "
            f"| {_fmt(now, 2)} | {'yes' if met else '**no**'} |"
        )
    lines.append(
        "\n“Before” is the previous default (the same CUSUM and rules, 5-minute cycles of "
        "167 fresh draws, no follow-up probes, each test carried across episodes); a dash "
        "means it never alerted, so there is nothing to divide."
    )
    return lines


def write_doc(
    setup: Setup,
    results: dict[str, list[Summary]],
    trials: int,
    elapsed: float,
    notes: Sequence[str],
) -> None:
    rule = setup.rules[0]
    lines = [
        DOC_HEAD.format(
            trials=trials,
            elapsed=elapsed,
            lookups_per_hour=setup.lookups_per_hour,
            sample_size=setup.sample_size,
            every_min=setup.every_h * 60,
            threshold=rule.threshold,
            rule=rule.name,
        )
    ]
    lines.extend(goals(setup, results))
    for label, summaries in results.items():
        per = summaries[0].trials if summaries else 0
        lines.append(f"\n## {label}\n\n_{per} seeded trials per scenario._\n")
        lines.extend(table(setup, summaries))
    lines.append("")
    lines.extend(notes)
    lines.append(
        DOC_HOW.format(
            events_per_hour=EVENTS_PER_HOUR,
            types=len(EVENT_TYPES),
            customers=CUSTOMERS + 1,
            lookback=PROBE_LOOKBACK_CYCLES,
        )
    )
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(lines))


def save(path: Path, results: dict[str, list[Summary]], elapsed: float) -> None:
    """Keep a run's summaries, so runs in parallel can make one doc (`--merge`)."""
    data = {
        "elapsed": elapsed,
        "results": {
            label: [{**asdict(s), "scenario": s.scenario.name} for s in summaries]
            for label, summaries in results.items()
        },
    }
    path.write_text(json.dumps(data))


def merge(paths: Sequence[Path]) -> int:
    """Write the doc and chart from saved runs, in the order of `_variants`."""
    scenarios = {s.name: s for s in SCENARIOS}
    found: dict[str, list[Summary]] = {}
    elapsed = 0.0
    for path in paths:
        data = json.loads(path.read_text())
        elapsed += data["elapsed"]
        for label, items in data["results"].items():
            found[label] = [
                Summary(**{**item, "scenario": scenarios[item["scenario"]]}) for item in items
            ]
    variants = _variants()
    results = {label: found[label] for label in variants if label in found}
    trials = max((s.trials for ss in results.values() for s in ss), default=0)
    write_doc(variants[DEFAULT_LABEL], results, trials, elapsed, NOTES)
    chart(results, CHART)
    print(f"wrote {DOC.relative_to(ROOT)} and {CHART.relative_to(ROOT)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few trials; writes nothing")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument(
        "--comparison-trials",
        type=int,
        default=50,
        help="trials for the variants other than the default and the previous default",
    )
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--days", type=float, default=21.0, help="horizon after a leak starts")
    parser.add_argument("--no-leak-days", type=float, default=30.0)
    parser.add_argument(
        "--only", nargs="*", default=None, help="scenario names to run (default: all)"
    )
    parser.add_argument(
        "--variant", default=None, help="run only the variants whose label contains this"
    )
    parser.add_argument("--save", type=Path, help="also write the summaries as JSON here")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="*",
        help="write the doc from summaries saved by earlier runs (in parallel), run nothing",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge(args.merge)
    trials = 6 if args.quick else args.trials
    no_leak_days = 7.0 if args.quick else args.no_leak_days
    world = World.default()
    variants = _variants()
    results: dict[str, list[Summary]] = {}
    started = time.perf_counter()
    failed = False
    for label, setup in variants.items():
        if args.quick and label != DEFAULT_LABEL:
            continue
        if args.variant and args.variant not in label:
            continue
        summaries = []
        n_trials = (
            trials
            if label in (DEFAULT_LABEL, BEFORE_LABEL)
            else min(trials, args.comparison_trials)
        )
        for scenario in SCENARIOS:
            if args.only and scenario.name not in args.only:
                continue
            if args.quick and scenario.name not in ("no_leak", "step_3", "one_customer"):
                continue
            days = no_leak_days if not scenario.leaks else args.days
            t0 = time.perf_counter()
            summary = run_scenario(setup, world, scenario, n_trials, args.seed, days)
            summaries.append(summary)
            print(
                f"{label:<40} {scenario.name:<13} detected {summary.detection:4.0%} "
                f"median h {_fmt(_q(summary.hours, 0.5), 1):>6} "
                f"lookups {_fmt(_q(summary.lookups, 0.5)):>8} "
                f"FA/30d {summary.false_alarms_per_30d:.2f} "
                f"({time.perf_counter() - t0:.1f} s)",
                flush=True,
            )
            if not scenario.leaks and summary.false_alarms:
                failed = True
        results[label] = summaries
    elapsed = time.perf_counter() - started
    if args.quick:
        if failed:
            print("FAIL: an alert fired in the no-leak scenario", file=sys.stderr)
            return 1
        print(f"ok: quick run in {elapsed:.1f} s")
        return 0
    if args.save:
        save(args.save, results, elapsed)
        print(f"saved {args.save}")
        return 0
    write_doc(variants[DEFAULT_LABEL], results, trials, elapsed, NOTES)
    chart(results, CHART)
    print(f"wrote {DOC.relative_to(ROOT)} and {CHART.relative_to(ROOT)} in {elapsed:.0f} s")
    return 0


BEFORE_LABEL = (
    "before: the previous default — 5-minute cycles of 167, no probes, tests not restarted "
    "per episode"
)
DEFAULT_LABEL = (
    "default: sequential test (CUSUM) restarted per episode, 2-minute cycles of 67 fresh "
    "draws, follow-up probes, rules per type and customer"
)
NOTES: tuple[str, ...] = (
    "## Why the goals that are missed are missed",
    "",
    "- **3% leak against Wald's SPRT, p95.** The spread is the test's own: a CUSUM"
    " looking after every single sample, started at the leak, crosses after a median of"
    " 192 and a p95 of 574 samples (2.3× the ESN of 251; 20,000 simulated runs), and the"
    " SPRT with its lower bound has a p95 of 692. A cycle only decides at its batch's"
    " end, so 67-sample batches add up to a batch to each crossing; 1-minute cycles of"
    " 33 cut that (table below) at twice the alert evaluations. Follow-up probes take"
    " their share (15%) out of the main draw, which the all-traffic rule alone reads;"
    " the reserve yields as the all-traffic evidence rises, and only groups nearer to"
    " firing than all traffic are probed, but early in a leak the draw is smaller.",
    "- **One event type, one customer.** What limits them is the group's own traffic,"
    " not the sampler. The customer with 0.5% of the volume makes one event a minute;"
    " its rule shares α over 41 customers, so it fires on 7 leaks (ln(41 × 40) / ln 3):"
    " 7 minutes of its traffic even if every event were looked up the moment it"
    " settled, ≈ 234 lookups of budget, against about 38 for a leak of all traffic at"
    " 100% — a floor of about 6×. The event type with 2% of the volume makes 4 events a"
    " minute and its rule (α over 4 types) needs about 55 samples at 10% (Wald's ESN):"
    " ≈ 14 minutes, ≈ 460 lookups, against about 90 for all traffic — a floor of"
    " about 5×. Follow-up probes halve the distance to all traffic (without them, on"
    " 2-minute cycles, the two leaks take about 40× as many lookups); a 3× goal needs a"
    " test that decides on fewer samples of the group (a larger leak alternative for"
    " split rules, or a mixture over several), which this change does not make.",
    "- **Resolution.** A firing alert now clears against the rate it fired at (the"
    " Wilson lower bound of its breach run) on the samples since it fired, and firing"
    " groups get probes first, so small groups resolve in about the time they took to"
    " fire (the small customer: 39 h before, under 0.5 h now). Both clocks include the"
    " settle delay (10 min) before the fix's events can be drawn, and the clear test"
    " tests the breach run's lower bound, not its rate, so it asks for somewhat more"
    " evidence than the breach did: the worst ratio is a few minutes over 1.",
    "- **A leak at half the threshold** (0.5%) alerts in many trials over three weeks."
    " A CUSUM's guarantee is Ville's bound per run of evidence; it restarts whenever"
    " the evidence falls to zero, so under a rate close to the threshold the time to a"
    " false alarm is long but finite, and shorter cycles (the statistic is clipped at"
    " zero after every batch) and the rules per type and customer (more tests) shorten"
    " it. The goal's no-leak rate (0.2%) stays far from it.",
)


def _variants() -> dict[str, Setup]:
    """The default, the previous default, and what each change is worth on its own."""
    default = default_setup("sequential", "fresh")
    five = {"every_h": 5 / 60, "sample_size": 167}
    return {
        DEFAULT_LABEL: default,
        BEFORE_LABEL: replace(default, **five, probe_share=0.0, episodes=False),
        "the default without follow-up probes": replace(default, probe_share=0.0),
        "the default without restarting the tests per episode": replace(default, episodes=False),
        "the default with 5-minute cycles of 167": replace(default, **five),
        "the default with 1-minute cycles of 33": replace(default, every_h=1 / 60, sample_size=33),
        "the default with a probe share of 30%": replace(default, probe_share=0.3),
        "the default deciding by the Wilson interval re-tested each cycle": replace(
            default_setup("interval", "fresh"), probe_share=0.0
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
