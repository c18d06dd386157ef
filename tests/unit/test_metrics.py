"""Daemon metrics and the /healthz decision: what a scrape shows, what the probe says."""

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from leakwatch.core.results import CycleSummary
from leakwatch.daemon.health import Role, StatusSnapshot, judge_health, parse_address
from leakwatch.daemon.metrics import REASON_BUCKETS, DaemonMetrics, StoreSnapshot, sample_value

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
EVERY = timedelta(minutes=15)
STALE = EVERY * 3


def test_the_search_observer_counts_calls_429s_retries_failures_and_latency() -> None:
    metrics = DaemonMetrics()
    observer = metrics.observer()
    observer.on_call("200", 0.2)
    observer.on_call("200", 0.4)
    observer.on_call("429", 0.01)
    observer.on_rate_limited(1.5)
    observer.on_retry("429")
    observer.on_call("timeout", 10.0)
    observer.on_failed("timeout", 20)
    r = metrics.registry
    assert sample_value(r, "leakwatch_search_calls_total", status="200") == 2
    assert sample_value(r, "leakwatch_search_calls_total", status="429") == 1
    assert sample_value(r, "leakwatch_search_calls_total", status="timeout") == 1
    assert sample_value(r, "leakwatch_search_rate_limited_total") == 1
    assert sample_value(r, "leakwatch_search_retries_total", reason="rate_limited") == 1
    assert sample_value(r, "leakwatch_search_failed_ids_total", reason="timeout") == 20
    assert sample_value(r, "leakwatch_search_latency_seconds_count") == 4
    assert sample_value(r, "leakwatch_search_latency_seconds_sum") == pytest.approx(10.61)
    assert sample_value(r, "leakwatch_search_latency_seconds_bucket", le="0.25") == 2


def test_a_finished_cycle_sets_duration_verdicts_and_last_success() -> None:
    metrics = DaemonMetrics()
    summary = CycleSummary(
        run_id=1,
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=42),
        status="finished",
        verdicts=Counter({"matched": 30, "missing": 2}),
    )
    metrics.observe_cycle(summary)
    failed = CycleSummary(
        run_id=2, started_at=NOW, finished_at=NOW + timedelta(seconds=5), status="failed"
    )
    metrics.observe_cycle(failed)
    r = metrics.registry
    assert sample_value(r, "leakwatch_cycles_total", status="finished") == 1
    assert sample_value(r, "leakwatch_cycles_total", status="failed") == 1
    assert sample_value(r, "leakwatch_cycle_duration_seconds_sum") == 47
    assert sample_value(r, "leakwatch_verdicts_total", outcome="matched") == 30
    assert sample_value(r, "leakwatch_verdicts_total", outcome="missing") == 2
    assert sample_value(r, "leakwatch_verdicts_total", outcome="expired") == 0
    # The failed cycle does not move the last-success time.
    expected = (NOW + timedelta(seconds=42)).timestamp()
    assert sample_value(r, "leakwatch_last_successful_cycle_timestamp_seconds") == expected


def test_store_figures_are_served_from_the_last_snapshot() -> None:
    metrics = DaemonMetrics()
    r = metrics.registry
    assert sample_value(r, "leakwatch_outbox_backlog", status="pending") == 0
    assert sample_value(r, "leakwatch_leak_rate", source="gateway") is None
    metrics.set_snapshot(
        StoreSnapshot(
            taken_at=NOW,
            samples={("gateway", "matched"): 95, ("gateway", "missing"): 5},
            leak_rate={"gateway": 0.05},
            outbox={"pending": 3, "dead": 1},
            bad_lines={("gateway", "not_json"): 7},
        )
    )
    assert sample_value(r, "leakwatch_samples", source="gateway", outcome="matched") == 95
    assert sample_value(r, "leakwatch_leak_rate", source="gateway") == 0.05
    assert sample_value(r, "leakwatch_outbox_backlog", status="pending") == 3
    assert sample_value(r, "leakwatch_outbox_backlog", status="dead") == 1
    assert sample_value(r, "leakwatch_bad_lines_total", source="gateway", reason="not_json") == 7
    assert sample_value(r, "leakwatch_store_snapshot_timestamp_seconds") == NOW.timestamp()


def test_the_exposition_parses_and_holds_only_our_metrics() -> None:
    metrics = DaemonMetrics()
    metrics.leader.set(1)
    text = generate_latest(metrics.registry).decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert "leakwatch_leader" in names
    # Our own registry: no process_* or python_* from the global default registry.
    assert all(name.startswith("leakwatch_") for name in names)
    # Two daemons in one process (tests) do not collide on a global registry.
    DaemonMetrics()


