"""Sampling maths: the window, length-biased acceptance, stratum allocation, weights.

Pure: no I/O, no clock. Callers pass `now` and a seeded `random.Random`, so a draw is
reproducible and every decision here is testable with plain values.
"""

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Generic, TypeVar

from leakwatch.core.events import SourceEvent

# Metronome searches 34 days back; a day of margin keeps sampled events searchable
# for at least the time it takes to check them.
MAX_AGE_LIMIT = timedelta(days=33)

STRATUM_FIELDS = ("event_type", "customer_id")
STRATUM_SEPARATOR = "|"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Window:
    """The open interval of event times a draw may take: (start, end).

    An event is eligible when it is younger than `max_age` (after `start`) and older
    than `settle_delay` (before `end`): ingestion takes time, and Metronome forgets.
    """

    start: datetime
    end: datetime

    def contains(self, ts: datetime) -> bool:
        return self.start < ts < self.end


def sampling_window(now: datetime, settle_delay: timedelta, max_age: timedelta) -> Window:
    """Compute the window of eligible event times at `now`.

    Raises ValueError on a naive `now`, a max_age beyond 33 days, or a settle delay
    that leaves no window at all.
    """
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    validate_window_spec(settle_delay, max_age)
    return Window(start=now - max_age, end=now - settle_delay)


def settled_since(window: Window, since: datetime | None, settle_delay: timedelta) -> Window:
    """Narrow `window` to the events that settled after `since` (the previous draw).

    A cycle that draws only what became eligible since the last one looks at each
    event once, soon after it settles: a leak that starts now is in the very next
    sample instead of diluted over the whole window for weeks (docs/detection.md).
    """
    if since is None:
        return window
    start = max(window.start, since - settle_delay)
    return Window(start=min(start, window.end), end=window.end)


def validate_window_spec(settle_delay: timedelta, max_age: timedelta) -> None:
    """Reject window settings that could sample unsearchable or no events."""
    if max_age > MAX_AGE_LIMIT:
        raise ValueError(f"max_age {max_age} exceeds 33 days (Metronome searches only 34)")
    if settle_delay < timedelta(0):
        raise ValueError("settle_delay must not be negative")
    if settle_delay >= max_age:
        raise ValueError("settle_delay must be shorter than max_age")


def window_share_of_day(day: date, window: Window) -> float:
    """The share of a UTC day inside the window (volume counts are per UTC day).

    Counts of the window's two edge days are prorated by the hours inside it, which
    assumes traffic is even within those days.
    """
    day_start = datetime.combine(day, time(), tzinfo=UTC)
    overlap = min(window.end, day_start + timedelta(days=1)) - max(window.start, day_start)
    return max(0.0, overlap / timedelta(days=1))


def accept_by_length(line_bytes: int, min_line_bytes: int, rng: random.Random) -> bool:
    """Accept a line found at a uniform byte offset with probability c / len(line).

    A uniform offset lands in a line with probability proportional to its length;
    thinning by the inverse length makes every line equally likely, exactly, as long
    as `min_line_bytes` (c) is no larger than the shortest line.
    """
    if line_bytes <= 0:
        return False
    return rng.random() * line_bytes < min_line_bytes


