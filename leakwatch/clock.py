"""The clock: the only module that reads wall time or sleeps.

Everything else takes a `Clock`, so tests run rate limits, retries, grace periods
and schedules on a `FakeClock` whose `sleep` advances time instantly.
"""

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What leakwatch needs from time: an aware-UTC now, a monotonic reading, a sleep."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that moves only when told to, or when something sleeps on it.

    Thread-safe, so a fake clock can be shared by a client and an in-process server.
    """

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._monotonic = 1_000.0
        self._lock = threading.Lock()
        self.slept_s = 0.0

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)
            with self._lock:
                self.slept_s += seconds

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._monotonic += seconds

    def set(self, when: datetime) -> None:
        """Jump to `when` (forward only: monotonic time never goes back)."""
        with self._lock:
            delta = (when.astimezone(UTC) - self._now).total_seconds()
            if delta < 0:
                raise ValueError("a FakeClock only moves forward")
            self._now = when.astimezone(UTC)
            self._monotonic += delta
