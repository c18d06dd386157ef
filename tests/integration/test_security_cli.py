"""What the CLI prints never carries a secret, whichever way the command fails."""

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.support.cli import leakwatch

WEBHOOK_PATH = "hooks.slack.com/services/T000/B000/webhooksecretpath"


@pytest.mark.parametrize(
    "webhook",
    [WEBHOOK_PATH, f"http://{WEBHOOK_PATH}", f"ftp://{WEBHOOK_PATH}"],
    ids=["no-scheme", "plain-http", "other-scheme"],
)
def test_a_webhook_url_that_is_not_https_is_refused_without_showing_it(
    tmp_path: Path, webhook: str
) -> None:
    result = leakwatch("status", cwd=tmp_path, env={"SLACK_WEBHOOK_URL": webhook})
    assert result.returncode == 2, result.stderr
    assert "SLACK_WEBHOOK_URL is not an https:// URL" in result.stderr
    assert "webhooksecretpath" not in result.stdout + result.stderr


def test_an_unexpected_error_quoting_a_secret_is_printed_redacted(tmp_path: Path) -> None:
    # A SQLite store under a path that is a file: the driver's message names the URL,
    # which carries a password only in this contrived form, but must not be shown.
    (tmp_path / "file").write_text("")
    url = "sqlite:///" + str(tmp_path / "file" / "pw-TOPSECRET-123" / "x.db")
    result = leakwatch(
        "status",
        cwd=tmp_path,
        env={"LEAKWATCH_DATABASE_URL": url, "METRONOME_BEARER_TOKEN": "pw-TOPSECRET-123"},
    )
    assert result.returncode != 0
    assert "pw-TOPSECRET-123" not in result.stdout + result.stderr, result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers_with(port: int, token: str) -> int:
    """POST a search with `token` until the simulator is up; the HTTP status."""
    pause = threading.Event()
    for _ in range(100):
        try:
            return httpx.post(
                f"http://127.0.0.1:{port}/v1/events/search",
                json={"transactionIds": ["t-1"]},
                headers={"Authorization": f"Bearer {token}"},
                timeout=5,
            ).status_code
        except httpx.ConnectError:
            pause.wait(0.1)
    raise AssertionError("the simulator never answered")


@pytest.mark.parametrize("how", ["file", "environment"])
def test_the_simulator_takes_its_token_without_a_command_line(tmp_path: Path, how: str) -> None:
    token = "sim-secret-from-" + how
    secret_file = tmp_path / "token"
    secret_file.write_text(token + "\n")
    secret_file.chmod(0o600)
    port = _free_port()
    args = ["simulator", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRONOME_")}
    if how == "file":
        args += ["--token-file", str(secret_file)]
    else:
        env["METRONOME_BEARER_TOKEN"] = token
    process = subprocess.Popen(
        [sys.executable, "-m", "leakwatch", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _answers_with(port, token) == 200
        assert _answers_with(port, "wrong-token") == 401
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    assert token not in out + err
    assert token not in " ".join(args)


@pytest.mark.parametrize("content", [None, ""], ids=["missing", "empty"])
def test_an_unusable_token_file_is_bad_usage(tmp_path: Path, content: str | None) -> None:
    secret_file = tmp_path / "token"
    if content is not None:
        secret_file.write_text(content)
    result = leakwatch("simulator", "--token-file", str(secret_file), cwd=tmp_path)
    assert result.returncode == 2
    assert "--token-file" in result.stderr


def test_a_token_on_the_command_line_still_works_with_a_warning(tmp_path: Path) -> None:
    # Refused for another reason after the token is taken: the warning comes first.
    result = leakwatch("simulator", "--token", "tok-123456", "--fault-rate", "2", cwd=tmp_path)
    assert result.returncode == 2
    assert "command line" in result.stderr
