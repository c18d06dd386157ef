"""One scenario, every view: `status --json`, the alert message, the report JSON and
`/metrics` show the same leak rate, per-outcome rates and revenue at risk.

Stratified sampling (a common event type sampled at 1 in 40, a rare one in full),
several leaking outcomes, a per-event and a per-unit price. The window is the same
for every view: Sunday 2026-11-22 (UTC), read at Monday 00:00 — the last 24 h for
status, alerts and /metrics, and the whole of week 2026-W47's usage for the report
(the source started on that Sunday).
"""

import json
import random
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import col, select

from leakwatch.core.alerting import AlertRule, DecisionTest, RateKind
from leakwatch.core.events import Outcome
from leakwatch.core.formatting import format_count, format_money, format_percent
from leakwatch.core.pricing import Price
from leakwatch.daemon.metrics import DaemonMetrics, read_store_snapshot
from leakwatch.pipeline.alert import evaluate_alerts
from leakwatch.pipeline.report import build_report
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import Alert, Notification, SampledEvent, VolumeCount
from leakwatch.views.report_render import render_json
from leakwatch.views.status import build_status

NOW = datetime(2026, 11, 23, tzinfo=UTC)
SUNDAY = datetime(2026, 11, 22, tzinfo=UTC)
WINDOW = timedelta(hours=24)
PRICES = {"api_request": Price(0.002), "gpu_seconds": Price(0.0004, "seconds")}
# event type → (weight, {outcome: samples}, seconds per sample by outcome)
STRATA: dict[str, tuple[float, dict[Outcome, int]]] = {
    "api_request": (
        40.0,
        {
            Outcome.MATCHED: 270,
            Outcome.MISSING: 18,
            Outcome.UNMATCHED_METRIC: 6,
            Outcome.UNMATCHED_CUSTOMER: 6,
            Outcome.PENDING: 9,
        },
    ),
    "gpu_seconds": (
        1.0,
        {
            Outcome.MATCHED: 60,
            Outcome.UNMATCHED_CUSTOMER: 30,
            Outcome.UNMATCHED_METRIC: 10,
            Outcome.ERROR: 3,
        },
    ),
}
# Sunday's counted volume: events, summed quantity.
VOLUME = {"api_request": (12_000, 0.0), "gpu_seconds": (100, 13_000.0)}
RATES = (
    RateKind.LEAK_RATE,
    RateKind.MISSING_RATE,
    RateKind.UNMATCHED_CUSTOMER_RATE,
    RateKind.UNMATCHED_METRIC_RATE,
)
# Decided on the interval, so each rule fires on this one look: what the alerts say
# is under test here, not when the sequential test would speak.
RULES = [
    AlertRule(
        name=rate.value,
        rate=rate,
        threshold=0.001,
        window=WINDOW,
        min_samples=10,
        decision=DecisionTest.INTERVAL,
    )
    for rate in RATES
]


def _record(sessions: SessionFactory) -> None:
    drawn = [
        (event_type, weight, outcome)
        for event_type, (weight, outcomes) in STRATA.items()
        for outcome, count in outcomes.items()
        for _ in range(count)
    ]
    # Spread over the day in a shuffled order, as cycles would draw them.
    random.Random(7).shuffle(drawn)
    with transaction(sessions) as session:
        for n, (event_type, weight, outcome) in enumerate(drawn):
            at = SUNDAY + timedelta(seconds=37 * (n + 1))
            session.add(
                SampledEvent(
                    source="gateway",
                    transaction_id=f"t{n}",
                    payload_hash=f"h{n}",
                    customer_id=f"cust-{n % 7}",
                    event_type=event_type,
                    event_timestamp=at - timedelta(minutes=30),
                    weight=weight,
                    quantity=(200.0 if outcome.is_leak else 100.0)
                    if event_type == "gpu_seconds"
                    else None,
                    outcome=outcome.value,
                    sampled_at=at,
                    last_checked_at=at,
                )
            )
        for event_type, (events, quantity) in VOLUME.items():
            session.add(
                VolumeCount(
                    source="gateway",
                    event_type=event_type,
                    day=SUNDAY.date(),
                    events=events,
                    quantity_sum=quantity,
                )
            )


