"""List prices of event types: the one `Price` type, and the one parser for it. Pure.

The config validates `[report] prices` into `Price`s once; everything that prices
leaked usage (status, alerts, the report, `/metrics`) takes those objects as they are.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_UNIT_KEYS = frozenset({"per_unit", "property"})


@dataclass(frozen=True, slots=True)
class Price:
    """List price of one event type: per event, or per unit of a quantity property."""

    amount: float
    unit_property: str | None = None

    @property
    def per_unit(self) -> bool:
        return self.unit_property is not None

    def describe(self, currency: str) -> str:
        if self.unit_property is None:
            return f"{currency}{self.amount:g} per event"
        return f"{currency}{self.amount:g} per unit of `{self.unit_property}`"


def parse_price(value: Any) -> Price:
    """Read one price: a number (per event) or `{ per_unit = 0.0004, property = "seconds" }`.

    Raises ValueError saying what is wrong and what is allowed.
    """
    if isinstance(value, Price):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return Price(_non_negative(value))
    if isinstance(value, Mapping):
        unknown = set(value) - _UNIT_KEYS
        if unknown:
            raise ValueError(
                f'unknown keys {sorted(unknown)}; use {{ per_unit = 0.0004, property = "seconds" }}'
            )
        amount, prop = value.get("per_unit"), value.get("property")
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise ValueError("needs a numeric per_unit")
        if not isinstance(prop, str) or not prop:
            raise ValueError("property must name the quantity property, e.g. 'seconds'")
        return Price(_non_negative(amount), prop)
    raise ValueError(f'expected a number or {{ per_unit = …, property = "…" }}, got {value!r}')


def parse_prices(raw: Mapping[str, Any]) -> dict[str, Price]:
    """Read a price table; a bad entry raises ValueError naming its event type."""
    prices: dict[str, Price] = {}
    for event_type, value in raw.items():
        try:
            prices[event_type] = parse_price(value)
        except ValueError as exc:
            raise ValueError(f"report.prices.{event_type}: {exc}") from None
    return prices


def quantity_properties(prices: Mapping[str, Price]) -> dict[str, str]:
    """Event type → the property whose value is priced per unit."""
    return {name: p.unit_property for name, p in prices.items() if p.unit_property is not None}


def _non_negative(amount: float) -> float:
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"price must be ≥ 0, got {amount!r}")
    return float(amount)
