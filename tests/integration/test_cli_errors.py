"""Error paths a new user hits, each a clear message and the right exit code.

Every case here once printed "this is a bug in leakwatch", ran on defaults, or exited
0 having done nothing. The rule: name what (the URL, password masked; the path; the
variable), say why, say what to do; exit 2 for bad usage or config, 1 for a job that
could not be done; never a traceback.
"""

from pathlib import Path

import pytest

from tests.integration.test_cli_foundation import leakwatch

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
