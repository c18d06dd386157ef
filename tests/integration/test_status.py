"""`status` numbers equal an independent computation from the recorded rows."""

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import SampledEvent, VolumeCount
from leakwatch.views.status import build_status

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
LEAKS = {"missing", "unmatched_customer", "unmatched_metric", "duplicate", "mismatch"}
DECIDED = LEAKS | {"matched"}


def wilson(p: float, n: float, z: float = 1.959963984540054) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _rows(rng: random.Random) -> list[SampledEvent]:
    outcomes = ["matched"] * 40 + sorted(LEAKS) + ["pending", "error", "expired"]
    rows = []
    for i in range(600):
        event_type = rng.choice(["api_request", "tokens"])
        rows.append(
            SampledEvent(
                source=rng.choice(["gateway", "batch"]),
                transaction_id=f"t{i}",
                payload_hash=f"h{i}",
                customer_id=rng.choice(["acme", "globex", "hooli"]),
                event_type=event_type,
                event_timestamp=NOW - timedelta(days=3),
                # Stratified: tokens were sampled at a quarter of the rate.
                weight=4.0 if event_type == "tokens" else 1.0,
                outcome=rng.choice(outcomes),
                # A quarter of the rows fall outside the 24 h window.
                sampled_at=NOW - timedelta(hours=rng.choice([1, 5, 20, 30])),
            )
        )
    return rows


@pytest.mark.parametrize("seed", [1, 2])
def test_status_matches_an_independent_computation(sessions: SessionFactory, seed: int) -> None:
    rows = _rows(random.Random(seed))
    with transaction(sessions) as session:
        session.add_all(rows)
        # 7,000 events a day; today (NOW is noon) has half of them so far.
        for day in range(8):
            session.add(
                VolumeCount(
                    source="gateway",
                    event_type="api_request",
                    day=(NOW - timedelta(days=day)).date(),
                    events=3500 if day == 0 else 7000,
                )
            )
    view = build_status(sessions, now=NOW, window=timedelta(hours=24))
    inside = [r for r in rows if r.sampled_at >= NOW - timedelta(hours=24)]
    decided = [r for r in inside if r.outcome in DECIDED]
    leaks = [r for r in decided if r.outcome in LEAKS]
    weight_decided = sum(r.weight for r in decided)
    rate = sum(r.weight for r in leaks) / weight_decided
    n_eff = weight_decided**2 / sum(r.weight**2 for r in decided)
    lo, hi = wilson(rate, n_eff)

    assert view.overall.sampled == len(inside)
    assert view.overall.decided == len(decided)
    assert view.overall.leaks == len(leaks)
    assert view.overall.leak_rate == pytest.approx(rate)
    assert view.overall.lower == pytest.approx(lo)
    assert view.overall.upper == pytest.approx(hi)
    for outcome in ("pending", "error", "expired"):
        assert view.overall.counts.get(outcome, 0) == sum(1 for r in inside if r.outcome == outcome)

    gateway = next(r for r in view.by_source if r.group == "gateway")
    gw_decided = [r for r in decided if r.source == "gateway"]
    gw_rate = sum(r.weight for r in gw_decided if r.outcome in LEAKS) / sum(
        r.weight for r in gw_decided
    )
    assert gateway.leak_rate == pytest.approx(gw_rate)
    # Per-outcome rates are weighted like the leak rate, so they add up to it.
    assert sum(gateway.rates.values()) == pytest.approx(gw_rate)
    assert sum(view.overall.rates.values()) == pytest.approx(view.overall.leak_rate)
    # Only gateway's api_request events have a volume: 7,000 over the last 24 h,
    # at that segment's own rate (equal weights within it).
    seg = [r for r in gw_decided if r.event_type == "api_request"]
    seg_rate = sum(1 for r in seg if r.outcome in LEAKS) / len(seg)
    assert gateway.leaked_per_day == pytest.approx(seg_rate * 7000)
    assert view.overall.leaked_per_day == pytest.approx(seg_rate * 7000)

    api = next(r for r in view.by_event_type if r.group == "api_request")
    api_decided = [r for r in decided if r.event_type == "api_request"]
    assert api.decided == len(api_decided)
    # Equal weights within a type: the plain proportion and the textbook Wilson.
    api_leaks = sum(1 for r in api_decided if r.outcome in LEAKS)
    assert api.leak_rate == pytest.approx(api_leaks / len(api_decided))
    assert api.lower == pytest.approx(wilson(api_leaks / len(api_decided), len(api_decided))[0])

    customers = [r.group for r in view.top_customers]
    assert customers == sorted(
        customers,
        key=lambda c: -sum(1 for r in leaks if r.customer_id == c),
    )


def test_an_empty_store_says_so(sessions: SessionFactory) -> None:
    view = build_status(sessions, now=NOW, window=timedelta(hours=24))
    assert view.overall.sampled == 0
    assert view.overall.decided == 0
    assert (view.overall.lower, view.overall.upper) == (0.0, 1.0)
    assert view.open_alerts == []
