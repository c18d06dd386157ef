"""What a new user trips over first: a source path that matches nothing, empty spans.

Each command runs as `python -m leakwatch …` in a subprocess, on SQLite and Postgres.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOKEN = "acceptance-token-123456"


def _leakwatch(cwd: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAKWATCH_", "METRONOME_"))}
    # Nothing is searched in these tests: a closed loopback port is fine.
    env.update(
        {
            "METRONOME_BEARER_TOKEN": TOKEN,
            "METRONOME_BASE_URL": "http://127.0.0.1:9",
            "LEAKWATCH_DATABASE_URL": db_url,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "leakwatch", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
    assert result.returncode == 0, result.stderr
    assert "warning (gateway): no file matches" in result.stdout
    assert str(tmp_path / "logs" / "*.jsonl") in result.stdout
    as_json = _leakwatch(tmp_path, db_url, "check", "--json")
    warnings = json.loads(as_json.stdout)["sources"]["gateway"]["warnings"]
    assert any("no file matches" in w for w in warnings)


def test_status_gives_the_last_cycle_its_finishing_time(
    tmp_path: Path, db_url: str, config: Path
) -> None:
    assert _leakwatch(tmp_path, db_url, "check").returncode == 0
    last = json.loads(_leakwatch(tmp_path, db_url, "status", "--json").stdout)["last_cycle"]
    assert last["finished_at"] != last["started_at"]
    text = _leakwatch(tmp_path, db_url, "status").stdout
    assert f"last cycle: #{last['run_id']} finished at {last['finished_at']}" in text


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
