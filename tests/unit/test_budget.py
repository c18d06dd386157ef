"""The search budget is shared fairly and never exceeded."""

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leakwatch.core.budget import cycle_budget, fair_shares, split_budget


def test_cycle_budget_spends_the_rate_over_the_allowed_share_of_the_interval() -> None:
    budget = cycle_budget(
        requests_per_second=1.0, max_ids_per_request=100, every=timedelta(minutes=15), share=0.8
    )
    assert (budget.requests, budget.ids, budget.seconds) == (720, 72_000, 720.0)


def test_a_tiny_budget_still_allows_one_request() -> None:
    budget = cycle_budget(
        requests_per_second=0.001, max_ids_per_request=50, every=timedelta(seconds=10), share=0.5
    )
    assert (budget.requests, budget.ids) == (1, 50)


@pytest.mark.parametrize(
    ("capacity", "demands", "expected"),
    [
        (100, {"a": 10, "b": 500}, {"a": 10, "b": 90}),
        (100, {"a": 500, "b": 500}, {"a": 50, "b": 50}),
        (101, {"a": 500, "b": 500}, {"a": 51, "b": 50}),
        (10, {"a": 0, "b": 3, "c": 100}, {"a": 0, "b": 3, "c": 7}),
        (0, {"a": 5}, {"a": 0}),
        (5, {}, {}),
    ],
)
def test_fair_shares_fill_water_levels(
    capacity: int, demands: dict[str, int], expected: dict[str, int]
) -> None:
    assert fair_shares(capacity, demands) == expected


@given(
    capacity=st.integers(min_value=0, max_value=10_000),
    demands=st.dictionaries(st.text(min_size=1, max_size=3), st.integers(0, 5_000), max_size=6),
)
def test_fair_shares_never_exceed_capacity_or_demand(
    capacity: int, demands: dict[str, int]
) -> None:
    shares = fair_shares(capacity, demands)
    assert sum(shares.values()) == min(capacity, sum(demands.values()))
    assert all(0 <= shares[k] <= demands[k] for k in demands)


@pytest.mark.parametrize(
    ("capacity", "recheck", "samples", "expected"),
    [
        # Both sides want more than there is: re-checks get their reserved share.
        (1000, 5000, {"a": 5000}, (300, {"a": 700})),
        # Few re-checks: sources take the rest.
        (1000, 50, {"a": 5000, "b": 5000}, (50, {"a": 475, "b": 475})),
        # Sources want little: re-checks take what is left over.
        (1000, 5000, {"a": 100}, (900, {"a": 100})),
    ],
)
def test_split_budget_reserves_for_rechecks_and_shares_the_rest(
    capacity: int, recheck: int, samples: dict[str, int], expected: tuple[int, dict[str, int]]
) -> None:
    assert (
        split_budget(capacity, recheck_demand=recheck, sample_demands=samples, recheck_share=0.3)
        == expected
    )


@given(
    capacity=st.integers(0, 5000),
    recheck=st.integers(0, 5000),
    samples=st.dictionaries(st.sampled_from("abcd"), st.integers(0, 3000), max_size=4),
    share=st.floats(0, 1),
)
def test_split_budget_never_overspends(
    capacity: int, recheck: int, samples: dict[str, int], share: float
) -> None:
    rechecks, shares = split_budget(
        capacity, recheck_demand=recheck, sample_demands=samples, recheck_share=share
    )
    assert 0 <= rechecks <= recheck
    assert rechecks + sum(shares.values()) <= capacity
