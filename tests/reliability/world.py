"""An in-process leakwatch world for the reliability suite: real cycles, fake time.

The simulator serves a leaky scenario over loopback HTTP, the fake Slack takes the
notifications, the store is a real SQLite file (or Postgres, by URL), and the daemon's
own `Jobs` run the check cycle and the alert/outbox pass — so a job that fails is
logged and survived exactly as in `leakwatch run`. Time is a `FakeClock` shared by
the client, the cycle and the simulator, so an hour of cycles takes seconds.

`World.truth_report()` compares what the store holds with the scenario's ground
truth: events lost (recorded with a wrong outcome, or stuck undecided) and doubled
(one event recorded twice); `notification_report()` does the same for Slack.
"""

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import text

from leakwatch.clock import FakeClock
from leakwatch.config import Settings, load_settings
from leakwatch.daemon.health import DaemonStatus
from leakwatch.daemon.jobs import Jobs
from leakwatch.daemon.metrics import DaemonMetrics
from leakwatch.logs import configure_logging
from leakwatch.metronome.client import SearchClient
from leakwatch.pipeline.runtime import Runtime
from leakwatch.simulator import SimulatorServer, build_demo_state
from leakwatch.simulator.scenario import Scenario, build_scenario, ingest_scenario
from leakwatch.wiring import build_runtime
from tests.fakes.fake_slack_files import FakeSlackWithFiles

TOKEN = "reliability-metronome-token-5b1e"
SLACK_TOKEN = "xoxb-reliability-slack-token-77aa"
START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EVERY = timedelta(minutes=15)


def leak_alert(*, window: str = "30d", repeat_interval: str = "4h") -> str:
    """A leak-rate alert rule (TOML) the scenario's leaks trip after ten samples."""
    return (
        '\n[[alerts]]\nname = "leaks"\nrate = "leak_rate"\nthreshold = 0.01\n'
        f'min_samples = 10\nwindow = "{window}"\nrepeat_interval = "{repeat_interval}"\n'
    )


def write_config(
    path: Path,
    *,
    database_url: str,
    simulator_url: str,
    log: Path,
    state_dir: Path,
    sample_size: int,
    timeout_s: float,
    every: str = "15m",
    extra: str = "",
) -> None:
    path.write_text(
        textwrap.dedent(
            f"""
            database_url = "{database_url}"
            state_dir = "{state_dir}"

            [metronome]
            base_url = "{simulator_url}"
            requests_per_second = 20
            max_ids_per_request = 10
            timeout_seconds = {timeout_s}

            [[sources]]
            name = "gateway"
            type = "jsonl"
            path = "{log}"
            sample_size = {sample_size}
            settle_delay = "10m"
            max_age = "33d"

            [checks]
            every = "{every}"
            missing_grace = "2h"

            [health]
            source_stale_after = "30d"

            [slack]
            channel = "#billing-alerts"
            """
        )
        + extra,
        encoding="utf-8",
    )


@dataclass
class World:
    clock: FakeClock
    simulator: SimulatorServer
    slack: FakeSlackWithFiles
    scenario: Scenario
    runtime: Runtime
    jobs: Jobs
    status: DaemonStatus
    metrics: DaemonMetrics
    log_path: Path
    cycles: int = 0
    # Exceptions that escaped a job: in `leakwatch run` each would end the daemon.
    crashes: int = 0
    every: timedelta = EVERY

    def cycle(self) -> None:
        """One daemon beat: the check job, then alerts and the outbox; then time moves on."""
        try:
            self.jobs.check_cycle()
            self.jobs.alerts_and_outbox()
        except BaseException:
            self.crashes += 1
            raise
        self.cycles += 1
        self.clock.advance(self.every.total_seconds())

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self.runtime.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]

    def rows(self) -> list[tuple[str, str, str, str]]:
        return [
            (str(s), str(t), str(h), str(o))
            for s, t, h, o in self.query(
                "SELECT source, transaction_id, payload_hash, outcome FROM sampled_event"
            )
        ]

    def recover(self, *, max_cycles: int = 12) -> None:
        """Clean cycles until nothing sampled is undecided (or `max_cycles` pass)."""
        self.simulator.faults.clear()
        for _ in range(max_cycles):
            self.cycle()
            undecided = self.query(
                "SELECT count(*) FROM sampled_event"
                " WHERE outcome IN ('pending', 'error') AND outcome <> 'expired'"
            )[0][0]
            if not undecided:
                break
        self.jobs.alerts_and_outbox()

    def truth_report(self) -> tuple[int, int, int, list[tuple[str, str, str]]]:
        """(events, lost, doubled, examples): lost = recorded outcome is not the truth."""
        rows = self.rows()
        truth = self.scenario.truth_by_identity()
        identities = [(s, t, h) for s, t, h, _ in rows]
        doubled = len(identities) - len(set(identities))
        wrong = [(t, o, truth[(t, h)].value) for _, t, h, o in rows if truth[(t, h)].value != o]
        return len(rows), len(wrong), doubled, wrong[:5]

    def notification_report(self) -> tuple[int, int, int]:
        """(notifications, lost, doubled): queued vs posted, and markers seen twice."""
        statuses = dict(self.query("SELECT status, count(*) FROM notification GROUP BY status"))
        queued = sum(int(n) for n in statuses.values())
        unsent = sum(int(n) for s, n in statuses.items() if s not in ("sent", "skipped"))
        markers = [m for m in self.slack.markers() if m is not None]
        posted = self.query(
            "SELECT count(*) FROM notification WHERE status = 'sent' AND kind <> 'edit'"
        )[0][0]
        lost = unsent + max(0, int(posted) - len(self.slack.state.messages))
        doubled = len(markers) - len(set(markers))
        doubled += max(0, len(self.slack.state.messages) - int(posted))
        return queued, lost, doubled

    def titles(self) -> list[str]:
        return [m.text for m in self.slack.roots()]

    def resolved(self, title: str) -> bool:
        roots = [m for m in self.slack.roots() if title in m.text]
        return bool(roots) and any(
            "resolved" in r.text.lower() for r in self.slack.replies(roots[-1].ts)
        )


