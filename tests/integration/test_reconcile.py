"""Totals reconciliation end to end: known gaps injected, each found to the unit.

A source log and a simulated Metronome share one history over three complete days.
Injected: three Acme API calls dropped on day 1; five Acme calls on day 2 to an
endpoint the metric's filter misses (the source expects them in "API calls"); a large
Globex GPU event (5,000 s) dropped on day 3; seven events under an alias no customer
has; one GPU event changed in flight (13 s logged, 40 s billed). A logged resend is
billed once and is no gap. Nothing else differs, so every other customer × metric ×
day must reconcile.
Learning is real: a check cycle looks samples up and keeps the definitions it sees.
Runs on SQLite and Postgres (the `db_url` fixture).
"""

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leakwatch.clock import FakeClock
from leakwatch.config import Environment, settings_from_mapping
from leakwatch.core.reconcile import GapStatus
from leakwatch.daemon.metrics import DaemonMetrics, read_store_snapshot, sample_value
from leakwatch.pipeline.runtime import Runtime
from leakwatch.simulator import PropertyFilter, SimulatorServer, SimulatorState
from leakwatch.store.billing import load_reconciled
from leakwatch.store.db import make_engine, session_factory, transaction
from leakwatch.wiring import build_runtime
from tests.fakes.simulator_fixtures import TOKEN, running_simulator

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
DAYS = [date(2026, 11, 17), date(2026, 11, 18), date(2026, 11, 19)]
ACME, GLOBEX = "c-acme", "c-globex"
CALLS, SECONDS, USERS = "m-calls", "m-seconds", "m-users"


def _state(clock: FakeClock) -> SimulatorState:
    state = SimulatorState(clock=clock, seed=5)
    state.add_customer("Acme", ["acme"], customer_id=ACME)
    state.add_customer("Globex", ["globex"], customer_id=GLOBEX)
    state.add_metric(
        "API calls",
        metric_id=CALLS,
        event_type_in=["api_request"],
        property_filters=[PropertyFilter("endpoint", in_values=("/v1/a", "/v1/b"))],
        created_at=NOW - timedelta(days=60),
    )
    state.add_metric(
        "GPU seconds",
        metric_id=SECONDS,
        event_type_in=["gpu_seconds"],
        aggregation_type="SUM",
        aggregation_key="seconds",
        created_at=NOW - timedelta(days=60),
    )
    state.add_metric(
        "Active users",
        metric_id=USERS,
        event_type_in=["api_request"],
        aggregation_type="UNIQUE",
        aggregation_key="user",
        created_at=NOW - timedelta(days=60),
    )
    return state


def _history() -> tuple[list[dict[str, Any]], set[str]]:
    """Every event the company sent, in time order, and the ids Metronome drops."""
    events: list[dict[str, Any]] = []
    dropped: set[str] = set()

    def add(txn: str, customer: str, event_type: str, at: datetime, **props: Any) -> None:
        events.append(
            {
                "transaction_id": txn,
                "customer_id": customer,
                "event_type": event_type,
                "timestamp": at.isoformat().replace("+00:00", "Z"),
                "properties": props,
            }
        )

    for d, day in enumerate(DAYS):
        start = datetime.combine(day, datetime.min.time(), UTC)
        for i in range(40):
            add(
                f"api-{d}-{i}",
                "acme",
                "api_request",
                start + timedelta(minutes=20 * i),
                endpoint="/v1/a" if i % 2 else "/v1/b",
                user=f"u{i % 7}",
            )
        for i in range(20):
            add(
                f"gpu-{d}-{i}",
                "globex",
                "gpu_seconds",
                start + timedelta(minutes=30 * i + 7),
                seconds=10 + i,
            )
    day1 = datetime.combine(DAYS[0], datetime.min.time(), UTC)
    day2 = datetime.combine(DAYS[1], datetime.min.time(), UTC)
    day3 = datetime.combine(DAYS[2], datetime.min.time(), UTC)
    dropped.update({"api-0-3", "api-0-11", "api-0-25"})
    for i in range(5):
        add(
            f"api-c-{i}",
            "acme",
            "api_request",
            day2 + timedelta(hours=13, minutes=i),
            endpoint="/v1/c",
            user="u1",
        )
    add("gpu-big", "globex", "gpu_seconds", day3 + timedelta(hours=20), seconds=5000)
    dropped.add("gpu-big")
    for i in range(7):
        add(
            f"hooli-{i}",
            "hooli",
            "api_request",
            day1 + timedelta(hours=5, minutes=i),
            endpoint="/v1/a",
            user="h",
        )
    # A logged resend (same line twice) is billed once and is no gap.
    events.append(dict(next(e for e in events if e["transaction_id"] == "api-2-5")))
    events.sort(key=lambda e: e["timestamp"])
    return events, dropped


