"""Durations as people write them in config (`90s`, `15m`, `2h`, `33d`, `1h30m`, `1w`),
and as servers send them (`Retry-After`). Pure."""

import math
import re
from datetime import timedelta
from typing import Any

_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ValueError with what is allowed otherwise."""
    cleaned = text.strip().lower().replace(" ", "") if isinstance(text, str) else ""
    if not cleaned:
        raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 15m, 2h, 33d or 1h30m")
    position = 0
    total_s = 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            break
        total_s += float(match.group(1)) * _UNITS_S[match.group(2)]
        position = match.end()
    if position != len(cleaned):
        raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 15m, 2h, 33d or 1h30m")
    return timedelta(seconds=total_s)


def format_duration(value: timedelta) -> str:
    """Render compactly (`2h`, `1d12h`, `90s` → `1m30s`), the inverse of parse_duration."""
    remaining_s = round(value.total_seconds())
    if remaining_s == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, remaining_s = divmod(remaining_s, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


def retry_after_s(headers: Any, max_s: float | None = None) -> float | None:
    """How long a server asks us to wait: `retry-after-ms` (precise) or `Retry-After`.

    The one reader of the header, for Metronome and Slack alike. `headers` is any
    mapping with `.items()` (httpx's headers, slack-sdk's dict, whose values may be
    lists); names match case-insensitively. Seconds may be fractional; a value that is
    not a finite number ≥ 0 is ignored. Capped at `max_s` when given.
    """
    if not headers:
        return None
    found: dict[str, Any] = {str(name).lower(): value for name, value in headers.items()}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = found.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds if max_s is None else min(seconds, max_s)
    return None
