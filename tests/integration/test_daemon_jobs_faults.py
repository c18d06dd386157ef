"""The daemon's alerts-and-outbox job when evaluation keeps failing: what is already
queued is still delivered. Real Postgres (a failing trigger makes every recorded alert
transition raise, as a broken or locked-down table would), the real Runtime and Jobs,
the fake Slack on loopback.
"""

from pathlib import Path

import psycopg

from leakwatch.clock import FakeClock
from leakwatch.config import Environment, settings_from_mapping
from leakwatch.daemon.health import DaemonStatus
from leakwatch.daemon.jobs import Jobs
from leakwatch.daemon.metrics import DaemonMetrics
from leakwatch.notify.blocks import SlackMessage
from leakwatch.notify.outbox import OutboxKind, enqueue
from leakwatch.store.db import transaction
from leakwatch.wiring import build_runtime
from tests.fakes.fake_slack import FakeSlack
from tests.support.alerts import add_samples


def test_a_failing_evaluation_does_not_hold_back_what_the_outbox_already_holds(
    tmp_path: Path, pg_url: str
) -> None:
    clock = FakeClock()
    log = tmp_path / "usage.jsonl"
    log.write_text("", encoding="utf-8")
    with FakeSlack(now_s=lambda: clock.now().timestamp()) as slack:
        env = Environment.model_validate(
            {
                "METRONOME_BEARER_TOKEN": "token-0123456789",
                "SLACK_BOT_TOKEN": "xoxb-test-token",
                "LEAKWATCH_SLACK_BASE_URL": slack.base_url,
            }
        )
        settings = settings_from_mapping(
            {
                "database_url": pg_url,
                "state_dir": str(tmp_path / "state"),
                "sources": [{"name": "gateway", "type": "jsonl", "path": str(log)}],
                "slack": {"channel": "#billing-alerts"},
                "alerts": [
                    {"name": "leaks", "rate": "leak_rate", "threshold": 0.05, "min_samples": 100}
                ],
            },
            env,
        )
        runtime = build_runtime(settings, clock=clock)
        try:
            metrics = DaemonMetrics()
            jobs = Jobs(
                runtime,
                clock=clock,
                metrics=metrics,
                status=DaemonStatus(clock),
                may_run=lambda: True,
            )
            with transaction(runtime.sessions) as session:
                enqueue(
                    session,
                    dedup_key="report:2026-W47",
                    kind=OutboxKind.REPORT,
                    message=SlackMessage(text="weekly report", blocks=()),
                    now=clock.now(),
                )
            add_samples(runtime.sessions, clock, leaks=30, matched=170)
            libpq = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
            with psycopg.connect(libpq, autocommit=True) as conn:
                conn.execute(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE EXCEPTION 'alert_transition is read-only'; END $$"
                )
                conn.execute(
                    "CREATE TRIGGER refuse BEFORE INSERT ON alert_transition"
                    " FOR EACH ROW EXECUTE FUNCTION refuse()"
                )

            jobs.alerts_and_outbox()

            assert [m.text for m in slack.state.messages] == ["weekly report"]
            # The evaluation's failure is still a failed job, counted and logged.
            failures = metrics.registry.get_sample_value(
                "leakwatch_job_failures_total", {"job": "alerts_and_outbox"}
            )
            assert failures == 1
        finally:
            runtime.close()


def test_one_alert_that_cannot_be_recorded_does_not_silence_the_others(
    tmp_path: Path, pg_url: str
) -> None:
    clock = FakeClock()
    log = tmp_path / "usage.jsonl"
    log.write_text("", encoding="utf-8")
    with FakeSlack(now_s=lambda: clock.now().timestamp()) as slack:
        env = Environment.model_validate(
            {
                "METRONOME_BEARER_TOKEN": "token-0123456789",
                "SLACK_BOT_TOKEN": "xoxb-test-token",
                "LEAKWATCH_SLACK_BASE_URL": slack.base_url,
            }
        )
        rule = {"rate": "leak_rate", "threshold": 0.05, "min_samples": 100}
        settings = settings_from_mapping(
            {
                "database_url": pg_url,
                "state_dir": str(tmp_path / "state"),
                "sources": [{"name": "gateway", "type": "jsonl", "path": str(log)}],
                "slack": {"channel": "#billing-alerts"},
                # "a broken" sorts and runs first.
                "alerts": [{"name": "a broken", **rule}, {"name": "b works", **rule}],
            },
            env,
        )
        runtime = build_runtime(settings, clock=clock)
        try:
            metrics = DaemonMetrics()
            jobs = Jobs(
                runtime,
                clock=clock,
                metrics=metrics,
                status=DaemonStatus(clock),
                may_run=lambda: True,
            )
            add_samples(runtime.sessions, clock, leaks=30, matched=170)
            libpq = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
            with psycopg.connect(libpq, autocommit=True) as conn:
                conn.execute(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                    " IF (SELECT rule_name FROM alert WHERE id = NEW.alert_id) = 'a broken' THEN"
                    " RAISE EXCEPTION 'cannot record'; END IF; RETURN NEW; END $$"
                )
                conn.execute(
                    "CREATE TRIGGER refuse BEFORE INSERT ON alert_transition"
                    " FOR EACH ROW EXECUTE FUNCTION refuse()"
                )

            jobs.alerts_and_outbox()

            [root] = slack.roots()
            assert "b works" in root.text and "a broken" not in root.text
            failures = metrics.registry.get_sample_value(
                "leakwatch_job_failures_total", {"job": "alerts_and_outbox"}
            )
            assert failures == 1
        finally:
            runtime.close()
