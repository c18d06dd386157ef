"""Fixtures the alert and outbox tests share: a fake clock, a fake Slack on its time,
and an outbox sender delivering to it. A module may define its own to differ."""

import random
from collections.abc import Iterator

import pytest

from leakwatch.clock import FakeClock
from leakwatch.notify.outbox import OutboxSender
from leakwatch.notify.slack import SlackNotifier
from leakwatch.store.db import SessionFactory
from tests.fakes.fake_slack import FakeSlack


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


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
