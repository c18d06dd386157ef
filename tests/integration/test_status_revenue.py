"""`status` prices leaks per event type: per event, or per unit of a quantity property."""

from datetime import UTC, datetime, timedelta

import pytest

from leakwatch.core.pricing import Price
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import SampledEvent, VolumeCount
from leakwatch.views.status import build_status

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
# event type → (matched, missing) samples
SAMPLES = {"api_request": (90, 10), "gpu_seconds": (45, 5), "storage_gb": (8, 2)}
# event type → (events, quantity) per full day over the last 7 days; today (NOW is noon)
# has half a day so far, so the last 24 h hold one day's worth.
VOLUME = {"api_request": (7000, 0.0), "gpu_seconds": (300, 12_000.0), "storage_gb": (50, 0.0)}


@pytest.fixture
def recorded(sessions: SessionFactory) -> SessionFactory:
    with transaction(sessions) as session:
        for event_type, (matched, missing) in SAMPLES.items():
            for i in range(matched + missing):
                session.add(
                    SampledEvent(
                        source="gateway",
                        transaction_id=f"{event_type}-{i}",
                        payload_hash=f"h{i}",
                        customer_id="acme",
                        event_type=event_type,
                        event_timestamp=NOW - timedelta(days=1),
                        weight=1.0,
                        outcome="matched" if i < matched else "missing",
                        sampled_at=NOW - timedelta(hours=1),
                    )
                )
            events, quantity = VOLUME[event_type]
            for day in range(8):
                share = 0.5 if day == 0 else 1.0
                session.add(
                    VolumeCount(
                        source="gateway",
                        event_type=event_type,
                        day=(NOW - timedelta(days=day)).date(),
                        events=round(events * share),
                        quantity_sum=quantity * share,
                    )
                )
    return sessions


def test_revenue_at_risk_per_day_by_event_type_and_in_total(recorded: SessionFactory) -> None:
    prices = {"api_request": Price(0.002), "gpu_seconds": Price(0.0004, "seconds")}
    view = build_status(recorded, now=NOW, window=timedelta(hours=24), prices=prices, currency="€")
    by_type = {r.group: r for r in view.by_event_type}
    api = 0.10 * 7000 * 0.002
    gpu = 0.10 * 12_000 * 0.0004
    assert by_type["api_request"].revenue_at_risk_per_day == pytest.approx(api)
    assert by_type["gpu_seconds"].revenue_at_risk_per_day == pytest.approx(gpu)
    # No price: no money, but the leaked events still count.
    assert by_type["storage_gb"].revenue_at_risk_per_day is None
    assert by_type["storage_gb"].leaked_per_day == pytest.approx(0.2 * 50)
    assert view.overall.revenue_at_risk_per_day == pytest.approx(api + gpu)
    body = view.to_dict()
    assert body["overall"]["revenue_at_risk_per_day"] == pytest.approx(api + gpu)
    assert body["currency"] == "€"


def test_without_prices_there_is_no_money(recorded: SessionFactory) -> None:
    view = build_status(recorded, now=NOW, window=timedelta(hours=24))
    assert view.overall.revenue_at_risk_per_day is None
    assert all(r.revenue_at_risk_per_day is None for r in view.by_event_type)
