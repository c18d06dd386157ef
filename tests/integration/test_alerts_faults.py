"""Alert edges under faults: two evaluators at once (a leader that lost its lock still
finishing while the new one starts), restarts during a pending period, silences that
expire, ack then resolve, a `by` group that disappears, health alerts that fire and
resolve. Stored state and the outbox must say each thing once.
"""

import threading
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import text
from sqlmodel import col, select

from leakwatch.clock import FakeClock
from leakwatch.core.alerting import AlertRule, GroupBy, NotificationKind
from leakwatch.notify.outbox import OutboxSender
from leakwatch.pipeline.alert import evaluate_alerts
from leakwatch.store.alerts import ack, silence
from leakwatch.store.db import SessionFactory, make_engine, session_factory, transaction
from leakwatch.store.models import Alert, AlertTransition, Notification
from tests.fakes.fake_slack import FakeSlack
from tests.support.alerts import RULE, add_samples


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


@pytest.fixture
def box(outbox: OutboxSender) -> OutboxSender:
    return outbox


def step(
    sessions: SessionFactory,
    clock: FakeClock,
    box: OutboxSender,
    rule: AlertRule = RULE,
    *,
    hours: float = 1,
) -> list[tuple[str, NotificationKind | None]]:
    clock.advance(hours * 3600)
    results = evaluate_alerts(sessions, [rule], clock.now())
    box.send_due()
    return [(r.scope, r.notification) for r in results]


def test_a_restart_during_the_pending_period_keeps_its_start(
    sessions: SessionFactory, clock: FakeClock, box: OutboxSender, slack: FakeSlack, db_url: str
) -> None:
    rule = replace(RULE, for_=timedelta(hours=2))
    add_samples(sessions, clock, leaks=30, matched=170)
    assert step(sessions, clock, box, rule) == [("", None)]  # pending from here
    engine = make_engine(db_url)  # a new process: nothing but the store carries over
    try:
        fresh = session_factory(engine)
        assert step(fresh, clock, box, rule) == [("", None)]
        assert step(fresh, clock, box, rule) == [("", NotificationKind.FIRE)]
        assert step(fresh, clock, box, rule) == [("", None)]
    finally:
        engine.dispose()
    assert len(slack.roots()) == 1


def test_a_resolve_held_by_a_silence_goes_out_in_the_thread_when_it_expires(
    sessions: SessionFactory, clock: FakeClock, box: OutboxSender, slack: FakeSlack
) -> None:
    add_samples(sessions, clock, leaks=30, matched=170)
    assert step(sessions, clock, box) == [("", NotificationKind.FIRE)]
    silence(sessions, RULE.name, clock.now() + timedelta(hours=2, minutes=30))
    add_samples(sessions, clock, leaks=0, matched=3000)  # the rate falls well below
    assert step(sessions, clock, box) == [("", None)]  # resolved, silenced
    assert step(sessions, clock, box) == [("", None)]
    assert step(sessions, clock, box) == [("", NotificationKind.RESOLVE)]  # silence over
    assert step(sessions, clock, box) == [("", None)]
    [root] = slack.roots()
    assert [m.text.split(":")[0] for m in slack.replies(root.ts)] == ["Resolved"]


def test_an_ack_ends_with_its_episode(
    sessions: SessionFactory, clock: FakeClock, box: OutboxSender, slack: FakeSlack
) -> None:
    add_samples(sessions, clock, leaks=30, matched=170)
    assert step(sessions, clock, box) == [("", NotificationKind.FIRE)]
    assert ack(sessions, RULE.name, clock.now()) == 1
    clock.advance(25 * 3600)
    add_samples(sessions, clock, leaks=0, matched=300)
    assert step(sessions, clock, box) == [("", NotificationKind.RESOLVE)]
    assert ack(sessions, RULE.name, clock.now()) == 0  # nothing firing to acknowledge
    clock.advance(25 * 3600)
    add_samples(sessions, clock, leaks=30, matched=170)
    assert step(sessions, clock, box) == [("", NotificationKind.FIRE)]
    # The new episode is not acknowledged: its repeat goes out.
    assert step(sessions, clock, box, hours=4) == [("", NotificationKind.REPEAT)]
    assert len(slack.roots()) == 2


def test_a_group_that_disappears_resolves_once_and_never_refires(
    sessions: SessionFactory, clock: FakeClock, box: OutboxSender, slack: FakeSlack
) -> None:
    rule = replace(RULE, by=GroupBy.EVENT_TYPE)
    add_samples(sessions, clock, leaks=30, matched=170, event_type="gone")
    add_samples(sessions, clock, leaks=0, matched=300, event_type="stays")
    assert step(sessions, clock, box, rule) == [
        ("event_type=gone", NotificationKind.FIRE),
        ("event_type=stays", None),
    ]
    said: list[NotificationKind | None] = []
    for _ in range(12):  # two days: "gone" ages out of the 24 h window and stays out
        add_samples(sessions, clock, leaks=0, matched=300, event_type="stays")
        said += [kind for scope, kind in step(sessions, clock, box, rule, hours=4) if kind]
    assert NotificationKind.FIRE not in said
    # Repeats only while its samples were still in the window; once none are left the
    # group is gone and its alert resolves, once.
    assert said.count(NotificationKind.REPEAT) <= 6
    assert said.count(NotificationKind.RESOLVE) == 1
    assert said[-1] is NotificationKind.RESOLVE
    assert len(slack.roots()) == 1
