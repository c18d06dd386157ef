"""Fixtures the integration tests share: a fake Slack on the fake clock's time and an
outbox sender delivering to it; the object-storage tests' S3 server and buckets; the
CLI tests' `setup` (a simulated Metronome, a source log and a config file).
A module may define its own to differ."""

import itertools
import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from leakwatch.clock import FakeClock, SystemClock
from leakwatch.metronome.client import SearchClient
from leakwatch.notify.outbox import OutboxSender
from leakwatch.notify.slack import SlackNotifier
from leakwatch.simulator import SimulatorServer, build_demo_state
from leakwatch.simulator.scenario import build_scenario, ingest_scenario
from leakwatch.store.db import SessionFactory
from tests.fakes.fake_slack import FakeSlack
from tests.fakes.moto_s3 import MotoS3, moto_s3_server
from tests.support.cli import TOKEN, Setup, clean_environment

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


@pytest.fixture
def setup(tmp_path: Path, db_url: str) -> Iterator[Setup]:
    clock = SystemClock()
    now = clock.now()
    scenario = build_scenario(now=now, events=600, oldest=timedelta(days=2), seed=3)
    state = build_demo_state(clock=clock)
    state.faults.silent_drop_ids.update(scenario.dropped_ids)
    log = tmp_path / "usage.jsonl"
    scenario.write_log(log)
    with SimulatorServer(state, token=TOKEN) as server:
        with SearchClient(
            base_url=server.base_url, token=TOKEN, clock=clock, requests_per_second=100
        ) as client:
            ingest_scenario(scenario, client.ingest)
        (tmp_path / "leakwatch.toml").write_text(
            f"""
state_dir = "{tmp_path / "state"}"
[metronome]
requests_per_second = 50
[[sources]]
name = "gateway"
type = "jsonl"
path = "{log}"
sample_size = 300
[checks]
min_checks_before_missing = 1
[[alerts]]
name = "leak rate"
threshold = 0.01
min_samples = 50
[report]
out_dir = "{tmp_path / "reports"}"
prices = {{ api_request = 0.002 }}
"""
        )
        env = clean_environment()
        env.update(
            {
                "METRONOME_BEARER_TOKEN": TOKEN,
                "METRONOME_BASE_URL": server.base_url,
                "LEAKWATCH_DATABASE_URL": db_url,
            }
        )
        yield Setup(tmp_path, env, scenario, server)
