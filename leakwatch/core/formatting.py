"""How a number reads: one formatter per kind of value (percent, money, count, instant). Pure.

Status, alerts in Slack, the weekly report and the terminal all print rates, money,
counts and instants through these functions, so one figure reads the same wherever a
user meets it. Precision follows the value: rates get enough decimals that a small
non-zero rate shows a significant digit; money and counts are rounded to two
significant figures once they are large (they are estimates; more digits would claim
a precision they do not have).
"""

import math
from datetime import UTC, datetime

from leakwatch.core.stats import RateEstimate

MISSING = "—"


def percent_decimals(*rates: float) -> int:
    """Enough decimals that the smallest non-zero rate shows a significant digit."""
    decimals = 0
    for rate in rates:
        pct = abs(rate) * 100
        if pct == 0:
            continue
        decimals = max(decimals, 1 if pct >= 1 else min(3, -math.floor(math.log10(pct))))
    return max(1, decimals) if any(r != 0 for r in rates) else 0


def format_percent(rate: float | None, decimals: int | None = None) -> str:
    """0.0083 → '0.8%', 0.00061 → '0.06%', 0.25 → '25.0%', 0 → '0%', None → '—'."""
    if rate is None:
        return MISSING
    if decimals is None:
        decimals = percent_decimals(rate)
    return f"{rate * 100:.{decimals}f}%"


def format_interval(rate: float, lo: float, hi: float) -> str:
    """'0.8% (0.6–1.1%)': a rate and its interval, with one precision for all three."""
    decimals = percent_decimals(rate) if rate > 0 else percent_decimals(hi)
    return f"{format_percent(rate, decimals)} ({lo * 100:.{decimals}f}–{hi * 100:.{decimals}f}%)"


def format_rate_interval(estimate: RateEstimate) -> str:
    """`format_interval` of an estimate."""
    return format_interval(estimate.rate, estimate.interval.lo, estimate.interval.hi)


def round_significant(value: float, digits: int = 2) -> float:
    if value == 0:
        return 0.0
    magnitude = math.floor(math.log10(abs(value)))
    return round(value, digits - 1 - magnitude)


def format_count(value: float) -> str:
    """41_234.5 → '41,000'; 7.4 → '7'."""
    if abs(value) >= 100:
        return f"{round_significant(value):,.0f}"
    return f"{value:,.0f}"


def format_money(value: float, currency: str = "$") -> str:
    """82.3 → '$82'; 8.23 → '$8.23'; 41_234 → '$41,000'."""
    if abs(value) >= 10:
        return f"{currency}{round_significant(value):,.0f}"
    return f"{currency}{value:,.2f}"


def format_instant(value: datetime) -> str:
    """An instant as people read it in every view: '2026-11-20 12:00 UTC'."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