def _metrics(sessions: SessionFactory) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    metrics = DaemonMetrics()
    with transaction(sessions) as session:
        metrics.set_snapshot(read_store_snapshot(session, now=NOW, prices=PRICES))
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _alert_texts(sessions: SessionFactory) -> dict[str, tuple[dict[str, object], str]]:
    """Rule name → (the facts stored with the alert, the text of its fire message)."""
    found: dict[str, tuple[dict[str, object], str]] = {}
    with transaction(sessions) as session:
        for alert in session.exec(select(Alert)).all():
            [note] = session.exec(
                select(Notification).where(
                    col(Notification.alert_id) == alert.id, col(Notification.kind) == "fire"
                )
            ).all()
            message = note.payload["message"]
            blocks = message.get("blocks") or []
            text = "\n".join(
                [str(message["text"])]
                + [b["text"]["text"] for b in blocks if isinstance(b.get("text"), dict)]
            )
            found[alert.rule_name] = (dict(alert.observation), text)
    return found


def test_every_view_shows_the_same_numbers(sessions: SessionFactory) -> None:
    _record(sessions)

    status = json.loads(
        json.dumps(
            build_status(sessions, now=NOW, window=WINDOW, prices=PRICES, currency="$").to_dict()
        )
    )["overall"]
    results = evaluate_alerts(sessions, RULES, NOW, prices=PRICES, deliver=False)
    assert [r.notification.value if r.notification else None for r in results] == ["fire"] * 4
    alerts = _alert_texts(sessions)
    report = json.loads(
        render_json(
            build_report(
                sessions,
                week="2026-W47",
                now=NOW,
                timezone="UTC",
                prices=PRICES,
                checks_every=None,
            )
        )
    )
    totals = report["totals"]
    metrics = _metrics(sessions)

    def gauge(name: str, **labels: str) -> float:
        return metrics[(name, tuple(sorted(labels.items())))]

    # The leak rate and its interval.
    rate = status["leak_rate"]
    assert totals["leak_rate"]["rate"] == pytest.approx(rate)
    assert totals["leak_rate"]["interval"]["lo"] == pytest.approx(status["lower"])
    assert totals["leak_rate"]["interval"]["hi"] == pytest.approx(status["upper"])
    assert gauge("leakwatch_leak_rate", source="gateway") == pytest.approx(rate)
    facts, text = alerts["leak_rate"]
    assert facts["rate"] == pytest.approx(rate)
    assert (facts["lower"], facts["upper"]) == pytest.approx((status["lower"], status["upper"]))
    assert format_percent(rate) in text
    # Weighted (Horvitz–Thompson): the fully sampled rare type does not swamp the
    # estimate, as the unweighted 70 / 400 = 17.5% would.
    assert rate == pytest.approx((40 * (18 + 6 + 6) + 30 + 10) / (40 * 300 + 100))

    # Per-outcome rates: weighted like the leak rate, so they add up to it.
    by_outcome = report["trend"][-1]["by_outcome"]
    assert sum(status["rates"].values()) == pytest.approx(rate)
    for kind in RATES[1:]:
        outcome = kind.value.removesuffix("_rate")
        value = status["rates"][kind.value]
        assert by_outcome[outcome] == pytest.approx(value)
        assert gauge("leakwatch_outcome_rate", source="gateway", outcome=outcome) == (
            pytest.approx(value)
        )
        facts, text = alerts[kind.value]
        assert facts["rate"] == pytest.approx(value)
        assert format_percent(value) in text

    # Leaked events and revenue at risk over the day (status and /metrics per day).
    facts, text = alerts["leak_rate"]
    leaked = totals["estimated_leaked_events"]["point"]
    revenue = totals["revenue_at_risk"]["point"]
    assert revenue > 0
    assert status["leaked_per_day"] == pytest.approx(leaked)
    assert status["revenue_at_risk_per_day"] == pytest.approx(revenue)
    assert gauge("leakwatch_leaked_events_per_day", source="gateway") == pytest.approx(leaked)
    assert gauge("leakwatch_revenue_at_risk_per_day", source="gateway") == pytest.approx(revenue)
    assert facts["estimated_leaked_events"] == pytest.approx(leaked)
    assert facts["revenue_at_risk"] == pytest.approx(revenue)
    assert format_count(leaked) in text and format_money(revenue) in text
