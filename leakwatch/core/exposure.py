"""What leaks cost: volume over a window, leaked events and revenue at risk. Pure.

One rule for every view (status, alerts, the weekly report, `/metrics`):

- **Volume over a window** comes from the tail's exact counts per (source, event type)
  and UTC day, prorated by `day_share` (the one proration rule, see there).
- **Each segment at its own rate**: a segment is a (source, event type) pair, the
  grain volumes are counted at. Its leaked events are its weighted rate
  (`OutcomeTally.rate`) × its volume over the window; revenue at risk prices those at
  the event type's `Price`. A scope (everything, one source, one event type) adds the
  estimates of its segments: one blended rate applied to a mix of segments would
  misprice it, and would make a view's total disagree with the sum of its rows.
- **Per-unit prices** weigh big events more than small ones: the leaked quantity is the
  weighted share of *sampled quantity* that leaked × the window's summed quantity.
- Totals' bounds add the segments' bounds: conservative (wider than a joint interval).
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from leakwatch.core.events import LEAKING_OUTCOMES, Outcome
from leakwatch.core.pricing import Price
from leakwatch.core.stats import Estimate, OutcomeTally, RateEstimate

# (source, event type): the grain at which volumes are counted and rates are priced.
Segment = tuple[str, str]

_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class VolumeRow:
    """The tail's count of one (source, event type, UTC day), and its summed quantity."""

    source: str
    event_type: str
    day: date
    events: int
    quantity_sum: float


@dataclass(frozen=True, slots=True)
class Volume:
    """Events (and summed quantity) of one segment over a window, prorated."""

    events: float
    quantity: float


@dataclass(frozen=True, slots=True)
class Exposure:
    """Leaked events and what they cost; None where the volume or a price is unknown."""

    leaked_events: Estimate | None = None
    leaked_quantity: Estimate | None = None
    revenue_at_risk: Estimate | None = None


def day_share(day: date, since: datetime, until: datetime, now: datetime) -> float:
    """Share of UTC day `day`'s volume count that belongs to the window [since, until).

    The one proration rule. A day's count holds the events of the part of the day
    observed so far, [day start, min(day end, now)); the window gets the fraction of
    that observed part it covers, assuming traffic is even within a day. So:
    - a past day counts by the hours the window covers (a report week starting at
      local midnight in another zone takes a slice of its edge days);
    - today counts its events so far by the share of the *elapsed* part the window
      covers — dividing by 24 h would undercount a day in progress by the hours not
      yet lived, and a 7-day average would answer for a different period than the
      window the rate was measured over;
    - consecutive windows' shares of one day add up to exactly 1, so no event is
      counted in two windows.
    """
    start = datetime.combine(day, time(0), tzinfo=UTC)
    observed_until = min(start + _DAY, max(now, start))
    observed = observed_until - start
    if observed <= timedelta(0):
        return 0.0
    overlap = min(observed_until, until) - max(start, since)
    return max(0.0, min(1.0, overlap / observed))


def volumes_in(
    rows: Iterable[VolumeRow], since: datetime, until: datetime, now: datetime
) -> dict[Segment, Volume]:
    """Each segment's volume over [since, until), by `day_share`; only segments with some."""
    acc: dict[Segment, tuple[float, float]] = {}
    for row in rows:
        share = day_share(row.day, since, until, now)
        if share <= 0:
            continue
        events, quantity = acc.get((row.source, row.event_type), (0.0, 0.0))
        acc[(row.source, row.event_type)] = (
            events + row.events * share,
            quantity + row.quantity_sum * share,
        )
    return {key: Volume(events, quantity) for key, (events, quantity) in acc.items()}


def with_source_total(
    volumes: Mapping[Segment, Volume], source: str, events: float
) -> dict[Segment, Volume]:
    """Scale one source's segment volumes to a total estimated elsewhere (the draw).

    For a source whose tail is still reading its history the counts are partial: they
    give the mix of event types, `events` gives the level. Unchanged when the source
    has no counts to take the mix from.
    """
    counted = sum(v.events for (s, _), v in volumes.items() if s == source)
    if counted <= 0:
        return dict(volumes)
    factor = events / counted
    return {
        segment: Volume(v.events * factor, v.quantity * factor) if segment[0] == source else v
        for segment, v in volumes.items()
    }


