"""The last weekly due time, across zones and DST."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from leakwatch.core.schedule import WeeklyTime, last_weekly_instant

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("now", "weekly", "zone", "expected"),
    [
        # Wednesday: the Monday just gone.
        (
            datetime(2026, 11, 25, 15, tzinfo=UTC),
            "mon 09:00",
            "UTC",
            datetime(2026, 11, 23, 9, tzinfo=UTC),
        ),
        # Monday before 09:00: the Monday a week earlier.
        (
            datetime(2026, 11, 23, 8, 59, tzinfo=UTC),
            "mon 09:00",
            "UTC",
            datetime(2026, 11, 16, 9, tzinfo=UTC),
        ),
        # Exactly due counts as due.
        (
            datetime(2026, 11, 23, 9, tzinfo=UTC),
            "mon 09:00",
            "UTC",
            datetime(2026, 11, 23, 9, tzinfo=UTC),
        ),
        # 09:00 in Berlin is 08:00 UTC in winter ...
        (
            datetime(2026, 11, 23, 8, 30, tzinfo=UTC),
            "mon 09:00",
            "Europe/Berlin",
            datetime(2026, 11, 23, 8, tzinfo=UTC),
        ),
        # ... and 07:00 UTC in summer.
        (
            datetime(2026, 7, 6, 7, 30, tzinfo=UTC),
            "mon 09:00",
            "Europe/Berlin",
            datetime(2026, 7, 6, 7, tzinfo=UTC),
        ),
        # Tuesday 03:00 UTC is still Monday evening in New York: the zone's calendar decides.
        (
            datetime(2026, 11, 24, 3, tzinfo=UTC),
            "mon 09:00",
            "America/New_York",
            datetime(2026, 11, 23, 14, tzinfo=UTC),
        ),
    ],
)
def test_last_weekly_instant(now: datetime, weekly: str, zone: str, expected: datetime) -> None:
    assert last_weekly_instant(now, WeeklyTime.parse(weekly), ZoneInfo(zone)) == expected


def test_it_is_never_in_the_future() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    for hours in range(0, 24 * 60, 7):  # across the spring DST switch
        now = start + timedelta(hours=hours)
        due = last_weekly_instant(now, WeeklyTime.parse("sun 02:30"), BERLIN)
        assert due <= now
        assert (now - due).days < 7


@pytest.mark.parametrize("text", ["mon", "monday 09:00", "mon 24:00", "mon 9", "mon 09:60", ""])
def test_bad_weekly_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="weekly time"):
        WeeklyTime.parse(text)


def test_weekly_time_reads_back_as_written() -> None:
    assert str(WeeklyTime.parse("Mon 9:05")) == "mon 09:05"
