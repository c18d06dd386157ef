"""Read a timestamp in any shape a real log writes it; pure, no clock.

A log's time may be RFC 3339 (`T` or a space between date and time), a naive ISO
time whose zone the source's config names, or a Unix epoch in seconds, milliseconds,
microseconds or nanoseconds, as a number or a string. Every shape becomes an aware UTC
`datetime`, so an instant compares equal to the same instant however it was written
(Metronome holds RFC 3339; the classifier compares instants, never text).

The epoch unit is fixed by the source's `timestamp_unit`, or, by default, read from the
magnitude: the cut-offs sit where two units would both be plausible dates only outside
1973–5138, so any time a usage log can hold is read in exactly one unit.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from leakwatch.core.events import parse_timestamp


class TimestampUnit(StrEnum):
    """The unit of an epoch timestamp; AUTO reads it from the magnitude."""

    AUTO = "auto"
    SECONDS = "s"
    MILLISECONDS = "ms"
    MICROSECONDS = "us"
    NANOSECONDS = "ns"


_PER_SECOND = {
    TimestampUnit.SECONDS: 1,
    TimestampUnit.MILLISECONDS: 1_000,
    TimestampUnit.MICROSECONDS: 1_000_000,
    TimestampUnit.NANOSECONDS: 1_000_000_000,
}
# |value| below each bound reads as that unit: 1e11 s is the year 5138, 1e11 ms is 1973.
_AUTO_BOUNDS = (
    (Decimal(10) ** 11, TimestampUnit.SECONDS),
    (Decimal(10) ** 14, TimestampUnit.MILLISECONDS),
    (Decimal(10) ** 17, TimestampUnit.MICROSECONDS),
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Beyond these, datetime cannot hold the instant (or no log means it).
_MIN_SECONDS = Decimal(-62_135_596_800)  # 0001-01-01
_MAX_SECONDS = Decimal(253_402_300_799)  # 9999-12-31T23:59:59


@dataclass(frozen=True, slots=True)
class TimestampFormat:
    """How one source writes its times: the epoch unit, and the zone of naive times.

    `zone` None means a naive time is refused (bad_timestamp): guessing a zone would
    shift every event by hours, across the window's edges and the day boundaries.
    """

    unit: TimestampUnit = TimestampUnit.AUTO
    zone: tzinfo | None = None


DEFAULT_FORMAT = TimestampFormat()


def epoch_unit(value: Decimal) -> TimestampUnit:
    """Say which unit an epoch number is in, by its magnitude."""
    magnitude = abs(value)
    for bound, unit in _AUTO_BOUNDS:
        if magnitude < bound:
            return unit
    return TimestampUnit.NANOSECONDS


def from_epoch(value: Decimal, unit: TimestampUnit) -> datetime | None:
    """Turn an epoch number into an aware UTC datetime (microsecond precision)."""
    chosen = epoch_unit(value) if unit is TimestampUnit.AUTO else unit
    seconds = value / _PER_SECOND[chosen]
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        return None
    whole = int(seconds // 1)
    # Truncated, not rounded, to the microsecond: nanosecond logs keep their order.
    micros = int((seconds - whole) * 1_000_000)
    return _EPOCH + timedelta(seconds=whole, microseconds=micros)


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        if not text or not (text[0].isdigit() or text[0] in "+-."):
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def read_timestamp(value: Any, fmt: TimestampFormat = DEFAULT_FORMAT) -> datetime | None:
    """Read a log's timestamp in any supported shape; None when it is not a time.

    Strings that are numbers are epochs ("1732000000000"); other strings are ISO 8601 /
    RFC 3339 (with `T` or a space), naive ones placed in `fmt.zone` when one is set.
    A `datetime` (from a database driver or Parquet) is taken as is, naive ones in
    `fmt.zone` or else UTC (drivers return UTC for zone-less columns they stored).
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=fmt.zone or UTC).astimezone(UTC)
        return value.astimezone(UTC)
    number = _as_decimal(value)
    if number is not None:
        return from_epoch(number, fmt.unit)
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        pass
    if fmt.zone is None:
        return None
    try:
        naive = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if naive.tzinfo is not None:
        return None
    return naive.replace(tzinfo=fmt.zone).astimezone(UTC)