@dataclass
class Served:
    """The outside world of one test: Metronome (simulator), Slack (fake), a config."""

    clock: FakeClock
    simulator: SimulatorServer
    slack: FakeSlackWithFiles
    scenario: Scenario
    config_path: Path
    log_path: Path
    env: dict[str, str]

    def settings(self) -> Settings:
        return load_settings(self.config_path, environ=self.env)


@contextmanager
def debug_logs(path: Path, secrets: list[str]) -> Iterator[Path]:
    """Log as `leakwatch run` does (JSON lines, the settings' secrets redacted by value),
    at debug level, into `path`; restore the previous logging afterwards.

    Also keeps failing jobs cheap: the console renderer's rich tracebacks cost seconds.
    """
    saved = structlog.get_config()
    with path.open("a", encoding="utf-8") as stream:
        redactor = configure_logging(level="debug", json=True, stream=stream)
        for secret in secrets:
            redactor.add(secret)
        try:
            yield path
        finally:
            structlog.configure(**saved)


@contextmanager
def served(
    tmp_path: Path,
    *,
    events: int = 1200,
    sample_size: int = 30,
    timeout_s: float = 0.3,
    database_url: str | None = None,
    extra_config: str = "",
    seed: int = 9,
    token: str = TOKEN,
    slack_token: str = SLACK_TOKEN,
    every: str = "15m",
) -> Iterator[Served]:
    """Start the simulator (the scenario ingested) and the fake Slack; write the config."""
    clock = FakeClock(START)
    scenario = build_scenario(now=clock.now(), events=events, seed=seed)
    log = tmp_path / "usage.jsonl"
    scenario.write_log(log)
    state = build_demo_state(clock=clock)
    state.faults.silent_drop_ids.update(scenario.dropped_ids)
    state.faults.hang_s = 5.0
    with (
        SimulatorServer(state, token=token, clock=clock) as simulator,
        FakeSlackWithFiles() as slack,
    ):
        with SearchClient(
            base_url=simulator.base_url, token=token, clock=clock, requests_per_second=1000
        ) as client:
            ingest_scenario(scenario, client.ingest)
        slack.state.token = slack_token
        slack.state.now_s = lambda: clock.now().timestamp()
        config = tmp_path / "leakwatch.toml"
        write_config(
            config,
            database_url=database_url or f"sqlite:///{tmp_path / 'leakwatch.db'}",
            simulator_url=simulator.base_url,
            log=log,
            state_dir=tmp_path / "state",
            sample_size=sample_size,
            timeout_s=timeout_s,
            every=every,
            extra=extra_config,
        )
        env = {
            "METRONOME_BEARER_TOKEN": token,
            "SLACK_BOT_TOKEN": slack_token,
            "LEAKWATCH_SLACK_BASE_URL": slack.base_url,
        }
        yield Served(clock, simulator, slack, scenario, config, log, env)


@contextmanager
def cycle_world(tmp_path: Path, **options: Any) -> Iterator[World]:
    """`served`, plus a Runtime and the daemon's Jobs in this process (see `World`)."""
    with (
        served(tmp_path, **options) as world,
        debug_logs(tmp_path / "leakwatch.log", world.settings().secret_values()),
    ):
        metrics = DaemonMetrics()
        runtime = build_runtime(world.settings(), clock=world.clock, observer=metrics.observer())
        status = DaemonStatus(world.clock)
        jobs = Jobs(
            runtime, clock=world.clock, metrics=metrics, status=status, may_run=lambda: True
        )
        try:
            yield World(
                world.clock,
                world.simulator,
                world.slack,
                world.scenario,
                runtime,
                jobs,
                status,
                metrics,
                world.log_path,
                every=runtime.settings.checks.every,
            )
        finally:
            runtime.close()
