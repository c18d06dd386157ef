"""The daemon as a real subprocess, for the daemon and fault suites. I/O.

A `daemon_world` is a Postgres database of its own, an in-process simulator on an
ephemeral loopback port, a small JSONL source log with known leaks and a config file
with short intervals; `DaemonProcess` is one `leakwatch run` in it. The fault helpers
kill connections, slow searches and check that nothing was lost or doubled.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from leakwatch.clock import SystemClock
from leakwatch.metronome.client import SearchClient
from leakwatch.simulator import SimulatorServer, build_demo_state
from leakwatch.simulator.scenario import Scenario, build_scenario, ingest_scenario
from tests.fakes.fake_slack import FakeSlack
from tests.support.databases import pg_query

TOKEN = "daemon-test-token-0123"
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


SLACK_TOKEN = "xoxb-test-token"


def db_name(database_url: str) -> str:
    return database_url.rsplit("/", 1)[1]


def admin(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Run SQL from the `postgres` database (so our own session is not in the way)."""
    libpq = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        cursor = conn.execute(sql)
        return list(cursor.fetchall()) if cursor.description else []


def slow_searches(world: DaemonWorld) -> None:
    """Make each search call take a while, so a cycle lasts about a second (killable)."""
    faults = world.simulator.state.faults
    faults.endpoints = frozenset({"search"})
    faults.slow_delay_s = 0.3
    faults.slow_rate = 1.0


def terminate(database_url: str, *, application_name: str | None = None) -> int:
    """Kill the daemon's sessions on our database (all, or one application's); how many.

    Returns once they have exited (the timeout form waits), so their locks are free."""
    where = f"datname = '{db_name(database_url)}' AND pid <> pg_backend_pid()"
    if application_name is not None:
        where += f" AND application_name = '{application_name}'"
    rows = admin(
        database_url, f"SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE {where}"
    )
    return sum(1 for (done,) in rows if done)


def start(world: DaemonWorld, slack: FakeSlack, name: str) -> DaemonProcess:
    return start_with(world, slack, name, {})


def start_with(
    world: DaemonWorld, slack: FakeSlack, name: str, env: dict[str, str]
) -> DaemonProcess:
    return world.start_daemon(
        name=name,
        env={"SLACK_BOT_TOKEN": SLACK_TOKEN, "LEAKWATCH_SLACK_BASE_URL": slack.base_url, **env},
    )


def with_alerts(world: DaemonWorld) -> None:
    """A leak-rate alert the scenario's leaks trip, delivered to the fake Slack."""
    with world.config_path.open("a", encoding="utf-8") as config:
        config.write(
            '\n[slack]\nchannel = "#billing-alerts"\n\n'
            '[[alerts]]\nname = "leaks"\nrate = "leak_rate"\nthreshold = 0.01\n'
            'min_samples = 10\nwindow = "30d"\nrepeat_interval = "1h"\n'
        )


def duplicates(database_url: str) -> list[tuple[Any, ...]]:
    return pg_query(
        database_url,
        "SELECT source, transaction_id, payload_hash, count(*) FROM sampled_event"
        " GROUP BY source, transaction_id, payload_hash HAVING count(*) > 1",
    )


def assert_nothing_lost_or_doubled(database_url: str, slack: FakeSlack) -> None:
    assert duplicates(database_url) == []
    running = pg_query(database_url, "SELECT count(*) FROM sampling_run WHERE status = 'running'")
    assert running[0][0] == 0
    fires = pg_query(
        database_url,
        "SELECT alert_id, episode, count(*) FROM alert_transition"
        " WHERE transition = 'fire' GROUP BY alert_id, episode HAVING count(*) > 1",
    )
    assert fires == []
    pending = pg_query(
        database_url, "SELECT status, count(*) FROM notification GROUP BY status ORDER BY status"
    )
    assert dict(pending).keys() <= {"sent", "skipped"}, pending
    markers = [m for m in slack.markers() if m is not None]
    assert len(markers) == len(set(markers)), "a notification reached Slack twice"
    posted = pg_query(
        database_url, "SELECT count(*) FROM notification WHERE status = 'sent' AND kind <> 'edit'"
    )
    assert posted[0][0] == len(slack.state.messages)


def outbox_drained(database_url: str) -> bool:
    rows = pg_query(database_url, "SELECT count(*) FROM notification WHERE status = 'pending'")
    return bool(rows[0][0] == 0)


def fired(database_url: str) -> int:
    rows = pg_query(database_url, "SELECT count(*) FROM alert_transition WHERE transition = 'fire'")
    return int(rows[0][0])
