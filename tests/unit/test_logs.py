"""Secrets never reach the log, whatever field they hide in."""

import io
import json

import pytest
import structlog

from leakwatch.config import Environment, environment_secrets, settings_from_mapping
from leakwatch.logs import REDACTED, configure_logging


def _log_line(**fields: object) -> dict[str, object]:
    stream = io.StringIO()
    redactor = configure_logging(json=True, stream=stream)
    redactor.add("sk-live-0123456789")
    structlog.get_logger().info("test.event", **fields)
    structlog.reset_defaults()
    parsed: dict[str, object] = json.loads(stream.getvalue().strip())
    return parsed


def test_secret_keys_and_values_are_redacted() -> None:
    line = _log_line(
        token="abc",
        headers={"Authorization": "Bearer abcdef"},
        message="call failed with Bearer abc.def-ghi",
        url="https://hooks.slack.com/services/T0/B0/XXXX",
        dsn="postgresql+psycopg://user:hunter2@db/leakwatch",
        detail="the key sk-live-0123456789 was rejected",
        slack="xoxb-123-456-abc",
    )
    text = json.dumps(line)
    for secret in ("abc.def-ghi", "XXXX", "hunter2", "sk-live-0123456789", "xoxb-123"):
        assert secret not in text
    assert line["token"] == REDACTED
    assert line["event"] == "test.event"


def test_plain_fields_pass_untouched() -> None:
    line = _log_line(source="gateway", sampled=500, rate=0.012)
    assert (line["source"], line["sampled"], line["rate"]) == ("gateway", 500, 0.012)


def _rendered(json_lines: bool, secrets: list[str], **fields: object) -> str:
    stream = io.StringIO()
    redactor = configure_logging(json=json_lines, stream=stream)
    for secret in secrets:
        redactor.add(secret)
    structlog.get_logger().warning("test.event", **fields)
    structlog.reset_defaults()
    return stream.getvalue()


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "console"])
def test_secrets_are_redacted_as_rendered_encoded_split_or_in_conninfo(json_lines: bool) -> None:
    text = _rendered(
        json_lines,
        ["tok-abcdef-123456", "pa ss/wörd%"],
        encoded="next=https%3A%2F%2Fhooks.slack.com%2Fservices%2FT0%2FB0%2FWEBHOOKSECRET",
        bare="posting to hooks.slack.com/services/T0/B0/SCHEMELESSSECRET failed",
        conninfo="host=db port=5432 password=hunter2secret user=lw",
        dsn_repr="{'password': 'reprsecret', 'host': 'db'}",
        split="token was tok-abc\ndef-123456 then",
        wrapped="token was tok-abcdef-\n    123456 then",
        quoted="url-encoded pa%20ss%2Fw%C3%B6rd%25 and pa+ss%2Fw%C3%B6rd%25",
        unicode_escaped=json.dumps({"p": "pa ss/wörd%"}),
    )
    for secret in (
        "WEBHOOKSECRET",
        "SCHEMELESSSECRET",
        "hunter2secret",
        "reprsecret",
        "def-123456",
        "123456",
        "w%C3%B6rd",
        "w\\u00f6rd",
        "wörd",
    ):
        assert secret not in text, (secret, text)
    assert "port=5432" in text  # only the secret goes


def test_settings_name_every_password_they_hold() -> None:
    settings = settings_from_mapping(
        {
            "database_url": "postgresql+psycopg://lw:Pa%40ss%25@db/lw",
            "sources": [
                {
                    "name": "warehouse",
                    "type": "sql",
                    "url": "postgresql://reader:s3cret-pw@wh/events",
                    "table": "usage",
                }
            ],
        },
        Environment.model_validate({"METRONOME_BEARER_TOKEN": "tok-123456789"}),
    )
    secrets = settings.secret_values()
    assert {"tok-123456789", "Pa%40ss%25", "Pa@ss%", "s3cret-pw"} <= set(secrets)
    assert environment_secrets(
        {"LEAKWATCH_DATABASE_URL": "postgresql://u:p%40ssword@h/d", "SLACK_BOT_TOKEN": "xoxb-1\n"}
    ) == ["xoxb-1", "p%40ssword", "p@ssword"]


def test_console_log_lines_carry_no_terminal_control_characters() -> None:
    text = _rendered(False, [], customer="a\x1b]0;owned\x07\x9b31m\u202eb", event_type="x\ny")
    assert not any(c in text for c in "\x1b\x07\x9b\u202e"), repr(text)
