"""Slack failing in every way the outbox must survive: each alert delivered exactly once
after recovery, in thread order (bot mode); at least once in webhook mode.

Runs on SQLite and Postgres (the `sessions` fixture) against the loopback fake Slack,
with a FakeClock driving retries: an outage of hours costs no wall-clock time.
"""

import random
import threading

import pytest
from sqlmodel import col, select

from leakwatch.clock import FakeClock
from leakwatch.notify.blocks import SlackMessage
from leakwatch.notify.outbox import OutboxKind, OutboxSender, enqueue
from leakwatch.notify.slack import SlackNotifier
from leakwatch.store.db import SessionFactory, make_engine, session_factory, transaction
from leakwatch.store.models import Alert, Notification
from tests.fakes.fake_slack import FakeSlack
from tests.support.daemon import admin, terminate
from tests.support.databases import postgres_store

TOKEN = "xoxb-test-token"


def outbox(sessions: SessionFactory, slack: FakeSlack, clock: FakeClock) -> OutboxSender:
    notifier = SlackNotifier(
        token=TOKEN, channel="#billing-alerts", base_url=slack.base_url, timeout_s=0.3
    )
    return OutboxSender(sessions, notifier, clock, rng=random.Random(3))


def episode(sessions: SessionFactory, clock: FakeClock, name: str) -> int:
    """An alert with fire, update, resolve queued the way the alert shell does."""
    with transaction(sessions) as session:
        alert = Alert(rule_name=name, scope="", status="firing", episode=1)
        session.add(alert)
        session.flush()
        assert alert.id is not None
        root = f"alert:{alert.id}:ep1:fire"
        for kind in (OutboxKind.FIRE, OutboxKind.UPDATE, OutboxKind.RESOLVE):
            enqueue(
                session,
                dedup_key=root if kind is OutboxKind.FIRE else f"{root}:{kind}",
                kind=kind,
                message=SlackMessage(text=f"{name} {kind}", blocks=()),
                now=clock.now(),
                alert_id=alert.id,
                root_key=None if kind is OutboxKind.FIRE else root,
                episode=1,
            )
        return alert.id


def assert_each_once_in_thread_order(slack: FakeSlack, names: list[str]) -> None:
    roots = slack.roots()
    assert sorted(r.text for r in roots) == sorted(f"{n} fire" for n in names)
    for root in roots:
        name = root.text.removesuffix(" fire")
        assert [m.text for m in slack.replies(root.ts)] == [f"{name} update", f"{name} resolve"]
    assert len(slack.state.messages) == 3 * len(names)


def run_for(box: OutboxSender, clock: FakeClock, *, minutes: int) -> None:
    for _ in range(minutes):
        box.send_due()
        clock.advance(60)


@pytest.mark.parametrize("fault", ["500", "429", "timeout", "error"])
def test_slack_failing_for_hours_loses_nothing_and_doubles_nothing(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock, fault: str
) -> None:
    names = ["a", "b"]
    for name in names:
        episode(sessions, clock, name)
    slack.state.hang_s = 0.4
    slack.inject(fault, times=10_000, retry_after_s=30, error="service_unavailable")
    box = outbox(sessions, slack, clock)
    # Three hours of a failing Slack (one pass every 5 minutes: backoff outgrows that
    # within the first half hour). Each timeout costs real seconds: a few suffice.
    for _ in range(36):
        box.send_due()
        clock.advance(300)
        if fault == "timeout" and len(slack.state.faults) < 10_000 - 4:
            clock.advance(3 * 3600)
            break
    slack.state.faults.clear()
    run_for(box, clock, minutes=20)

    with transaction(sessions) as session:
        rows = session.exec(select(Notification).order_by(col(Notification.id))).all()
        assert [r.status for r in rows] == ["sent"] * 6
    assert_each_once_in_thread_order(slack, names)


def test_a_message_slack_refuses_for_a_whole_day_becomes_a_visible_dead_letter(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    episode(sessions, clock, "a")
    slack.set_down(True)
    box = OutboxSender(
        sessions,
        SlackNotifier(token=TOKEN, channel="#billing-alerts", base_url=slack.base_url),
        clock,
        retry_for_s=6 * 3600,
        rng=random.Random(3),
    )
    for _ in range(5 * 12):  # five hours: still trying
        box.send_due()
        clock.advance(300)
    with transaction(sessions) as session:
        rows = session.exec(select(Notification).order_by(col(Notification.id))).all()
        assert [r.status for r in rows] == ["pending"] * 3
    for _ in range(3 * 12):  # past six hours: given up, kept as dead letters
        box.send_due()
        clock.advance(300)
    with transaction(sessions) as session:
        rows = session.exec(select(Notification).order_by(col(Notification.id))).all()
        assert [r.status for r in rows] == ["dead"] * 3
    assert slack.state.messages == []


def test_postgres_lost_between_send_and_mark_neither_loses_nor_doubles(
    slack: FakeSlack, clock: FakeClock
) -> None:
    """Slack takes the message, then the sender cannot record it: found later, not resent."""
    with postgres_store() as url:
        engine = make_engine(url)
        sessions = session_factory(engine)
        name = url.rsplit("/", 1)[1]
        try:
            episode(sessions, clock, "a")
            slack.inject("hold", methods={"chat.postMessage"})
            box = outbox(sessions, slack, clock)
            failures: list[BaseException] = []

            def send() -> None:
                try:
                    box.send_due()
                except BaseException as exc:
                    failures.append(exc)

            sender = threading.Thread(target=send)
            sender.start()
            assert slack.state.hold_reached.wait(timeout=20)
            admin(url, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            try:
                terminate(url)
                slack.state.hold_release.set()
                sender.join(timeout=30)
            finally:
                admin(url, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
            assert failures, "the sender was meant to lose its database"
            assert len(slack.state.messages) == 1

            clock.advance(600)  # past the lost attempt's lease
            run_for(box, clock, minutes=3)
            with transaction(sessions) as session:
                rows = session.exec(select(Notification).order_by(col(Notification.id))).all()
                assert [r.status for r in rows] == ["sent"] * 3
            assert_each_once_in_thread_order(slack, ["a"])
        finally:
            engine.dispose()