def _as_ingested(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What reached Metronome: one GPU event was changed in flight (13 s logged, 40 sent)."""
    sent = [dict(e) for e in events]
    for event in sent:
        if event["transaction_id"] == "gpu-1-3":
            event["properties"] = {**event["properties"], "seconds": 40}
    return sent


@pytest.fixture
def clock_start() -> datetime:
    return NOW


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[SimulatorServer]:
    state = _state(clock)
    events, dropped = _history()
    state.faults.silent_drop_ids.update(dropped)
    sent = _as_ingested(events)
    for start in range(0, len(sent), 100):
        state.ingest(sent[start : start + 100])
    with running_simulator(clock, state=state) as server:
        yield server


@pytest.fixture
def runtime(
    sim: SimulatorServer, clock: FakeClock, db_url: str, tmp_path: Path
) -> Iterator[Runtime]:
    events, _ = _history()
    log = tmp_path / "usage.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    mapping = {
        "database_url": db_url,
        "state_dir": str(tmp_path / "state"),
        "metronome": {"requests_per_second": 50},
        "sources": [
            {
                "name": "gateway",
                "type": "jsonl",
                "path": str(log),
                "sample_size": 400,
                "stratify_by": "event_type,customer_id",
                "settle_delay": "10m",
                "expected_metrics": {"api_request": ["API calls"]},
            }
        ],
        "report": {
            "prices": {
                "api_request": 0.01,
                "gpu_seconds": {"per_unit": 0.002, "property": "seconds"},
            }
        },
        "reconcile": {"days": 3, "settle": "2d"},
        "alerts": [
            {"name": "billed", "rate": "billed_gap", "threshold": 0.05, "window": "7d"},
            {
                "name": "billed by customer",
                "rate": "billed_gap",
                "threshold": 0.05,
                "window": "1d",
                "by": "customer_id",
            },
        ],
    }
    env = Environment.model_validate(
        {"METRONOME_BEARER_TOKEN": TOKEN, "METRONOME_BASE_URL": sim.base_url}
    )
    rt = build_runtime(settings_from_mapping(mapping, env), clock=clock)
    yield rt
    rt.close()


def test_each_injected_gap_is_found_to_the_unit_and_nothing_else(runtime: Runtime) -> None:
    runtime.run_cycle()  # learns metric definitions and aliases from the answers
    result = runtime.reconcile()

    assert result.days == DAYS
    flagged = {(r.gap.customer_id, r.gap.metric_id, r.gap.day): r for r in result.flagged}
    assert set(flagged) == {
        (ACME, CALLS, DAYS[0]),
        (ACME, CALLS, DAYS[1]),
        (GLOBEX, SECONDS, DAYS[1]),
        (GLOBEX, SECONDS, DAYS[2]),
    }
    changed = flagged[(GLOBEX, SECONDS, DAYS[1])]
    assert changed.gap.difference == pytest.approx(40 - 13)
    assert changed.gap.status is GapStatus.OVER
    dropped_calls = flagged[(ACME, CALLS, DAYS[0])]
    assert (dropped_calls.gap.expected, dropped_calls.gap.billed) == (40, 37)
    assert dropped_calls.gap.status is GapStatus.UNDER
    assert dropped_calls.money == pytest.approx(-0.03)
    filter_gap = flagged[(ACME, CALLS, DAYS[1])]
    assert (filter_gap.gap.expected, filter_gap.gap.billed) == (45, 40)
    assert "unmatched_metric" in filter_gap.explanation
    big = flagged[(GLOBEX, SECONDS, DAYS[2])]
    assert big.gap.difference == pytest.approx(-5000)
    assert big.money == pytest.approx(-10.0)
    # Every other customer × metric × day with usage reconciles exactly.
    ok = [r for r in result.rows if r.gap.status is GapStatus.OK]
    assert {(r.gap.customer_id, r.gap.metric_id) for r in ok} == {(ACME, CALLS), (GLOBEX, SECONDS)}
    assert all(r.gap.difference == pytest.approx(0) for r in ok)
    assert result.unattributed == {"hooli": 7}
    assert "Active users" in result.skipped_metrics
    assert "UNIQUE" in result.skipped_metrics["Active users"]


def test_rows_are_saved_once_and_settled_days_kept(runtime: Runtime, db_url: str) -> None:
    runtime.run_cycle()
    runtime.reconcile()
    runtime.reconcile()  # a second run replaces unsettled rows, never doubles them
    engine = make_engine(db_url)
    try:
        with transaction(session_factory(engine)) as session:
            rows = load_reconciled(session, since=DAYS[0])
            settled = {r.day for r in rows if r.settled}
            keys = [(r.customer_id, r.metric_id, r.day) for r in rows]
    finally:
        engine.dispose()
    assert len(keys) == len(set(keys)) == 6
    assert settled == {DAYS[0]}  # older than the 2-day settle period


def test_one_customer_and_before_any_lookup(runtime: Runtime) -> None:
    before = runtime.reconcile()
    assert not before.rows and "run `leakwatch check` first" in before.notes[0]
    runtime.run_cycle()
    only_globex = runtime.reconcile(customer="globex")
    assert {r.gap.customer_id for r in only_globex.rows} == {GLOBEX}


def test_metrics_show_expected_billed_and_flagged_per_metric(runtime: Runtime) -> None:
    runtime.run_cycle()
    runtime.reconcile()
    metrics = DaemonMetrics()
    with transaction(runtime.sessions) as session:
        metrics.set_snapshot(read_store_snapshot(session, now=NOW))
    r = metrics.registry
    expected_calls = 40 * 3 + 5
    assert sample_value(r, "leakwatch_reconciled_expected", metric="API calls") == expected_calls
    assert sample_value(r, "leakwatch_reconciled_billed", metric="API calls") == expected_calls - 8
    assert sample_value(r, "leakwatch_reconciled_flagged_days", metric="API calls") == 2
    assert sample_value(r, "leakwatch_reconciled_flagged_days", metric="GPU seconds") == 2


def test_the_daemon_schedules_reconciliation_daily_after_its_first_cycles(
    runtime: Runtime, clock: FakeClock
) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    from leakwatch.daemon.health import DaemonStatus
    from leakwatch.daemon.jobs import RECONCILE_DELAY, Jobs, schedule_jobs

    scheduler = BackgroundScheduler(timezone=UTC)
    jobs = Jobs(
        runtime,
        clock=clock,
        metrics=DaemonMetrics(),
        status=DaemonStatus(clock),
        may_run=lambda: True,
    )
    schedule_jobs(scheduler, jobs, runtime.settings, now=NOW, first_cycle_at=NOW)
    job = scheduler.get_job("reconcile")
    assert job is not None
    assert job.next_run_time == NOW + RECONCILE_DELAY
    assert job.trigger.interval == timedelta(days=1)


def test_status_shows_the_reconciled_totals_per_metric(runtime: Runtime) -> None:
    from leakwatch.views.status import build_status

    runtime.run_cycle()
    runtime.reconcile()
    view = build_status(runtime.sessions, now=NOW, window=timedelta(hours=24))
    by_metric = {r["metric"]: r for r in view.to_dict()["reconciled_last_7_days"]}
    calls = by_metric["API calls"]
    assert (calls["expected"], calls["billed"], calls["difference"]) == (125, 117, -8)
    assert calls["billed_ratio"] == pytest.approx(117 / 125)
    assert (calls["flagged_days"], calls["days"]) == (2, 3)
    assert by_metric["GPU seconds"]["difference"] == pytest.approx(-5000 + 27)


def test_the_weekly_report_shows_billed_vs_sent_with_its_chart(
    runtime: Runtime, tmp_path: Path
) -> None:
    from zoneinfo import ZoneInfo

    from leakwatch.pipeline.report import build_report, write_report

    runtime.run_cycle()
    runtime.reconcile()
    content = build_report(
        runtime.sessions,
        week="2026-W47",
        now=NOW,
        timezone=ZoneInfo("UTC"),
        prices={},
        checks_every=None,
    )
    section = content.billed_vs_sent
    assert section is not None
    assert (section.flagged, section.rows) == (4, 6)
    biggest = section.biggest_gaps[0]
    assert (biggest.customer, biggest.metric, biggest.difference) == (
        "Globex",
        "GPU seconds",
        -5000,
    )
    day1 = next(r for r in section.by_day if r.day == DAYS[0] and r.metric == "API calls")
    assert (day1.expected, day1.billed) == (40, 37)
    paths = write_report(content, tmp_path / "reports")
    names = {p.name for p in paths}
    assert "leakage-2026-W47-billed.png" in names
    markdown = (tmp_path / "reports" / "leakage-2026-W47.md").read_text()
    assert "Billed vs sent" in markdown and "leakage-2026-W47-billed.png" in markdown
    html_page = (tmp_path / "reports" / "leakage-2026-W47.html").read_text()
    assert 'id="billed-chart"' in html_page
    report_json = json.loads((tmp_path / "reports" / "leakage-2026-W47.json").read_text())
    assert report_json["billed_vs_sent"]["flagged"] == 4


def test_billed_gap_alerts_fire_on_the_worst_metrics_exact_shortfall(runtime: Runtime) -> None:
    runtime.run_cycle()
    runtime.reconcile()
    results = {(r.rule_name, r.scope): r for r in runtime.evaluate_alerts()}
    overall = results[("billed", "")]
    assert overall.status.value == "firing"
    assert "GPU seconds: billed" in overall.reason and "exact" in overall.reason
    # Over the last day only Globex's dropped 5,000 s show; Acme's day was billed whole.
    assert results[("billed by customer", f"customer_id={GLOBEX}")].status.value == "firing"
    assert results[("billed by customer", f"customer_id={ACME}")].status.value == "inactive"


def test_a_billed_gap_rule_splits_by_customer_only() -> None:
    from leakwatch.errors import ConfigError

    mapping = {
        "alerts": [{"name": "x", "rate": "billed_gap", "threshold": 0.01, "by": "event_type"}]
    }
    with pytest.raises(ConfigError, match="billed_gap rule compares Metronome's totals"):
        settings_from_mapping(mapping, Environment.model_validate({}))
