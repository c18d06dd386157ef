"""Secrets never reach the log, whatever field they hide in."""

import io
import json

import structlog

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