def scaled(estimate: Estimate, factor: float) -> Estimate:
    return Estimate(estimate.point * factor, estimate.lo * factor, estimate.hi * factor)


def per_day(estimate: Estimate | None, window: timedelta) -> Estimate | None:
    """An estimate over `window` expressed per day."""
    if estimate is None or window <= timedelta(0):
        return None
    return scaled(estimate, _DAY / window)


def segment_exposure(
    tally: OutcomeTally,
    volume: Volume | None,
    price: Price | None,
    *,
    outcomes: Iterable[Outcome] = LEAKING_OUTCOMES,
    confidence: float = 0.95,
) -> Exposure:
    """Leaked events and revenue at risk of one segment over the window of `volume`."""
    if volume is None or tally.decided == 0:
        return Exposure()
    chosen = frozenset(outcomes)
    rate = tally.rate(chosen, confidence)
    leaked = Estimate(
        rate.rate * volume.events,
        rate.interval.lo * volume.events,
        rate.interval.hi * volume.events,
    )
    if price is None:
        return Exposure(leaked_events=leaked)
    if not price.per_unit:
        return Exposure(leaked_events=leaked, revenue_at_risk=scaled(leaked, price.amount))
    leaked_quantity = scaled(leaked, _units_per_leaked_event(tally, chosen, rate, volume))
    return Exposure(
        leaked_events=leaked,
        leaked_quantity=leaked_quantity,
        revenue_at_risk=scaled(leaked_quantity, price.amount),
    )


def _units_per_leaked_event(
    tally: OutcomeTally, outcomes: frozenset[Outcome], rate: RateEstimate, volume: Volume
) -> float:
    """The mean quantity a leaked event carries, so leaked units = leaked events × this.

    Chosen so the point estimate is the weighted share of *quantity* that leaked times
    the window's summed quantity; the interval is the event-rate interval scaled the
    same way, an approximation that keeps its relative width. Without sampled
    quantities (or at zero leaks) it falls back to the average quantity per event.
    """
    if volume.events <= 0:
        return 0.0
    average = volume.quantity / volume.events
    share = tally.quantity_share(outcomes)
    if share is None or rate.rate <= 0:
        return average
    return share * volume.quantity / (rate.rate * volume.events)


def sum_estimates(estimates: Iterable[Estimate | None]) -> Estimate | None:
    """Add estimates (points and bounds); None when none is known."""
    present = [e for e in estimates if e is not None]
    if not present:
        return None
    return Estimate(
        sum(e.point for e in present), sum(e.lo for e in present), sum(e.hi for e in present)
    )


def add_exposures(exposures: Iterable[Exposure]) -> Exposure:
    """A scope's exposure: the sum of its segments' (see module)."""
    found = list(exposures)
    return Exposure(
        leaked_events=sum_estimates(e.leaked_events for e in found),
        leaked_quantity=sum_estimates(e.leaked_quantity for e in found),
        revenue_at_risk=sum_estimates(e.revenue_at_risk for e in found),
    )


def segments_of(
    *, source: str | None = None, event_type: str | None = None
) -> Callable[[Segment], bool]:
    """Select the segments of one source and/or one event type (all when neither is given)."""
    return lambda segment: (
        (source is None or segment[0] == source)
        and (event_type is None or segment[1] == event_type)
    )


def scope_exposure(
    tallies: Mapping[Segment, OutcomeTally],
    volumes: Mapping[Segment, Volume],
    prices: Mapping[str, Price],
    *,
    outcomes: Iterable[Outcome] = LEAKING_OUTCOMES,
    confidence: float = 0.95,
    within: Callable[[Segment], bool] = lambda _segment: True,
) -> Exposure:
    """The exposure of the segments `within` selects, each at its own rate."""
    chosen = frozenset(outcomes)
    return add_exposures(
        segment_exposure(
            tally,
            volumes.get(segment),
            prices.get(segment[1]),
            outcomes=chosen,
            confidence=confidence,
        )
        for segment, tally in sorted(tallies.items())
        if within(segment)
    )
