"""Fixtures the alert and outbox tests share: a fake clock, a fake Slack on its time,
and an outbox sender delivering to it; the object-storage tests' S3 server and buckets.
A module may define its own to differ."""

import itertools
import random
from collections.abc import Iterator

import pytest

from leakwatch.clock import FakeClock
from leakwatch.notify.outbox import OutboxSender
from leakwatch.notify.slack import SlackNotifier
from leakwatch.store.db import SessionFactory
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.moto_s3 import MotoS3, moto_s3_server

_buckets = itertools.count()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server on a free loopback port, for the whole session."""
    with moto_s3_server() as server:
        yield server


@pytest.fixture
def bucket(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the standard AWS environment names the server, as a user's would."""
    for name, value in moto_s3.environment().items():
        monkeypatch.setenv(name, value)
    name = f"usage-logs-{next(_buckets)}"
    moto_s3.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
    return name


@pytest.fixture
def slack(clock: FakeClock) -> Iterator[FakeSlack]:
    with FakeSlack(now_s=lambda: clock.now().timestamp()) as fake:
        yield fake


@pytest.fixture
def outbox(sessions: SessionFactory, slack: FakeSlack, clock: FakeClock) -> OutboxSender:
    notifier = SlackNotifier(
        token="xoxb-test-token", channel="#billing-alerts", base_url=slack.base_url
    )
    return OutboxSender(sessions, notifier, clock, rng=random.Random(1))
