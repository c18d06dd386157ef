"""What the CLI prints never carries a secret, whichever way the command fails."""

from pathlib import Path

import pytest

from tests.integration.test_cli_foundation import leakwatch

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
