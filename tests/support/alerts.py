"""Alert test inputs: a rate rule, prices, and sampled outcomes written straight to the store."""

from datetime import timedelta

from leakwatch.clock import FakeClock
from leakwatch.core.alerting import AlertRule, DecisionTest, RateKind
from leakwatch.core.events import Outcome
from leakwatch.core.pricing import Price
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import SampledEvent

PRICES = {"api_request": Price(0.002)}


RULE = AlertRule(
    name="leak rate",
    rate=RateKind.LEAK_RATE,
    threshold=0.05,
    window=timedelta(hours=24),
    min_samples=100,
    repeat_interval=timedelta(hours=4),
    # The alert flow tests count on the interval's one-look thresholds; the sequential
    # test (the default) has its own tests in test_alerts.py.
    decision=DecisionTest.INTERVAL,
)


def add_samples(
    sessions: SessionFactory,
    clock: FakeClock,
    *,
    leaks: int,
    matched: int,
    event_type: str = "api_request",
    outcome: Outcome = Outcome.MISSING,
    customer_id: str = "cust-1",
) -> None:
    """Record decided samples drawn just now."""
    now = clock.now()
    with transaction(sessions) as session:
        for i in range(leaks + matched):
            n = next(_serial)
            session.add(
                SampledEvent(
                    source="gateway",
                    transaction_id=f"txn-<{n}>&" if i == leaks - 1 else f"txn-{n}",
                    payload_hash=f"{n:032x}",
                    customer_id=customer_id,
                    event_type=event_type,
                    event_timestamp=now - timedelta(hours=1),
                    outcome=(outcome if i < leaks else Outcome.MATCHED).value,
                    sampled_at=now - timedelta(seconds=1),
                    last_checked_at=now,
                )
            )


_serial = iter(range(10**9))
