"""ISO weeks in a time zone, and how UTC-day tables map onto them. Pure.

A report week is an ISO week (Monday 00:00 to the next Monday 00:00) on the wall clock
of `report.timezone`, so it is 167, 168 or 169 hours long around a DST switch. The
store keeps instants in UTC, so every week is turned into a half-open UTC interval
`[start_utc, end_utc)` once, here, and everything else compares instants.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_WEEK_PATTERN = re.compile(r"^(\d{4})-W(\d{2})$")
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, order=True)
class IsoWeek:
    """One ISO week by number, e.g. 2026-W47."""

    year: int
    week: int

    def __post_init__(self) -> None:
        # date.fromisocalendar validates the week exists in that ISO year (W53 or not).
        date.fromisocalendar(self.year, self.week, 1)

    @classmethod
    def parse(cls, text: str) -> "IsoWeek":
        """Parse `YYYY-Www`; raise ValueError with the expected shape otherwise."""
        match = _WEEK_PATTERN.match(text.strip())
        if match is None:
            raise ValueError(f"week {text!r} is not an ISO week; expected e.g. 2026-W47")
        year, week = int(match.group(1)), int(match.group(2))
        try:
            return cls(year, week)
        except ValueError as exc:
            raise ValueError(f"week {text!r} does not exist in ISO year {year}") from exc

    @classmethod
    def containing(cls, instant: datetime, timezone: ZoneInfo) -> "IsoWeek":
        """The week that `instant` falls in, on the wall clock of `timezone`."""
        iso = instant.astimezone(timezone).date().isocalendar()
        return cls(iso.year, iso.week)

    @classmethod
    def last_complete(cls, now: datetime, timezone: ZoneInfo) -> "IsoWeek":
        """The most recent week that has fully ended at `now` (what Monday's report covers)."""
        return cls.containing(now, timezone).shifted(-1)

    def __str__(self) -> str:
        return f"{self.year:04d}-W{self.week:02d}"

    @property
    def monday(self) -> date:
        return date.fromisocalendar(self.year, self.week, 1)

    def shifted(self, weeks: int) -> "IsoWeek":
        iso = (self.monday + timedelta(weeks=weeks)).isocalendar()
        return IsoWeek(iso.year, iso.week)

    def bounds_utc(self, timezone: ZoneInfo) -> tuple[datetime, datetime]:
        """The week as a half-open UTC interval [start, end)."""
        return local_midnight_utc(self.monday, timezone), local_midnight_utc(
            self.monday + timedelta(weeks=1), timezone
        )


def local_midnight_utc(day: date, timezone: ZoneInfo) -> datetime:
    """The UTC instant of 00:00 on `day` in `timezone`.

    zoneinfo resolves a midnight that does not exist (a DST gap at midnight, as in
    some zones) by `fold=0`, which is the instant just after the gap: the day still
    starts exactly once.
    """
    return datetime.combine(day, time(0), tzinfo=timezone).astimezone(UTC)


def utc_days_touching(start_utc: datetime, end_utc: datetime) -> tuple[date, date]:
    """First and last UTC day (inclusive) that overlap [start_utc, end_utc)."""
    last_instant = end_utc - timedelta(microseconds=1)
    return start_utc.astimezone(UTC).date(), last_instant.astimezone(UTC).date()


def week_utc_dates(week: IsoWeek) -> tuple[date, date]:
    """The seven UTC days that carry the same dates as the local week (Mon..Sun).

    Used for whole-count tables (bad lines), where a count cannot be split: each UTC
    day belongs to exactly one week, off by at most the zone's UTC offset at the ends.
    """
    return week.monday, week.monday + timedelta(days=6)
