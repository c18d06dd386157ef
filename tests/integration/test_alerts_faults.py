"""Alert edges under faults: two evaluators at once (a leader that lost its lock still
finishing while the new one starts), restarts during a pending period, silences that
expire, ack then resolve, a `by` group that disappears, health alerts that fire and
resolve. Stored state and the outbox must say each thing once.
"""

import random
import threading
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import text
from sqlmodel import col, select

from leakwatch.alerts import evaluate_alerts
from leakwatch.clock import FakeClock
from leakwatch.core.alerting import AlertRule, NotificationKind, RateKind
from leakwatch.notify.outbox import OutboxSender
from leakwatch.notify.slack import SlackNotifier
from leakwatch.store.db import SessionFactory, make_engine, session_factory, transaction
from leakwatch.store.models import Alert, AlertTransition, Notification
from tests.fakes.fake_slack import FakeSlack
from tests.integration.test_alerts import add_samples

RULE = AlertRule(
    name="leak rate",
    rate=RateKind.LEAK_RATE,
    threshold=0.05,
    window=timedelta(hours=24),
    min_samples=100,
    repeat_interval=timedelta(hours=4),
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def slack(clock: FakeClock) -> Iterator[FakeSlack]:
    with FakeSlack(now_s=lambda: clock.now().timestamp()) as fake:
        yield fake


def outbox(sessions: SessionFactory, slack: FakeSlack, clock: FakeClock) -> OutboxSender:
    notifier = SlackNotifier(
        token="xoxb-test-token", channel="#billing-alerts", base_url=slack.base_url
    )
    return OutboxSender(sessions, notifier, clock, rng=random.Random(1))


def transitions(sessions: SessionFactory) -> list[tuple[int, str]]:
    with transaction(sessions) as session:
        rows = session.exec(select(AlertTransition).order_by(col(AlertTransition.id))).all()
        return [(r.episode, r.transition) for r in rows]


def notifications(sessions: SessionFactory) -> list[str]:
    with transaction(sessions) as session:
        rows = session.exec(select(Notification).order_by(col(Notification.id))).all()
        return [r.kind for r in rows]


@pytest.mark.parametrize("transition", ["fire", "resolve"])
def test_two_evaluators_at_once_record_and_say_each_transition_once(
    pg_database_url: str, clock: FakeClock, transition: str
) -> None:
    """The old leader (lock lost, job still running) and the new one evaluate together."""
    engine = make_engine(pg_database_url)
    sessions = session_factory(engine)
    try:
        with transaction(sessions) as session:
            for table in ("notification", "alert_transition", "alert", "sampled_event"):
                session.execute(text(f"DELETE FROM {table}"))
            session.add(Alert(rule_name=RULE.name, scope="", kind="rate", severity="warning"))
        add_samples(sessions, clock, leaks=30, matched=170)
        if transition == "resolve":
            assert [r.notification for r in evaluate_alerts(sessions, [RULE], clock.now())] == [
                NotificationKind.FIRE
            ]
            clock.advance(60)
            add_samples(sessions, clock, leaks=0, matched=3000)
        libpq = pg_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        database = libpq.rsplit("/", 1)[1]
        errors: list[BaseException] = []

        def evaluate(offset_s: float) -> None:
            try:
                evaluate_alerts(sessions, [RULE], clock.now() + timedelta(seconds=offset_s))
            except BaseException as exc:
                errors.append(exc)

        # Hold the alert row so both evaluators are in flight before either commits.
        with psycopg.connect(libpq) as holder:
            holder.execute("SELECT id FROM alert FOR UPDATE")
            threads = [threading.Thread(target=evaluate, args=(s,)) for s in (0.0, 1.0)]
            for thread in threads:
                thread.start()
            with psycopg.connect(libpq, autocommit=True) as watcher:
                for _ in range(200):
                    waiting = watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = %s AND wait_event_type = 'Lock'",
                        (database,),
                    ).fetchone()
                    if waiting and waiting[0] >= 2:
                        break
                    threading.Event().wait(0.02)
                else:
                    raise AssertionError("the evaluators never reached the alert row")
            holder.rollback()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        if transition == "fire":
            assert transitions(sessions) == [(1, "fire")]
            assert notifications(sessions) == ["fire"]
        else:
            assert transitions(sessions) == [(1, "fire"), (1, "resolve")]
            assert notifications(sessions) == ["fire", "resolve", "edit"]
    finally:
        engine.dispose()
