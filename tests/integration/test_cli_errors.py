"""Error paths a new user hits, each a clear message and the right exit code.

Every case here once printed "this is a bug in leakwatch", ran on defaults, or exited
0 having done nothing. The rule: name what (the URL, password masked; the path; the
variable), say why, say what to do; exit 2 for bad usage or config, 1 for a job that
could not be done; never a traceback.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from leakwatch.clock import SystemClock
from tests.support.cli import leakwatch

NOT_A_BUG = "this is a bug in leakwatch"


def assert_clear(result_stderr: str) -> None:
    assert "Traceback" not in result_stderr
    assert NOT_A_BUG not in result_stderr


@pytest.mark.parametrize("command", [["status"], ["check"], ["run"], ["db", "upgrade"]])
def test_leakwatch_config_naming_a_missing_file_exits_2(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "etc" / "leakwatch.toml"
    env = {"LEAKWATCH_CONFIG": str(missing), "METRONOME_BEARER_TOKEN": "tok-0123456789"}
    result = leakwatch(*command, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "LEAKWATCH_CONFIG" in result.stderr and str(missing) in result.stderr
    assert_clear(result.stderr)
    assert not (tmp_path / "leakwatch.db").exists(), "ran on defaults"


STORE_COMMANDS = [["status"], ["check"], ["run"], ["db", "upgrade"], ["outcomes"], ["alerts"]]


def _world_readable_dir() -> Path:
    """A temp dir another user can enter (pytest's tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="leakwatch-ro-"))
    path.chmod(0o755)
    return path


def _as_unprivileged(command: list[str]) -> list[str]:
    """Run as nobody when we are root: root writes through any permission bit."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root: setpriv is needed to test a read-only directory")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_a_sqlite_file_in_a_read_only_directory_exits_2_saying_what_to_fix(
    command: list[str],
) -> None:
    top = _world_readable_dir()
    try:
        locked = top / "readonly"
        locked.mkdir()
        locked.chmod(0o555)
        url = f"sqlite:///{locked / 'lw.db'}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LEAKWATCH_", "SLACK_"))},
            "LEAKWATCH_DATABASE_URL": url,
            "METRONOME_BEARER_TOKEN": "tok-0123456789",
            "HOME": str(top),
        }
        result = subprocess.run(
            _as_unprivileged([sys.executable, "-m", "leakwatch", *command]),
            cwd=top,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert url in result.stderr
        assert "not writable" in result.stderr and "LEAKWATCH_DATABASE_URL" in result.stderr
        assert_clear(result.stderr)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize(
    ("make_url", "says"),
    [
        (lambda tmp: "sqlite://lw.db", "sqlite:///lw.db"),
        (lambda tmp: f"sqlite:///{tmp / 'a-file' / 'lw.db'}", "is not a directory"),
        (lambda tmp: f"sqlite:///{tmp}", "is a directory"),
        (lambda tmp: "mysql://u:hunter2@db/x", "not supported"),
    ],
    ids=["two-slashes", "file-as-directory", "directory-as-file", "backend"],
)
@pytest.mark.parametrize("command", [["status"], ["run"]], ids=" ".join)
def test_a_bad_database_url_exits_2_naming_it_with_the_password_masked(
    tmp_path: Path, command: list[str], make_url: Callable[[Path], str], says: str
) -> None:
    (tmp_path / "a-file").write_text("")
    url = make_url(tmp_path)
    env = {"LEAKWATCH_DATABASE_URL": url, "METRONOME_BEARER_TOKEN": "tok-0123456789"}
    result = leakwatch(*command, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    shown, _, after = url.partition("hunter2")
    assert shown in result.stderr and after in result.stderr  # named ...
    assert "hunter2" not in result.stderr  # ... with its password masked
    assert_clear(result.stderr)


def _source_log(tmp_path: Path, *, path: str | None = None) -> dict[str, str]:
    """A config with one log source of a few recent events; Metronome on a closed port."""
    log = tmp_path / "usage.jsonl"
    now = SystemClock().now()  # the subprocess reads the same wall clock
    lines = [
        json.dumps(
            {
                "transaction_id": f"t-{i}",
                "customer_id": "acme",
                "event_type": "api_request",
                "timestamp": (now - timedelta(hours=2)).isoformat(),
                "properties": {},
            }
        )
        for i in range(5)
    ]
    log.write_text("\n".join(lines) + "\n")
    (tmp_path / "leakwatch.toml").write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        "[metronome]\nmax_retries = 1\n"
        f'[[sources]]\nname = "gateway"\ntype = "jsonl"\npath = "{path or log}"\n'
    )
    return {
        "METRONOME_BEARER_TOKEN": "tok-0123456789",
        "METRONOME_BASE_URL": "http://127.0.0.1:9",
        "LEAKWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'lw.db'}",
    }


def test_check_exits_1_when_every_lookup_failed_naming_metronomes_url(tmp_path: Path) -> None:
    result = leakwatch("check", cwd=tmp_path, env=_source_log(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "the check could not do its job" in said
    assert "no lookup succeeded" in said
    assert "connection error (ConnectError) to http://127.0.0.1:9" in said
    assert_clear(result.stderr)


def test_check_exits_1_when_a_source_cannot_be_read(tmp_path: Path) -> None:
    """An object-storage scheme whose package is not installed is a source error."""
    env = _source_log(tmp_path, path="gcs://no-such-bucket/logs/*.jsonl")
    result = leakwatch("check", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "source gateway: cannot read source" in said and "gcs://no-such-bucket" in said
    assert_clear(result.stderr)


def test_check_with_an_unreachable_sql_source_exits_1_naming_it(tmp_path: Path) -> None:
    """Was "unexpected OperationalError … this is a bug in leakwatch"."""
    env = _source_log(tmp_path)
    (tmp_path / "leakwatch.toml").write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        '[[sources]]\nname = "warehouse"\ntype = "sql"\n'
        'url = "postgresql+psycopg://reader:hunter2@127.0.0.1:1/usage"\ntable = "usage"\n'
    )
    result = leakwatch("check", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "source warehouse: cannot read source: cannot read postgresql+psycopg://reader:" in said
    assert "@127.0.0.1:1/usage" in said and "hunter2" not in said
    assert_clear(result.stderr)


def test_lookup_exits_1_when_no_lookup_succeeded_naming_metronomes_url(tmp_path: Path) -> None:
    result = leakwatch("lookup", "t-1", "t-2", cwd=tmp_path, env=_source_log(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    said = " ".join(result.stderr.split())
    assert "no lookup succeeded: connection error (ConnectError) to http://127.0.0.1:9" in said
    assert_clear(result.stderr)
