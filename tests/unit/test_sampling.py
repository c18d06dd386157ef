"""The pure sampling maths: window, length-biased acceptance, allocation, reservoirs."""

import bisect
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from scipy.stats import chisquare  # type: ignore[import-untyped,unused-ignore]

from leakwatch.core.sampling import (
    Reservoir,
    StratifiedReservoir,
    accept_by_length,
    allocate,
    estimate_population,
    inclusion_weight,
    parse_stratify_by,
    sampling_window,
)

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def test_window_is_open_at_both_edges() -> None:
    window = sampling_window(NOW, timedelta(minutes=10), timedelta(days=33))
    assert window.start == NOW - timedelta(days=33)
    assert window.end == NOW - timedelta(minutes=10)
    assert not window.contains(window.start)
    assert not window.contains(window.end)
    assert window.contains(window.start + timedelta(microseconds=1))
    assert window.contains(window.end - timedelta(microseconds=1))


@pytest.mark.parametrize(
    ("settle", "max_age", "message"),
    [
        (timedelta(minutes=10), timedelta(days=34), "33 days"),
        (timedelta(days=2), timedelta(days=1), "shorter"),
        (timedelta(seconds=-1), timedelta(days=1), "negative"),
    ],
)
def test_window_rejects_bad_settings(settle: timedelta, max_age: timedelta, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sampling_window(NOW, settle, max_age)


def test_window_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        sampling_window(NOW.replace(tzinfo=None), timedelta(0), timedelta(days=1))


def test_length_biased_rejection_is_uniform_over_lines() -> None:
    """Uniform bytes + accept c/len(line) must give every line the same chance."""
    rng = random.Random(1234)
    lengths = [rng.randint(40, 900) for _ in range(50)]
    starts = []
    total = 0
    for length in lengths:
        starts.append(total)
        total += length
    hits: Counter[int] = Counter()
    while sum(hits.values()) < 20_000:
        offset = rng.randrange(total)
        line = bisect.bisect_right(starts, offset) - 1
        if accept_by_length(lengths[line], min(lengths), rng):
            hits[line] += 1
    observed = [hits[i] for i in range(len(lengths))]
    assert chisquare(observed).pvalue > 0.001
    # Without the correction the draw is length-biased: the test above can fail.
    biased: Counter[int] = Counter()
    for _ in range(20_000):
        biased[bisect.bisect_right(starts, rng.randrange(total)) - 1] += 1
    assert chisquare([biased[i] for i in range(len(lengths))]).pvalue < 1e-6


@pytest.mark.parametrize(
    ("populations", "n", "floor", "expected"),
    [
        ({"a": 9000, "b": 900, "c": 100}, 100, 0, {"a": 90, "b": 9, "c": 1}),
        ({"a": 9990, "b": 10}, 100, 5, {"a": 95, "b": 5}),
        ({"a": 9990, "b": 2}, 100, 5, {"a": 98, "b": 2}),  # floor capped by the stratum
        ({"a": 100, "b": 100, "c": 100}, 6, 5, {"a": 2, "b": 2, "c": 2}),  # floors > n
        ({"a": 1000, "b": 0}, 10, 3, {"a": 10}),  # empty strata are not active
        ({"a": 3, "b": 4}, 100, 1, {"a": 3, "b": 4}),  # never more than a stratum holds
        ({}, 10, 2, {}),
    ],
)
def test_allocate(
    populations: dict[str, float], n: int, floor: int, expected: dict[str, int]
) -> None:
    assert allocate(populations, n, floor) == expected


def test_allocate_neyman_follows_weights() -> None:
    allocation = allocate({"a": 1000, "b": 1000}, 100, 0, weights={"a": 3.0, "b": 1.0})
    assert allocation == {"a": 75, "b": 25}


def test_allocate_total_is_sample_size_when_population_allows() -> None:
    rng = random.Random(5)
    for _ in range(200):
        populations = {f"s{i}": float(rng.randint(0, 500)) for i in range(rng.randint(1, 12))}
        n = rng.randint(0, 400)
        floor = rng.randint(0, 10)
        allocation = allocate(populations, n, floor)
        assert sum(allocation.values()) == min(n, int(sum(populations.values())))
        assert all(allocation[k] <= populations[k] for k in allocation)


def test_inclusion_weight_and_population_estimate() -> None:
    assert inclusion_weight(1000, 10) == 100
    with pytest.raises(ValueError):
        inclusion_weight(1000, 0)
    # 10 lines of 100 bytes: every draw sees 1/100, B = 1000 bytes.
    assert estimate_population(1000, [0.01] * 7) == pytest.approx(10)
    assert estimate_population(1000, []) == 0


def test_reservoir_is_uniform() -> None:
    rng = random.Random(99)
    counts: Counter[int] = Counter()
    for _ in range(3000):
        reservoir: Reservoir[int] = Reservoir(3, rng)
        for item in range(30):
            reservoir.offer(item)
        counts.update(reservoir.items)
    assert chisquare([counts[i] for i in range(30)]).pvalue > 0.001


def test_stratified_reservoir_draws_the_allocation() -> None:
    rng = random.Random(3)
    strata: StratifiedReservoir[int] = StratifiedReservoir(10, rng)
    for item in range(1000):
        strata.offer("rare" if item % 100 == 0 else "common", item)
    populations = strata.populations()
    assert populations == {"rare": 10, "common": 990}
    drawn = strata.draw(allocate(populations, 10, 4))
    assert len(drawn["rare"]) == 4
    assert len(drawn["common"]) == 6
    assert all(item % 100 == 0 for item in drawn["rare"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ()),
        ("", ()),
        ("event_type", ("event_type",)),
        ("event_type, customer_id", ("event_type", "customer_id")),
    ],
)
def test_parse_stratify_by(text: str | None, expected: tuple[str, ...]) -> None:
    assert parse_stratify_by(text) == expected


@pytest.mark.parametrize("text", ["region", "event_type,event_type"])
def test_parse_stratify_by_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_stratify_by(text)
