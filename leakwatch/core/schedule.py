"""When weekly things were due: pure calendar arithmetic in a time zone."""

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def last_weekly_instant(now: datetime, weekly: str, timezone: ZoneInfo) -> datetime:
    """The latest instant at or before `now` matching `weekly` ("mon 09:00") in `timezone`.

    Wall-clock time in the zone, so a report due "mon 09:00" stays at 09:00 across DST.
    A wall time that does not exist on a DST day (spring forward) resolves as zoneinfo
    does, to the instant an hour later; daily granularity is all the callers need.
    """
    day_name, clock_time = weekly.lower().split()
    hour, minute = (int(part) for part in clock_time.split(":"))
    weekday = WEEKDAYS.index(day_name)
    local_now = now.astimezone(timezone)
    days_back = (local_now.weekday() - weekday) % 7
    day = local_now.date() - timedelta(days=days_back)
    candidate = datetime.combine(day, time(hour, minute), tzinfo=timezone)
    if candidate > local_now:
        candidate = datetime.combine(day - timedelta(days=7), time(hour, minute), tzinfo=timezone)
    return candidate.astimezone(now.tzinfo)
