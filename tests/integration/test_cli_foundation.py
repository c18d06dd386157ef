"""The CLI as a user meets it: help everywhere, init, db upgrade, bad config, exit codes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    ["demo"],
    ["init"],
    ["db", "upgrade"],
    ["check"],
    ["run"],
    ["status"],
    ["outcomes"],
    ["lookup"],
    ["report"],
    ["simulator"],
    ["sample"],
    ["alerts"],
    ["alerts", "silence"],
    ["alerts", "ack"],
    ["reconcile"],
]


def leakwatch(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEAKWATCH_", "METRONOME_", "SLACK_"))
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "leakwatch", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = leakwatch("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in (
        "demo",
        "init",
        "db",
        "check",
        "run",
        "status",
        "outcomes",
        "lookup",
        "report",
        "simulator",
        "sample",
        "alerts",
        "reconcile",
    ):
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str], tmp_path: Path) -> None:
    result = leakwatch(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout


def test_init_then_db_upgrade_creates_the_sqlite_store(tmp_path: Path) -> None:
    assert leakwatch("init", cwd=tmp_path).returncode == 0
    assert (tmp_path / "leakwatch.toml").exists()
    again = leakwatch("init", cwd=tmp_path)
    assert again.returncode == 1
    assert "--force" in again.stderr
    result = leakwatch("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "leakwatch.db").exists()


def test_db_upgrade_on_postgres(pg_database_url: str, tmp_path: Path) -> None:
    result = leakwatch(
        "db", "upgrade", cwd=tmp_path, env={"LEAKWATCH_DATABASE_URL": pg_database_url}
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_a_bad_config_exits_2_naming_the_key_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "leakwatch.toml").write_text('[checks]\nevery = "soon"\n')
    result = leakwatch("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 2
    assert "checks.every" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_exits_1_with_a_message(tmp_path: Path) -> None:
    env = {"LEAKWATCH_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    result = leakwatch("db", "upgrade", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr
