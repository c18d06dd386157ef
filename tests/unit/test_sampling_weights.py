"""Stratified draws with floors: do the inclusion weights give unbiased estimates?

Strata of very different sizes and leak rates, a floor that heavily over-samples the
rare ones: the unweighted sample proportion is far off, the Horvitz–Thompson estimate
(sum of weights of leaking draws) must average to the true count over repeated draws.
"""

import json
import random
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leakwatch.sources import JsonlSourceSpec, make_source

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
# stratum: (events, leaking events) — rare strata leak far more, as a broken alias does.
STRATA = {"common": (1500, 30), "mid": (80, 20), "rare": (20, 10)}
DRAWS = 150
SAMPLE = 60
FLOOR = 12


def write_log(path: Path) -> int:
    rng = random.Random(5)
    rows = [
        (stratum, index < leaking)
        for stratum, (count, leaking) in STRATA.items()
        for index in range(count)
    ]
    rng.shuffle(rows)
    start = NOW - timedelta(days=5)
    with path.open("w") as handle:
        for i, (stratum, leaks) in enumerate(rows):
            document = {
                "transaction_id": f"t{i}",
                "customer_id": "c",
                "event_type": stratum,
                "timestamp": (start + i * timedelta(minutes=2)).isoformat(),
                "properties": {"leak": leaks},
            }
            handle.write(json.dumps(document) + "\n")
    return sum(leaking for _, leaking in STRATA.values())


@pytest.mark.parametrize("tailed", [True, False], ids=["tail-counted", "before-the-tail"])
def test_horvitz_thompson_estimate_is_unbiased_and_the_naive_one_is_not(
    tmp_path: Path, tailed: bool
) -> None:
    """Both ways a stratified draw gets its stratum sizes: the tail's index (rejection
    from uniform seeks, the rare stratum from its offsets) and, before the tail has
    counted the log, a pilot of uniform draws."""
    log = tmp_path / "events.jsonl"
    true_leaking = write_log(log)
    population = sum(count for count, _ in STRATA.values())
    source = make_source(
        JsonlSourceSpec(
            name="s", path=str(log), max_age=timedelta(days=10), stratify_by="event_type"
        ),
        state_dir=tmp_path,
    )
    if tailed:
        source.scan_new((), now=NOW)
    weighted: list[float] = []
    naive: list[float] = []
    for seed in range(DRAWS):
        result = source.sample(
            SAMPLE, now=NOW, rng=random.Random(seed), stratify_by="event_type", floor=FLOOR
        )
        assert len(result.events) == SAMPLE
        leaking = [e for e in result.events if e.event.properties["leak"]]
        weighted.append(sum(e.weight for e in leaking))
        naive.append(population * len(leaking) / len(result.events))
    standard_error = statistics.stdev(weighted) / DRAWS**0.5
    assert abs(statistics.fmean(weighted) - true_leaking) < 4 * standard_error
    # The test has power: ignoring the weights over-counts the rare, leaky strata.
    naive_error = statistics.stdev(naive) / DRAWS**0.5
    assert statistics.fmean(naive) - true_leaking > 6 * naive_error
