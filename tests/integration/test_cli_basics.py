"""The CLI as a user meets it: help everywhere, init, db upgrade, bad config, exit codes."""

from pathlib import Path

import pytest

from tests.support.cli import leakwatch

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
    ["alerts", "list"],
    ["alerts", "unsilence"],
    ["reconcile"],
    ["sources"],
]


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
    assert result.stdout.startswith("created the schema at revision ")
    assert (tmp_path / "leakwatch.db").exists()
    again_upgrade = leakwatch("db", "upgrade", cwd=tmp_path)
    assert again_upgrade.stdout.startswith("already at revision "), again_upgrade.stdout


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


@pytest.mark.parametrize("command", [[], *COMMANDS], ids=lambda c: " ".join(c) or "leakwatch")
def test_short_help_and_no_type_placeholders(command: list[str], tmp_path: Path) -> None:
    result = leakwatch(*command, "-h", cwd=tmp_path, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert "<bool>" not in result.stdout and "<str>" not in result.stdout
    if command not in ([], ["alerts"]):  # every command shows how it is used
        assert "Examples:\n    leakwatch" in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines())


def test_version_matches_the_installed_distribution(tmp_path: Path) -> None:
    from importlib.metadata import version

    result = leakwatch("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"leakwatch {version('leakwatch')}"


def test_log_level_from_flag_and_environment(tmp_path: Path) -> None:
    bad = leakwatch("--log-level", "loud", "status", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--log-level 'loud' is not a log level" in bad.stderr
    bad_env = leakwatch("status", cwd=tmp_path, env={"LEAKWATCH_LOG_LEVEL": "loud"})
    assert bad_env.returncode == 2 and "LEAKWATCH_LOG_LEVEL" in bad_env.stderr
    (tmp_path / "leakwatch.toml").write_text(f'state_dir = "{tmp_path / "state"}"\n')
    quiet = leakwatch("db", "upgrade", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "store.opened" not in quiet.stderr
    for loud_args, env in (
        (["--verbose"], {}),
        (["--log-level", "debug"], {}),
        ([], {"LEAKWATCH_LOG_LEVEL": "debug"}),
    ):
        loud = leakwatch(*loud_args, "db", "upgrade", cwd=tmp_path, env=env)
        assert loud.returncode == 0, loud.stderr
        assert "store.opened" in loud.stderr, (loud_args, env)
