"""What a new user trips over first: a source path that matches nothing, empty spans, a
`check` killed half-way.

Each command runs as `python -m leakwatch …` in a subprocess, on SQLite and Postgres.
"""

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from leakwatch.clock import SystemClock
from leakwatch.core.formatting import format_instant
from leakwatch.metronome.client import SearchClient
from leakwatch.simulator import SimulatorServer, build_demo_state
from leakwatch.simulator.scenario import Scenario, build_scenario, ingest_scenario
from leakwatch.store.db import make_engine, session_factory, transaction
from leakwatch.store.models import SampledEvent as SampledEventRow
from leakwatch.store.models import SamplingRun
from tests.support.cli import clean_environment, leakwatch

TOKEN = "acceptance-token-123456"


def _environment(db_url: str, *, base_url: str) -> dict[str, str]:
    env = clean_environment()
    env.update(
        {
            "METRONOME_BEARER_TOKEN": TOKEN,
            "METRONOME_BASE_URL": base_url,
            "LEAKWATCH_DATABASE_URL": db_url,
        }
    )
    return env


def _leakwatch(cwd: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    # Nothing is searched in these tests: a closed loopback port is fine.
    return leakwatch(*args, cwd=cwd, env=_environment(db_url, base_url="http://127.0.0.1:9"))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "leakwatch.toml"
    path.write_text(
        f"""
state_dir = "{tmp_path / "state"}"
[[sources]]
name = "gateway"
type = "jsonl"
path = "{tmp_path / "logs" / "*.jsonl"}"
"""
    )
    return path


def test_check_says_when_a_source_path_matches_no_file(
    tmp_path: Path, db_url: str, config: Path
) -> None:
    result = _leakwatch(tmp_path, db_url, "check")
    # Nothing could be checked: for cron-style use that is exit 1, not a quiet 0.
    assert result.returncode == 1, result.stderr
    assert "warning (gateway): no file matches" in result.stdout
    assert str(tmp_path / "logs" / "*.jsonl") in result.stdout
    assert "source gateway: no file matches its path" in result.stderr
    assert "Traceback" not in result.stderr
    as_json = _leakwatch(tmp_path, db_url, "check", "--json")
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    assert any("no file matches" in w for w in body["sources"]["gateway"]["warnings"])
    assert body["failures"] == ["source gateway: no file matches its path"]


def test_status_gives_the_last_cycle_its_finishing_time(
    tmp_path: Path, db_url: str, config: Path
) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "quiet.jsonl").write_text("")  # a quiet pipeline is no failure
    assert _leakwatch(tmp_path, db_url, "check").returncode == 0
    last = json.loads(_leakwatch(tmp_path, db_url, "status", "--json").stdout)["last_cycle"]
    assert last["finished_at"] != last["started_at"]
    text = _leakwatch(tmp_path, db_url, "status").stdout
    # JSON carries the instant for machines; the text says it the way people read it.
    finished = format_instant(datetime.fromisoformat(last["finished_at"]))
    assert f"last cycle: #{last['run_id']} finished at {finished}" in text


@pytest.mark.parametrize(
    "args",
    [["status", "--window", "0s"], ["outcomes", "--since", "0m"]],
)
def test_an_empty_span_is_bad_usage(
    tmp_path: Path, db_url: str, config: Path, args: list[str]
) -> None:
    result = _leakwatch(tmp_path, db_url, *args)
    assert result.returncode == 2
    assert "give a positive one" in result.stderr
    assert "Traceback" not in result.stderr


@dataclass
class SlowWorld:
    """A leaky pipeline and a simulator; `check` needs 12 search calls (about 3 s)."""

    cwd: Path
    env: dict[str, str]
    scenario: Scenario
    db_url: str

    def start_check(self, *args: str) -> "subprocess.Popen[str]":
        """Start `leakwatch check` and return once its first search call is logged."""
        process = subprocess.Popen(
            [sys.executable, "-m", "leakwatch", "check", *args],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # The test runner may ignore SIGINT; a user's shell does not.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
        )
        assert process.stderr is not None
        for line in process.stderr:
            if '"search.call"' in line:
                break
        return process

    def run_check(self, *args: str) -> "subprocess.CompletedProcess[str]":
        """Run `leakwatch check` to its end."""
        return subprocess.run(
            [sys.executable, "-m", "leakwatch", "check", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def recorded(self) -> tuple[list[SampledEventRow], list[str]]:
        engine = make_engine(self.db_url)
        with transaction(session_factory(engine)) as session:
            rows = list(session.execute(select(SampledEventRow)).scalars())
            runs = sorted(r.status for r in session.execute(select(SamplingRun)).scalars())
        engine.dispose()
        return rows, runs


@pytest.fixture
def slow(tmp_path: Path, db_url: str) -> Iterator[SlowWorld]:
    clock = SystemClock()
    scenario = build_scenario(now=clock.now(), events=400, oldest=timedelta(days=2), seed=9)
    state = build_demo_state(clock=clock)
    state.faults.silent_drop_ids.update(scenario.dropped_ids)
    log = tmp_path / "usage.jsonl"
    scenario.write_log(log)
    (tmp_path / "leakwatch.toml").write_text(
        f"""
state_dir = "{tmp_path / "state"}"
[metronome]
requests_per_second = 4
max_ids_per_request = 10
[[sources]]
name = "gateway"
type = "jsonl"
path = "{log}"
sample_size = 120
[checks]
min_checks_before_missing = 1
"""
    )
    with SimulatorServer(state, token=TOKEN) as server:
        with SearchClient(
            base_url=server.base_url, token=TOKEN, clock=clock, requests_per_second=100
        ) as client:
            ingest_scenario(scenario, client.ingest)
        yield SlowWorld(tmp_path, _environment(db_url, base_url=server.base_url), scenario, db_url)


def _assert_true_outcomes(world: SlowWorld, rows: list[SampledEventRow]) -> None:
    identities = [(r.source, r.transaction_id, r.payload_hash) for r in rows]
    assert len(identities) == len(set(identities)) > 0
    truth = world.scenario.truth_by_identity()
    assert all(
        r.outcome == truth[(r.transaction_id, r.payload_hash)].value for r in rows if r.attempts > 0
    )


def test_check_killed_during_its_lookups_then_run_again_records_each_event_once(
    slow: SlowWorld,
) -> None:
    with slow.start_check() as doomed:
        doomed.kill()  # SIGKILL: no handler, no clean-up, mid-lookups
        doomed.communicate(timeout=30)
    rerun = slow.run_check("--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["status"] == "finished"
    rows, runs = slow.recorded()
    assert runs == ["abandoned", "finished"]
    assert all(r.attempts == 1 for r in rows)
    _assert_true_outcomes(slow, rows)


def test_a_first_ctrl_c_stops_check_and_records_what_it_looked_up(slow: SlowWorld) -> None:
    with slow.start_check() as check:
        check.send_signal(signal.SIGINT)
        stdout, stderr = check.communicate(timeout=60)
    assert check.returncode == 130
    assert "stopped by Ctrl-C" in stderr
    assert "Traceback" not in stderr
    rows, runs = slow.recorded()
    assert runs == ["finished"]
    looked_up = [r for r in rows if r.attempts > 0]
    left = [r for r in rows if r.attempts == 0]
    # Stopped between slices: some answers recorded, the rest of the draw pending and due.
    assert looked_up
    assert left
    assert {r.outcome for r in left} == {"pending"}
    assert f"{len(left)} event(s) not looked up" in stdout
    _assert_true_outcomes(slow, rows)


def test_sample_of_a_path_that_matches_no_file_is_an_error(
    tmp_path: Path, db_url: str, config: Path
) -> None:
    result = _leakwatch(tmp_path, db_url, "sample", "gateway", "-n", "3")
    assert result.returncode == 1
    assert "no file matches" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_check_while_one_searches_exits_1_and_searches_nothing(
    slow: SlowWorld,
) -> None:
    """One instance per store searches: the daemon's lock guards `check` too.

    The first check is frozen (SIGSTOP) mid-lookups, holding the lock, so the second
    meets it for certain, whatever the machine's speed.
    """
    with slow.start_check() as first:
        first.send_signal(signal.SIGSTOP)
        try:
            second = slow.run_check()
        finally:
            first.send_signal(signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=120)
    assert second.returncode == 1, second.stderr
    assert "another leakwatch" in second.stderr
    said = " ".join(second.stderr.split())  # rich wraps long lines
    assert "One leakwatch (the daemon or a check) searches Metronome per store" in said
    assert "Traceback" not in second.stderr
    assert first.returncode == 0, stderr
    assert "finished" in stdout
    rows, runs = slow.recorded()
    assert runs == ["finished"]  # the second recorded no run, looked nothing up
    assert all(r.attempts == 1 for r in rows)
    _assert_true_outcomes(slow, rows)
