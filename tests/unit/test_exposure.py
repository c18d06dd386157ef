"""The one proration rule and the one way leaked events and revenue at risk are priced."""

from datetime import UTC, date, datetime, timedelta

import pytest

from leakwatch.core.events import Outcome
from leakwatch.core.exposure import (
    Volume,
    VolumeRow,
    day_share,
    per_day,
    scope_exposure,
    segment_exposure,
    volumes_in,
)
from leakwatch.core.pricing import Price
from leakwatch.core.stats import OutcomeTally

DAY = date(2026, 11, 19)
MIDNIGHT = datetime(2026, 11, 19, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since_h", "until_h", "now_h", "share"),
    [
        (0, 24, 48, 1.0),  # a past day inside the window
        (12, 24, 48, 0.5),  # half of a past day
        (-24, 24, 18, 1.0),  # today so far: all of it is inside the window
        (6, 24, 18, 12 / 18),  # today: 12 of the 18 elapsed hours
        (30, 48, 48, 0.0),  # a window after the day
        (0, 24, 0, 0.0),  # a day not begun
    ],
)
def test_day_share(since_h: int, until_h: int, now_h: int, share: float) -> None:
    def at(hours: int) -> datetime:
        return MIDNIGHT + timedelta(hours=hours)

    assert day_share(DAY, at(since_h), at(until_h), at(now_h)) == pytest.approx(share)


def test_the_last_24_hours_take_part_of_yesterday_and_all_of_today_so_far() -> None:
    now = MIDNIGHT + timedelta(days=1, hours=6)
    rows = [
        VolumeRow("gw", "api", DAY, 2400, 0.0),
        VolumeRow("gw", "api", DAY + timedelta(days=1), 600, 0.0),
    ]
    volumes = volumes_in(rows, now - timedelta(hours=24), now, now)
    assert volumes == {("gw", "api"): Volume(events=2400 * 18 / 24 + 600, quantity=0.0)}


def _tally(
    matched: int, missing: int, *, quantity: tuple[float, float] = (0.0, 0.0)
) -> OutcomeTally:
    tally = OutcomeTally()
    tally.add(Outcome.MATCHED, matched, float(matched), float(matched), quantity[0])
    tally.add(Outcome.MISSING, missing, float(missing), float(missing), quantity[1])
    return tally


def test_leaked_events_and_revenue_per_event() -> None:
    exposure = segment_exposure(_tally(90, 10), Volume(10_000, 0.0), Price(0.002))
    assert exposure.leaked_events is not None and exposure.revenue_at_risk is not None
    assert exposure.leaked_events.point == pytest.approx(1000)
    assert exposure.revenue_at_risk.point == pytest.approx(2.0)
    assert exposure.revenue_at_risk.lo < 2.0 < exposure.revenue_at_risk.hi


def test_per_unit_revenue_follows_the_share_of_quantity_that_leaked() -> None:
    # 10% of events leaked, but they carried 30% of the sampled quantity.
    tally = _tally(90, 10, quantity=(700.0, 300.0))
    exposure = segment_exposure(tally, Volume(10_000, 50_000.0), Price(0.001, "seconds"))
    assert exposure.leaked_quantity is not None and exposure.revenue_at_risk is not None
    assert exposure.leaked_quantity.point == pytest.approx(0.3 * 50_000)
    assert exposure.revenue_at_risk.point == pytest.approx(0.3 * 50_000 * 0.001)


def test_a_scope_adds_its_segments_each_at_its_own_rate() -> None:
    tallies = {("gw", "api"): _tally(99, 1), ("gw", "gpu"): _tally(50, 50)}
    volumes = {("gw", "api"): Volume(100_000, 0.0), ("gw", "gpu"): Volume(100, 0.0)}
    prices = {"api": Price(0.01), "gpu": Price(1.0)}
    total = scope_exposure(tallies, volumes, prices)
    assert total.leaked_events is not None and total.revenue_at_risk is not None
    assert total.leaked_events.point == pytest.approx(1000 + 50)
    assert total.revenue_at_risk.point == pytest.approx(10 + 50)
    gpu = scope_exposure(tallies, volumes, prices, within=lambda s: s[1] == "gpu")
    assert gpu.revenue_at_risk is not None and gpu.revenue_at_risk.point == pytest.approx(50)
    only_missing = scope_exposure(tallies, volumes, {}, outcomes=[Outcome.UNMATCHED_METRIC])
    assert only_missing.leaked_events is not None and only_missing.leaked_events.point == 0
    assert only_missing.revenue_at_risk is None


def test_unknown_volume_gives_no_estimate_and_per_day_scales() -> None:
    assert segment_exposure(_tally(9, 1), None, Price(1.0)).leaked_events is None
    exposure = segment_exposure(_tally(9, 1), Volume(700, 0.0), None)
    weekly = exposure.leaked_events
    daily = per_day(weekly, timedelta(days=7))
    assert weekly is not None and daily is not None
    assert daily.point == pytest.approx(weekly.point / 7)
