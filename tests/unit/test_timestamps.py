"""Every timestamp shape a real log writes reads as the same instant."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from leakwatch.core.timestamps import (
    TimestampFormat,
    TimestampUnit,
    epoch_unit,
    read_timestamp,
)

INSTANT = datetime(2026, 11, 20, 12, 30, 15, 123000, tzinfo=UTC)
SECONDS = 1_795_177_815  # INSTANT without its milliseconds
BERLIN = TimestampFormat(zone=ZoneInfo("Europe/Berlin"))


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        ("2026-11-20T12:30:15.123Z", TimestampFormat()),
        ("2026-11-20 12:30:15.123Z", TimestampFormat()),
        ("2026-11-20 12:30:15.123+00:00", TimestampFormat()),
        ("2026-11-20T13:30:15.123+01:00", TimestampFormat()),
        ("2026-11-20 13:30:15.123", BERLIN),
        ("2026-11-20T13:30:15.123", BERLIN),
        (SECONDS + 0.123, TimestampFormat()),
        (f"{SECONDS}.123", TimestampFormat()),
        (SECONDS * 1000 + 123, TimestampFormat()),
        (str(SECONDS * 1000 + 123), TimestampFormat()),
        (SECONDS * 1_000_000 + 123_000, TimestampFormat()),
        (SECONDS * 1_000_000_000 + 123_000_000, TimestampFormat()),
        (str(SECONDS * 1_000_000_000 + 123_000_999), TimestampFormat()),
        (SECONDS * 1000 + 123, TimestampFormat(unit=TimestampUnit.MILLISECONDS)),
        (INSTANT.replace(tzinfo=None), TimestampFormat()),  # a driver's naive UTC
        (INSTANT.replace(tzinfo=None, hour=13), BERLIN),
        (INSTANT.astimezone(timezone(timedelta(hours=-5))), TimestampFormat()),
    ],
)
def test_each_shape_is_the_same_instant(value: object, fmt: TimestampFormat) -> None:
    assert read_timestamp(value, fmt) == INSTANT


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        ("2026-11-20 12:30:15", TimestampFormat()),  # naive and no zone configured
        ("yesterday", TimestampFormat()),
        ("", TimestampFormat()),
        (True, TimestampFormat()),
        (None, TimestampFormat()),
        (float("nan"), TimestampFormat()),
        ("1e400", TimestampFormat()),
        ({"t": 1}, TimestampFormat()),
        (10**30, TimestampFormat(unit=TimestampUnit.SECONDS)),  # past year 9999
    ],
)
def test_what_is_not_a_time_is_refused(value: object, fmt: TimestampFormat) -> None:
    assert read_timestamp(value, fmt) is None


def test_a_fixed_unit_wins_over_the_magnitude() -> None:
    # 1.7e9 read as milliseconds is January 1970, not 2023.
    fixed = TimestampFormat(unit=TimestampUnit.MILLISECONDS)
    assert read_timestamp(1_700_000_000, fixed) == datetime(1970, 1, 20, 16, 13, 20, tzinfo=UTC)
    assert read_timestamp(1_700_000_000) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "unit"),
    [
        (Decimal(0), TimestampUnit.SECONDS),
        (Decimal(SECONDS), TimestampUnit.SECONDS),
        (Decimal(SECONDS) * 1000, TimestampUnit.MILLISECONDS),
        (Decimal(SECONDS) * 10**6, TimestampUnit.MICROSECONDS),
        (Decimal(SECONDS) * 10**9, TimestampUnit.NANOSECONDS),
        (Decimal(100_000_000_000), TimestampUnit.MILLISECONDS),  # 1973-03-03 in ms
    ],
)
def test_auto_reads_the_unit_from_the_magnitude(value: Decimal, unit: TimestampUnit) -> None:
    assert epoch_unit(value) is unit


def test_nanoseconds_keep_their_order() -> None:
    first = read_timestamp(SECONDS * 10**9 + 1_000)
    second = read_timestamp(SECONDS * 10**9 + 2_000)
    assert first is not None and second is not None and first < second


def test_a_dst_gap_or_overlap_still_reads() -> None:
    # 02:30 on the night clocks go back exists twice; the first is taken.
    value = read_timestamp("2026-10-25 02:30:00", BERLIN)
    assert value == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
