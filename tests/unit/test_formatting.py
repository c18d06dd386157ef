"""One formatter per kind of value: percentages keep a significant digit either sign."""

import pytest

from leakwatch.core.formatting import format_interval, format_percent


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        (0.0083, "0.8%"),
        (0.25, "25.0%"),
        (0.0, "0%"),
        (None, "—"),
        (-0.0237, "-2.4%"),  # a shortfall: as precise as the same rate above zero
        (-0.0006, "-0.06%"),
    ],
)
def test_percent(rate: float | None, shown: str) -> None:
    assert format_percent(rate) == shown


def test_interval_has_one_precision() -> None:
    assert format_interval(0.008, 0.006, 0.011) == "0.8% (0.6–1.1%)"
