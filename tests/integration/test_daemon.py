"""The daemon as a real subprocess against real Postgres and the simulator.

It runs cycles on schedule, answers /healthz and /metrics, exits 0 on SIGTERM; with
two replicas exactly one leads and the other takes over after a SIGKILL, without
recording any sampled event twice. Each test world gets its own Postgres database
(created and dropped here), an in-process simulator on an ephemeral loopback port, a
small JSONL source log with known leaks, and a config file with short intervals.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from leakwatch.clock import SystemClock
from leakwatch.config import Environment, settings_from_mapping
from leakwatch.daemon.run import run_daemon
from leakwatch.errors import LeakwatchError, UsageProblem
from leakwatch.metronome.client import SearchClient
from leakwatch.simulator import SimulatorServer, build_demo_state
from leakwatch.simulator.scenario import Scenario, build_scenario, ingest_scenario
from leakwatch.store.db import make_engine, upgrade

TOKEN = "daemon-test-token-0123"
PG_ADMIN_URL = os.environ.get("LEAKWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CLOCK = SystemClock()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail saying what never happened."""
    deadline = CLOCK.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if CLOCK.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        CLOCK.sleep(0.1)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, migrated database of our own, dropped afterwards."""
    name = f"leakwatch_daemon_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    libpq = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq, autocommit=True) as conn:
        return list(conn.execute(sql).fetchall())


@dataclass
class DaemonProcess:
    process: subprocess.Popen[str]
    health_port: int
    log_path: Path

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def health(self) -> dict[str, Any] | None:
        """/healthz as JSON with its status code, or None while the daemon is not serving."""
        try:
            status, body = self.get("/healthz")
        except OSError:
            return None
        return {"http_status": status, **json.loads(body)}

    def role(self) -> str | None:
        health = self.health()
        return None if health is None else str(health["role"])

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        _, text = self.get("/metrics")
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def logs(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def terminate(self, timeout_s: float = 15) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class DaemonWorld:
    tmp_path: Path
    database_url: str
    simulator: SimulatorServer
    config_path: Path
    every: str = "2s"
    started: list[DaemonProcess] = field(default_factory=list)
    # The log's ground truth: what an honest checker must record for each event.
    scenario: Scenario | None = None

    def start_daemon(self, *, name: str = "a", env: dict[str, str] | None = None) -> DaemonProcess:
        port = free_port()
        env = {
            **os.environ,
            "METRONOME_BEARER_TOKEN": TOKEN,
            "LEAKWATCH_CONFIG": str(self.config_path),
            "LEAKWATCH_HEALTH_ADDRESS": f"127.0.0.1:{port}",
            **(env or {}),
        }
        env.pop("LEAKWATCH_DATABASE_URL", None)
        log_path = self.tmp_path / f"daemon-{name}.log"
        with log_path.open("a", encoding="utf-8") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "leakwatch", "run"],
                env=env,
                cwd=self.tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        daemon = DaemonProcess(process, port, log_path)
        self.started.append(daemon)
        return daemon

    def stop_all(self) -> None:
        for daemon in self.started:
            daemon.kill()


def write_config(
    path: Path, *, database_url: str, simulator_url: str, log: Path, state_dir: Path, every: str
) -> None:
    path.write_text(
        textwrap.dedent(
            f"""
            database_url = "{database_url}"
            state_dir = "{state_dir}"

            [metronome]
            base_url = "{simulator_url}"
            requests_per_second = 50
            max_ids_per_request = 20
            timeout_seconds = 5
            max_retries = 1

            [[sources]]
            name = "gateway"
            type = "jsonl"
            path = "{log}"
            sample_size = 40
            settle_delay = "10m"
            max_age = "33d"

            [checks]
            every = "{every}"
            missing_grace = "2h"

            [daemon]
            shutdown_timeout = "6s"
            """
        ),
        encoding="utf-8",
    )


@contextmanager
def daemon_world(tmp_path: Path, database_url: str, *, every: str = "2s") -> Iterator[DaemonWorld]:
    """Simulator with a leaky history ingested, its source log, and a config file."""
    now = CLOCK.now()
    scenario = build_scenario(now=now, events=600, seed=9)
    log = tmp_path / "usage.jsonl"
    scenario.write_log(log)
    state = build_demo_state(clock=CLOCK)
    state.faults.silent_drop_ids.update(scenario.dropped_ids)
    with SimulatorServer(state, token=TOKEN) as simulator:
        with SearchClient(
            base_url=simulator.base_url, token=TOKEN, clock=CLOCK, requests_per_second=200
        ) as client:
            ingest_scenario(scenario, client.ingest)
        config_path = tmp_path / "leakwatch.toml"
        write_config(
            config_path,
            database_url=database_url,
            simulator_url=simulator.base_url,
            log=log,
            state_dir=tmp_path / "state",
            every=every,
        )
        world = DaemonWorld(
            tmp_path, database_url, simulator, config_path, every, scenario=scenario
        )
        try:
            yield world
        finally:
            world.stop_all()


# -- the tests ---------------------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def finished_runs(database_url: str) -> int:
    rows = pg_query(database_url, "SELECT count(*) FROM sampling_run WHERE status = 'finished'")
    return int(rows[0][0])


def advisory_locks(database_url: str) -> int:
    rows = pg_query(
        database_url,
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND d.datname = current_database()",
    )
    return int(rows[0][0])


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
