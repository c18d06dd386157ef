"""When weekly things are due: the one parser of "mon 09:00", and calendar arithmetic
in a time zone. Pure."""

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class WeeklyTime:
    """A day of the week and a wall-clock time, e.g. "mon 09:00" (`report.weekly`)."""

    weekday: int  # 0 = Monday, as datetime.weekday()
    hour: int
    minute: int

    @classmethod
    def parse(cls, text: str) -> "WeeklyTime":
        """Read "mon 09:00"; raise ValueError saying what is allowed otherwise."""
        if isinstance(text, WeeklyTime):
            return text
        parts = text.lower().split() if isinstance(text, str) else []
        if len(parts) == 2 and parts[0] in WEEKDAYS and len(parts[1].split(":")) == 2:
            hour, minute = parts[1].split(":")
            if hour.isdigit() and minute.isdigit() and int(hour) < 24 and int(minute) < 60:
                return cls(WEEKDAYS.index(parts[0]), int(hour), int(minute))
        raise ValueError(f"{text!r} is not a weekly time; write e.g. 'mon 09:00'")

    @property
    def day_name(self) -> str:
        return WEEKDAYS[self.weekday]

    def __str__(self) -> str:
        return f"{self.day_name} {self.hour:02d}:{self.minute:02d}"


def last_weekly_instant(now: datetime, weekly: WeeklyTime, timezone: ZoneInfo) -> datetime:
    """The latest instant at or before `now` matching `weekly` in `timezone`.

    Wall-clock time in the zone, so a report due "mon 09:00" stays at 09:00 across DST.
    A wall time that does not exist on a DST day (spring forward) resolves as zoneinfo
    does, to the instant an hour later; daily granularity is all the callers need.
    """
    at = time(weekly.hour, weekly.minute)
    local_now = now.astimezone(timezone)
    days_back = (local_now.weekday() - weekly.weekday) % 7
    day = local_now.date() - timedelta(days=days_back)
    candidate = datetime.combine(day, at, tzinfo=timezone)
    if candidate > local_now:
        candidate = datetime.combine(day - timedelta(days=7), at, tzinfo=timezone)
    return candidate.astimezone(now.tzinfo)