def status(
    role: Role, *, leader_for: timedelta | None = None, success_ago: timedelta | None = None
) -> StatusSnapshot:
    return StatusSnapshot(
        role=role,
        started_at=NOW - timedelta(hours=5),
        leader_since=NOW - leader_for if leader_for is not None else None,
        last_success_at=NOW - success_ago if success_ago is not None else None,
    )


def test_a_leader_that_cannot_reach_metronome_is_degraded_with_the_reason() -> None:
    """Still 200 (a restart cannot bring Metronome back), but it says what is wrong."""
    problem = {"metronome_unreachable": "3 of 3 lookup batches failed in the last cycle"}
    view = replace(
        status(Role.LEADER, leader_for=timedelta(hours=2), success_ago=timedelta(minutes=1)),
        problems=problem,
    )
    verdict = judge_health(view, now=NOW, stale_after=STALE)
    assert verdict.http_status == 200
    assert verdict.body["status"] == "degraded"
    assert verdict.body["problems"] == problem
    stale = replace(view, last_success_at=NOW - timedelta(hours=1))
    assert judge_health(stale, now=NOW, stale_after=STALE).body["status"] == "unhealthy"
    fine = replace(view, problems={})
    assert judge_health(fine, now=NOW, stale_after=STALE).body["status"] == "ok"


@pytest.mark.parametrize(
    ("view", "healthy"),
    [
        (status(Role.FOLLOWER), True),
        (status(Role.FOLLOWER, success_ago=timedelta(days=3)), True),
        (status(Role.STARTING), True),
        (status(Role.STOPPING), False),
        (status(Role.LEADER, leader_for=timedelta(minutes=1)), True),
        (status(Role.LEADER, leader_for=timedelta(minutes=46)), False),
        (
            status(Role.LEADER, leader_for=timedelta(hours=2), success_ago=timedelta(minutes=44)),
            True,
        ),
        (
            status(Role.LEADER, leader_for=timedelta(hours=2), success_ago=timedelta(minutes=45)),
            True,
        ),
        (
            status(Role.LEADER, leader_for=timedelta(hours=2), success_ago=timedelta(minutes=46)),
            False,
        ),
        # A new leader is judged from when it took over, not the old leader's last cycle.
        (
            status(Role.LEADER, leader_for=timedelta(minutes=2), success_ago=timedelta(hours=9)),
            True,
        ),
    ],
    ids=[
        "follower",
        "follower-old-cycle",
        "starting",
        "stopping",
        "new-leader",
        "leader-never-succeeded",
        "leader-recent",
        "leader-at-limit",
        "leader-stale",
        "fresh-takeover",
    ],
)
def test_health_decision(view: StatusSnapshot, healthy: bool) -> None:
    verdict = judge_health(view, now=NOW, stale_after=STALE)
    assert verdict.healthy is healthy
    assert verdict.http_status == (200 if healthy else 503)
    assert verdict.body["alive"] is True
    assert verdict.body["role"] == view.role.value
    if view.last_success_at is not None:
        age = (NOW - view.last_success_at).total_seconds()
        assert verdict.body["last_successful_cycle_age_s"] == age
    else:
        assert verdict.body["last_successful_cycle_age_s"] is None


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9108", ("127.0.0.1", 9108)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9108", ("::1", 9108)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


def test_failure_reasons_are_bucketed_so_labels_stay_few() -> None:
    metrics = DaemonMetrics()
    observer = metrics.observer()
    reasons = [
        "HTTP 400: customer 'x' unknown",
        "HTTP 400: customer 'y' unknown",
        "HTTP 422: <html>proxy says no</html> (gave up after 5 attempts)",
        "HTTP 503 (gave up after 5 attempts)",
        "timed out (gave up after 5 attempts)",
        "connection error (ConnectError)",
        "malformed answer: item 3 has no transaction_id",
        "rate limited 6 times in a row",
        "HTTP 401",
        "something new",
    ]
    for reason in reasons:
        observer.on_failed(reason, 1)
        observer.on_retry(reason)
    text = generate_latest(metrics.registry).decode()
    labels = {
        sample.labels["reason"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "reason" in sample.labels and family.name.startswith("leakwatch_search")
    }
    assert labels == set(REASON_BUCKETS), labels
    assert (
        sample_value(metrics.registry, "leakwatch_search_failed_ids_total", reason="http_4xx") == 3
    )
