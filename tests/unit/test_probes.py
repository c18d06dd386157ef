"""Follow-up probes: who gets them, how many, and how they stay out of overall rates."""

import pytest

from leakwatch.core.events import Outcome
from leakwatch.core.sampling import (
    Probe,
    ProbeTarget,
    allocate_within,
    plan_probes,
    probe_reserve,
    probe_stratum,
)
from leakwatch.core.stats import OutcomeTally


@pytest.mark.parametrize(
    ("targets", "budget", "per_group", "overall", "expected"),
    [
        # Firing groups first (their clear test), then the nearest to firing.
        (
            [
                ProbeTarget("customer_id", "a", 0.2),
                ProbeTarget("customer_id", "b", 0.7),
                ProbeTarget("event_type", "gpu", 1.0, firing=True),
            ],
            25,
            10,
            0.0,
            [
                Probe("event_type", "gpu", 10),
                Probe("customer_id", "b", 10),
                Probe("customer_id", "a", 5),
            ],
        ),
        # The budget runs out: the least urgent get nothing.
        (
            [ProbeTarget("customer_id", "a", 0.2), ProbeTarget("customer_id", "b", 0.7)],
            8,
            10,
            0.0,
            [Probe("customer_id", "b", 8)],
        ),
        # Two rules over the same field name the group once.
        (
            [ProbeTarget("customer_id", "a", 0.2), ProbeTarget("customer_id", "a", 0.5)],
            30,
            10,
            0.0,
            [Probe("customer_id", "a", 10)],
        ),
        # A group no nearer to firing than all traffic is left to the main draw.
        (
            [
                ProbeTarget("customer_id", "a", 0.2),
                ProbeTarget("customer_id", "b", 0.7),
                ProbeTarget("customer_id", "c", 0.1, firing=True),
            ],
            30,
            10,
            0.5,
            [Probe("customer_id", "c", 10), Probe("customer_id", "b", 10)],
        ),
        ([], 30, 10, 0.0, []),
        ([ProbeTarget("customer_id", "a", 0.2)], 0, 10, 0.0, []),
    ],
)
def test_plan_probes(
    targets: list[ProbeTarget],
    budget: int,
    per_group: int,
    overall: float,
    expected: list[Probe],
) -> None:
    assert plan_probes(targets, budget, per_group, overall) == expected


@pytest.mark.parametrize(
    ("draw", "share", "overall", "expected"),
    [(67, 0.2, 0.0, 13), (67, 0.2, 0.5, 6), (67, 0.2, 1.0, 0), (67, 0.2, 3.0, 0), (67, 0, 0, 0)],
)
def test_the_probe_reserve_yields_to_rising_all_traffic_evidence(
    draw: int, share: float, overall: float, expected: int
) -> None:
    assert probe_reserve(draw, share, overall) == expected


def test_a_probe_draws_only_within_its_stratum_and_no_more_than_it_holds() -> None:
    populations = {"a": 100.0, "b": 3.0, "c": 0.0}
    assert allocate_within(populations, "b", 10) == {"a": 0, "b": 3}
    assert allocate_within(populations, "a", 10) == {"a": 10, "b": 0}
    assert allocate_within(populations, "gone", 10) == {"a": 0, "b": 0}


def test_probes_have_their_own_stratum_and_stay_out_of_the_weighted_rate() -> None:
    assert probe_stratum("customer_id") == "probe:customer_id"
    with pytest.raises(ValueError, match="cannot probe by"):
        probe_stratum("source")
    # Ten main samples at weight 50 (one leak), then twenty probes at weight 0 (all
    # leaks): the Horvitz–Thompson rate is still the main draw's 10%.
    tally = OutcomeTally()
    tally.add(Outcome.MATCHED, 9, 450.0, 9 * 2500.0)
    tally.add(Outcome.UNMATCHED_CUSTOMER, 1, 50.0, 2500.0)
    tally.add(Outcome.UNMATCHED_CUSTOMER, 20, 0.0, 0.0)
    estimate = tally.rate({Outcome.UNMATCHED_CUSTOMER})
    assert estimate is not None
    assert estimate.rate == pytest.approx(0.1)
    assert estimate.effective_n == pytest.approx(10)
