"""SlackNotifier and WebhookNotifier against the fake Slack: classification and secrecy."""

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from leakwatch.notify.blocks import SlackMessage
from leakwatch.notify.slack import LookupStatus, SendStatus, SlackNotifier, WebhookNotifier
from tests.fakes.fake_slack import FakeSlack

TOKEN = "xoxb-test-token"
MESSAGE = SlackMessage(
    text="hello", blocks=({"type": "section", "text": {"type": "mrkdwn", "text": "hi"}},)
)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def bot(slack: FakeSlack, **kw: object) -> SlackNotifier:
    args: dict[str, object] = {
        "token": TOKEN,
        "channel": "#billing-alerts",
        "base_url": slack.base_url,
    }
    args.update(kw)
    return SlackNotifier(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fault", "error", "status", "text", "retry_after_s"),
    [
        ("429", "", SendStatus.RETRYABLE, "ratelimited", 1.0),
        ("500", "", SendStatus.RETRYABLE, "http_500", None),
        ("error", "internal_error", SendStatus.RETRYABLE, "internal_error", None),
        ("error", "invalid_auth", SendStatus.PERMANENT, "invalid_auth", None),
        ("error", "channel_not_found", SendStatus.PERMANENT, "channel_not_found", None),
        ("error", "not_in_channel", SendStatus.PERMANENT, "not_in_channel", None),
    ],
)
def test_failures_are_classified_and_retry_after_is_passed_on(
    slack: FakeSlack,
    fault: str,
    error: str,
    status: SendStatus,
    text: str,
    retry_after_s: float | None,
) -> None:
    slack.inject(fault, retry_after_s=1, error=error or "internal_error")
    result = bot(slack).post(MESSAGE, marker="m1")
    assert (result.status, result.error, result.retry_after_s) == (status, text, retry_after_s)
    assert slack.state.messages == []


def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = SlackNotifier(
        token=TOKEN, channel="C0ALERTS", base_url=f"http://127.0.0.1:{port}/api/"
    ).post(MESSAGE, marker="m")
    assert result.status is SendStatus.RETRYABLE and result.error is not None
    assert result.error.startswith("connection")


def test_a_post_carries_the_marker_and_the_look_up_finds_it_by_name_or_id(slack: FakeSlack) -> None:
    for i in range(7):  # more than one page of history in the fake
        assert bot(slack).post(MESSAGE, marker=f"other-{i}").ok
    sent = bot(slack).post(MESSAGE, marker="wanted")
    assert sent.ok and sent.channel == "C0ALERTS"
    for _ in range(3):
        bot(slack).post(MESSAGE, marker="later")

    found = bot(slack).look_up(marker="other-0", oldest=LONG_AGO)
    assert found.status is LookupStatus.FOUND
    assert bot(slack).look_up(marker="wanted", oldest=LONG_AGO).ts == sent.ts
    assert bot(slack, channel="C0ALERTS").look_up(marker="nope", oldest=LONG_AGO).status is (
        LookupStatus.NOT_FOUND
    )


def test_an_invalid_token_is_permanent_and_the_token_never_logged(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "xoxb-wrong-secret"
    notifier = SlackNotifier(token=secret, channel="#billing-alerts", base_url=slack.base_url)
    with capture_logs() as logs:
        result = notifier.post(MESSAGE, marker="m")
        looked = notifier.look_up(marker="m", oldest=LONG_AGO)
    assert (result.status, result.error) == (SendStatus.PERMANENT, "invalid_auth")
    assert looked.status is LookupStatus.UNKNOWN
    assert secret not in caplog.text + str(logs) + repr(notifier) + str(result)


def test_webhook_posts_and_classifies_without_revealing_its_url(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = WebhookNotifier(url=slack.webhook_url)
    assert notifier.post(MESSAGE, marker="m").ok
    slack.inject("429", retry_after_s=1, methods={"webhook"})
    limited = notifier.post(MESSAGE, marker="m")
    slack.inject("error", error="no_service", methods={"webhook"})
    gone = notifier.post(MESSAGE, marker="m")
    assert (limited.status, limited.retry_after_s) == (SendStatus.RETRYABLE, 1.0)
    assert (gone.status, gone.error) == (SendStatus.PERMANENT, "no_service")
    assert [m["text"] for m in slack.state.webhook_messages] == ["hello"]
    assert "secretwebhookpath" not in caplog.text + repr(notifier) + str(limited) + str(gone)