def parse_stratify_by(text: str | None) -> tuple[str, ...]:
    """Turn "event_type", "customer_id" or "event_type,customer_id" into field names."""
    if text is None or not text.strip():
        return ()
    fields = tuple(part.strip() for part in text.split(","))
    for name in fields:
        if name not in STRATUM_FIELDS:
            raise ValueError(f"cannot stratify by {name!r}; choose from {STRATUM_FIELDS}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"stratify_by repeats a field: {text!r}")
    return fields


def stratum_of(event: SourceEvent, fields: Sequence[str]) -> str | None:
    """Name an event's stratum: the values of `fields` joined by "|" (None if unstratified)."""
    if not fields:
        return None
    return STRATUM_SEPARATOR.join(str(getattr(event, name)) for name in fields)


def allocate(
    populations: Mapping[str, float],
    sample_size: int,
    floor: int,
    *,
    weights: Mapping[str, float] | None = None,
) -> dict[str, int]:
    """Split `sample_size` draws across strata: a floor for each, the rest by weight.

    Every active stratum (population > 0) gets `min(floor, population)` first, so a
    rare customer is checked at all; the rest goes in proportion to `weights`
    (population by default — proportional allocation; pass N_h·S_h for Neyman), by
    largest remainder, never more than a stratum holds. When the floors alone exceed
    the sample size, the draws are shared out as evenly as the populations allow.
    """
    if sample_size < 0 or floor < 0:
        raise ValueError("sample_size and floor must not be negative")
    active = {name: pop for name, pop in populations.items() if pop > 0}
    capacity = {name: math.floor(pop) for name, pop in active.items()}
    allocation = dict.fromkeys(active, 0)
    if not active or sample_size == 0:
        return allocation
    floors = {name: min(floor, capacity[name]) for name in active}
    if sum(floors.values()) >= sample_size:
        return _share_evenly(capacity, sample_size)
    allocation.update(floors)
    basis = weights if weights is not None else active
    _distribute(allocation, capacity, sample_size - sum(floors.values()), basis)
    return allocation


def _share_evenly(capacity: Mapping[str, int], total: int) -> dict[str, int]:
    """Water-fill `total` draws over strata, smallest first, each capped by its size."""
    allocation = dict.fromkeys(capacity, 0)
    remaining = total
    order = sorted(capacity, key=lambda name: (capacity[name], name))
    for index, name in enumerate(order):
        share = remaining // (len(order) - index)
        take = min(share, capacity[name])
        allocation[name] = take
        remaining -= take
    # Integer division leaves a remainder; hand it to the largest strata with room.
    for name in reversed(order):
        if remaining == 0:
            break
        if allocation[name] < capacity[name]:
            allocation[name] += 1
            remaining -= 1
    return allocation


def _distribute(
    allocation: dict[str, int],
    capacity: Mapping[str, int],
    extra: int,
    basis: Mapping[str, float],
) -> None:
    """Add `extra` draws in proportion to `basis` by largest remainder, respecting capacity."""
    while extra > 0:
        open_strata = [n for n in allocation if allocation[n] < capacity[n] and basis.get(n, 0) > 0]
        if not open_strata:
            open_strata = [n for n in allocation if allocation[n] < capacity[n]]
            if not open_strata:
                return
            basis = dict.fromkeys(open_strata, 1.0)
        total_basis = sum(basis[n] for n in open_strata)
        quotas = {n: extra * basis[n] / total_basis for n in open_strata}
        given = 0
        for name in open_strata:
            add = min(math.floor(quotas[name]), capacity[name] - allocation[name])
            allocation[name] += add
            given += add
        leftover = extra - given
        by_remainder = sorted(
            open_strata, key=lambda n: (quotas[n] - math.floor(quotas[n]), basis[n]), reverse=True
        )
        for name in by_remainder:
            if leftover == 0:
                break
            if allocation[name] < capacity[name]:
                allocation[name] += 1
                leftover -= 1
        if leftover == extra:
            return
        extra = leftover


def inclusion_weight(population: float, sample_count: int) -> float:
    """Horvitz–Thompson weight: how many population events one sampled event stands for."""
    if sample_count <= 0:
        raise ValueError("sample_count must be positive")
    return population / sample_count


def estimate_population(range_bytes: int, inverse_lengths: Sequence[float]) -> float:
    """Estimate the number of eligible lines in a byte range from uniform byte draws.

    A uniform byte lands in line i with probability len_i / B, so the mean of
    (1 / len_i if line i is eligible else 0) over the draws estimates N / B.
    """
    if not inverse_lengths:
        return 0.0
    return range_bytes * sum(inverse_lengths) / len(inverse_lengths)


class Reservoir(Generic[T]):
    """Keep a uniform sample of at most `capacity` items from a stream (Algorithm R)."""

    def __init__(self, capacity: int, rng: random.Random) -> None:
        self.capacity = capacity
        self.seen = 0
        self.items: list[T] = []
        self._rng = rng

    def offer(self, item: T) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
            return
        slot = self._rng.randrange(self.seen)
        if slot < self.capacity:
            self.items[slot] = item


class StratifiedReservoir(Generic[T]):
    """One reservoir per stratum, so an allocation can be drawn after a single pass.

    Each stratum keeps up to `capacity` items (the most any allocation could give it)
    and an exact count, which the allocation needs.
    """

    def __init__(self, capacity: int, rng: random.Random) -> None:
        self.capacity = capacity
        self.reservoirs: dict[str, Reservoir[T]] = {}
        self._rng = rng

    def offer(self, stratum: str, item: T) -> None:
        reservoir = self.reservoirs.get(stratum)
        if reservoir is None:
            reservoir = self.reservoirs[stratum] = Reservoir(self.capacity, self._rng)
        reservoir.offer(item)

    def populations(self) -> dict[str, int]:
        return {name: r.seen for name, r in self.reservoirs.items()}

    def draw(self, allocation: Mapping[str, int]) -> dict[str, list[T]]:
        """Take a uniform subsample of each stratum's reservoir of the allocated size."""
        drawn: dict[str, list[T]] = {}
        for name, reservoir in self.reservoirs.items():
            want = min(allocation.get(name, 0), len(reservoir.items))
            drawn[name] = self._rng.sample(reservoir.items, want) if want else []
        return drawn


# --- Follow-up probes --------------------------------------------------------------
#
# A group (an event type, a customer) whose sequential evidence has left zero gets
# extra draws of its own next cycle, taken from the cycle's sample size; a group
# whose alert fires gets them too, so its clear test moves as fast as its breach did.
# Each probe is a uniform draw from the group's recent events, so the group's test
# stays valid however the groups were chosen; the overall Horvitz–Thompson rate and
# the all-traffic rule leave probes out (weight 0), since a probe is not a draw from
# all traffic.

PROBE_PREFIX = "probe:"
# A probe draws from the group's events that settled over this many cycles: a few
# more than the one cycle's worth a small group has, not so many that a leak which
# started (or was fixed) a moment ago is diluted by what came before it.
PROBE_LOOKBACK_CYCLES = 3


def probe_stratum(field: str) -> str:
    """The stratum a probe drawn within a group of `field` is recorded under."""
    if field not in STRATUM_FIELDS:
        raise ValueError(f"cannot probe by {field!r}; choose from {STRATUM_FIELDS}")
    return f"{PROBE_PREFIX}{field}"


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """A group that wants probes: `urgency` is its breach evidence over the bound."""

    field: str
    value: str
    urgency: float
    firing: bool = False


@dataclass(frozen=True, slots=True)
class Probe:
    """Draw `size` events within the group `field` = `value`."""

    field: str
    value: str
    size: int


def probe_reserve(draw: int, share: float, overall_urgency: float) -> int:
    """How many of a cycle's `draw` go to probes: `share` of it, yielding to all traffic.

    Probes are not draws from all traffic, so they slow the all-traffic rule down;
    while its own evidence rises (`overall_urgency`, its breach over its bound) the
    reserve shrinks in proportion and the main draw gets the rest.
    """
    if draw < 0 or not 0.0 <= share <= 1.0:
        raise ValueError("draw must not be negative and share must be in [0, 1]")
    yielded = 1.0 - min(1.0, max(0.0, overall_urgency))
    return int(draw * share * yielded)


def plan_probes(
    targets: Sequence[ProbeTarget], budget: int, per_group: int, overall_urgency: float = 0.0
) -> list[Probe]:
    """Share `budget` probe draws: firing groups first, then the nearest to firing.

    Each group gets at most `per_group`; a group named by two targets (two rules over
    the same field) is probed once, at its most urgent. A group no nearer to firing
    than all traffic (`overall_urgency`) is left to the main draw: a leak everywhere
    shows in the all-traffic rule first, and probes would only slow it down.
    """
    if budget < 0 or per_group < 0:
        raise ValueError("budget and per_group must not be negative")
    best: dict[tuple[str, str], ProbeTarget] = {}
    for target in targets:
        if not target.firing and target.urgency <= overall_urgency:
            continue
        key = (target.field, target.value)
        known = best.get(key)
        if known is None or (target.firing, target.urgency) > (known.firing, known.urgency):
            best[key] = target
    order = sorted(best.values(), key=lambda t: (not t.firing, -t.urgency, t.field, t.value))
    probes: list[Probe] = []
    left = budget
    for target in order:
        size = min(per_group, left)
        if size <= 0:
            break
        probes.append(Probe(target.field, target.value, size))
        left -= size
    return probes


def allocate_within(populations: Mapping[str, float], stratum: str, size: int) -> dict[str, int]:
    """Put all `size` draws in one stratum (a probe), as many as it holds."""
    if size < 0:
        raise ValueError("size must not be negative")
    allocation = dict.fromkeys((name for name, pop in populations.items() if pop > 0), 0)
    if stratum in allocation:
        allocation[stratum] = min(size, math.floor(populations[stratum]))
    return allocation
