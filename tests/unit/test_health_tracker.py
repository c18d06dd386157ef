"""What a cycle says about Metronome's health: the share of failed lookup batches."""

from datetime import UTC, datetime

import pytest

from leakwatch.core.results import CycleSummary
from leakwatch.pipeline.runtime import HealthTracker

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def summary(*, answered: int, failed: int, calls: int, errors: int = 0) -> CycleSummary:
    return CycleSummary(
        run_id=1,
        started_at=NOW,
        search_requests=calls,
        search_errors=errors,
        search_batches_answered=answered,
        search_batches_failed=failed,
    )


@pytest.mark.parametrize(
    ("cycle", "unreachable"),
    [
        # A total outage with max_retries = 4: 3 batches × 5 attempts, all failed. Per
        # attempt that scored 3 / 15 = 0.2 and never crossed the default 0.2.
        (summary(answered=0, failed=3, calls=15, errors=3), True),
        # Every batch still failing when the deadline cut the retries: no error recorded.
        (summary(answered=0, failed=2, calls=6), True),
        (summary(answered=9, failed=1, calls=14, errors=1), False),  # 10%: a blip
        (summary(answered=7, failed=3, calls=22, errors=3), True),  # 30%
        (summary(answered=5, failed=0, calls=9), False),  # retried, then answered
    ],
    ids=["total-outage", "cut-by-deadline", "one-in-ten", "three-in-ten", "retries-won"],
)
def test_the_failure_share_is_per_lookup_batch(cycle: CycleSummary, unreachable: bool) -> None:
    tracker = HealthTracker()
    tracker.observe(cycle, error_rate_limit=0.2)
    assert tracker.api_unreachable is unreachable
    assert ("metronome_unreachable" in tracker.problems()) is unreachable


def test_a_cycle_that_looked_nothing_up_says_nothing() -> None:
    tracker = HealthTracker()
    tracker.observe(summary(answered=0, failed=3, calls=15), error_rate_limit=0.2)
    tracker.observe(summary(answered=0, failed=0, calls=0), error_rate_limit=0.2)
    assert tracker.api_unreachable is True  # unchanged until a cycle measures again
    tracker.observe(summary(answered=4, failed=0, calls=4), error_rate_limit=0.2)
    assert tracker.api_unreachable is False
    assert tracker.problems() == {}
