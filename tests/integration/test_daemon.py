"""The daemon as a real subprocess against real Postgres and the simulator.

It runs cycles on schedule, answers /healthz and /metrics, exits 0 on SIGTERM; with
two replicas exactly one leads and the other takes over after a SIGKILL, without
recording any sampled event twice. Each test world gets its own Postgres database
(created and dropped here), an in-process simulator on an ephemeral loopback port, a
small JSONL source log with known leaks, and a config file with short intervals.
"""

import threading
from pathlib import Path
from typing import Any

import pytest

from leakwatch.config import Environment, settings_from_mapping
from leakwatch.daemon.run import run_daemon
from leakwatch.errors import LeakwatchError, UsageProblem
from tests.support.daemon import (
    CLOCK,
    TOKEN,
    advisory_locks,
    daemon_world,
    finished_runs,
    free_port,
    wait_for,
)
from tests.support.databases import pg_query


def test_daemon_runs_cycles_on_schedule_serves_health_and_metrics_and_stops_on_sigterm(
    tmp_path: Path, pg_url: str
) -> None:
    with daemon_world(tmp_path, pg_url) as world:
        daemon = world.start_daemon()
        wait_for(lambda: daemon.role() == "leader", timeout_s=20, what="the daemon to lead")
        # Cycles every 2 s: three finished runs prove the schedule, not a one-off.
        wait_for(lambda: finished_runs(pg_url) >= 3, timeout_s=20, what="three cycles")

        health = daemon.health()
        assert health is not None
        assert health["http_status"] == 200
        assert health["alive"] is True
        assert health["role"] == "leader"
        assert 0 <= health["last_successful_cycle_age_s"] < 6

        metrics = daemon.metrics()
        assert metrics[("leakwatch_leader", ())] == 1.0
        assert metrics[("leakwatch_cycles_total", (("status", "finished"),))] >= 3
        assert metrics[("leakwatch_search_calls_total", (("status", "200"),))] >= 3
        assert metrics[("leakwatch_search_latency_seconds_count", ())] >= 3
        assert metrics[("leakwatch_cycle_duration_seconds_count", ())] >= 3
        assert metrics[("leakwatch_last_successful_cycle_timestamp_seconds", ())] > 0
        assert metrics[("leakwatch_leak_rate", (("source", "gateway"),))] >= 0
        sampled = sum(
            value for (name, _labels), value in metrics.items() if name == "leakwatch_samples"
        )
        stored = pg_query(pg_url, "SELECT count(*) FROM sampled_event")[0][0]
        assert sampled == stored > 0
        assert metrics[("leakwatch_outbox_backlog", (("status", "pending"),))] == 0
        status, _ = daemon.get("/nowhere")
        assert status == 404

        assert daemon.terminate() == 0
        events = [e["event"] for e in daemon.logs()]
        assert "daemon.stopping" in events
        assert events[-1] == "daemon.stopped"
        assert "job.failed" not in events
        assert advisory_locks(pg_url) == 0
        # Nothing is left half-done: every run that started has an end.
        running = pg_query(pg_url, "SELECT count(*) FROM sampling_run WHERE status = 'running'")
        assert running[0][0] == 0


def test_two_daemons_elect_one_leader_and_the_follower_takes_over_after_sigkill(
    tmp_path: Path, pg_url: str
) -> None:
    with daemon_world(tmp_path, pg_url) as world:
        first = world.start_daemon(name="first")
        wait_for(lambda: first.role() == "leader", timeout_s=20, what="the first daemon to lead")
        second = world.start_daemon(name="second")
        wait_for(lambda: second.role() == "follower", timeout_s=20, what="a follower")
        wait_for(lambda: finished_runs(pg_url) >= 2, timeout_s=20, what="cycles by the leader")
        # Over several election beats there is exactly one leader.
        for _ in range(5):
            assert sorted([str(first.role()), str(second.role())]) == ["follower", "leader"]
            CLOCK.sleep(0.3)
        follower_health = second.health()
        assert follower_health is not None
        assert follower_health["http_status"] == 200
        assert second.metrics()[("leakwatch_leader", ())] == 0.0

        runs_before = finished_runs(pg_url)
        killed_at = CLOCK.monotonic()
        first.kill()
        wait_for(lambda: second.role() == "leader", timeout_s=10, what="the follower to take over")
        # Within one check interval (2 s) plus the election beat (0.5 s) and slack.
        assert CLOCK.monotonic() - killed_at < 5
        wait_for(
            lambda: finished_runs(pg_url) >= runs_before + 2,
            timeout_s=20,
            what="cycles by the new leader",
        )
        duplicates = pg_query(
            pg_url,
            "SELECT source, transaction_id, payload_hash, count(*) FROM sampled_event"
            " GROUP BY source, transaction_id, payload_hash HAVING count(*) > 1",
        )
        assert duplicates == []
        assert second.terminate() == 0
        assert "job.failed" not in [e["event"] for e in second.logs()]


def test_a_second_daemon_on_the_same_sqlite_store_is_refused(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'leakwatch.db'}"
    with daemon_world(tmp_path, db_url) as world:
        first = world.start_daemon(name="first")
        wait_for(lambda: first.role() == "leader", timeout_s=20, what="the first daemon to lead")
        second = world.start_daemon(name="second")
        assert second.process.wait(timeout=20) == 1
        message = second.log_text()
        assert (
            f"another leakwatch is running against this SQLite store (pid {first.process.pid}); "
            "SQLite allows one instance — use Postgres for replicas"
        ) in message
        assert first.terminate() == 0


@pytest.mark.parametrize(
    ("change", "error", "expected"),
    [
        ({"token": None}, UsageProblem, "METRONOME_BEARER_TOKEN is not set"),
        ({"log": "missing.jsonl"}, LeakwatchError, "no file matches"),
        ({"sources": []}, UsageProblem, "no [[sources]] configured"),
        (
            {"database_url": "postgresql+psycopg://nobody@127.0.0.1:9/none"},
            LeakwatchError,
            "cannot reach the database",
        ),
    ],
    ids=["no-token", "source-unreadable", "no-sources", "database-unreachable"],
)
def test_start_up_checks_fail_with_a_clear_message(
    tmp_path: Path, change: dict[str, Any], error: type[Exception], expected: str
) -> None:
    log = tmp_path / "usage.jsonl"
    log.write_text("", encoding="utf-8")
    source = {"name": "gateway", "type": "jsonl", "path": str(tmp_path / change.get("log", log))}
    mapping = {
        "database_url": change.get("database_url", f"sqlite:///{tmp_path / 'lw.db'}"),
        "state_dir": str(tmp_path / "state"),
        "sources": change.get("sources", [source]),
        "daemon": {"health_address": f"127.0.0.1:{free_port()}"},
    }
    token = change.get("token", TOKEN)
    env = Environment.model_validate({"METRONOME_BEARER_TOKEN": token} if token else {})
    settings = settings_from_mapping(mapping, env)
    with pytest.raises(error) as raised:
        run_daemon(settings, clock=CLOCK, stop=threading.Event())
    assert expected in str(raised.value)
