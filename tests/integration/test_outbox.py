"""The outbox against the fake Slack: threads, outages, lost answers, crashes, dead letters.

Every test runs on SQLite and on Postgres (the `sessions` fixture) with slack-sdk
talking HTTP to the fake on loopback.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import Session, col, select

from leakwatch.clock import FakeClock
from leakwatch.notify.blocks import SlackMessage
from leakwatch.notify.outbox import OutboxKind, OutboxSender, enqueue
from leakwatch.notify.slack import SlackNotifier, WebhookNotifier
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import Alert, Notification
from leakwatch.store.outbox import outbox_summary
from tests.fakes.fake_slack import FakeSlack

TOKEN = "xoxb-test-token"


def bot(
    slack: FakeSlack, *, channel: str = "#billing-alerts", timeout_s: float = 5.0
) -> SlackNotifier:
    return SlackNotifier(token=TOKEN, channel=channel, base_url=slack.base_url, timeout_s=timeout_s)


def sender(
    sessions: SessionFactory,
    notifier: SlackNotifier | WebhookNotifier,
    clock: FakeClock,
    **kw: float,
) -> OutboxSender:
    return OutboxSender(sessions, notifier, clock, rng=random.Random(7), **kw)  # type: ignore[arg-type]


def make_alert(sessions: SessionFactory, name: str = "leak rate") -> int:
    with transaction(sessions) as session:
        alert = Alert(rule_name=name, scope="", status="firing", episode=1)
        session.add(alert)
        session.flush()
        assert alert.id is not None
        return alert.id


def episode_rows(
    sessions: SessionFactory,
    clock: FakeClock,
    alert_id: int,
    kinds: list[OutboxKind],
    episode: int = 1,
) -> None:
    """Enqueue an episode's notifications the way the alert shell does."""
    root_key = f"alert:{alert_id}:ep{episode}:fire"
    with transaction(sessions) as session:
        for i, kind in enumerate(kinds):
            key = (
                root_key if kind is OutboxKind.FIRE else f"alert:{alert_id}:ep{episode}:{kind}:{i}"
            )
            enqueue(
                session,
                dedup_key=key,
                kind=kind,
                message=SlackMessage(text=f"{kind} {i}", blocks=()),
                now=clock.now(),
                alert_id=alert_id,
                root_key=None if kind is OutboxKind.FIRE else root_key,
                episode=episode,
            )


def statuses(sessions: SessionFactory) -> list[tuple[str, str, int]]:
    with transaction(sessions) as session:
        rows = session.exec(select(Notification).order_by(Notification.id)).all()  # type: ignore[arg-type]
        return [(r.kind, r.status, r.attempts) for r in rows]


def drain(
    outbox: OutboxSender, clock: FakeClock, *, passes: int = 20, step_s: float = 60.0
) -> None:
    for _ in range(passes):
        outbox.send_due()
        clock.advance(step_s)


def test_fire_update_resolve_share_one_thread_and_the_root_shows_the_status(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    alert_id = make_alert(sessions)
    kinds = [
        OutboxKind.FIRE,
        OutboxKind.UPDATE,
        OutboxKind.EDIT,
        OutboxKind.RESOLVE,
        OutboxKind.EDIT,
    ]
    episode_rows(sessions, clock, alert_id, kinds)

    report = sender(sessions, bot(slack), clock).send_due()

    assert report.sent == 5
    [root] = slack.roots()
    assert [m.text for m in slack.replies(root.ts)] == ["update 1", "resolve 3"]
    assert root.edits == 2 and root.text == "edit 4"
    assert root.channel == "C0ALERTS"
    assert root.metadata == {
        "event_type": "leakwatch_notification",
        "event_payload": {"marker": root.marker},
    }
    with transaction(sessions) as session:
        alert = session.get(Alert, alert_id)
        assert alert is not None
        assert (alert.slack_channel, alert.slack_ts) == ("C0ALERTS", root.ts)
    assert {s for _, s, _ in statuses(sessions)} == {"sent"}


def test_enqueue_is_idempotent_by_dedup_key(sessions: SessionFactory, clock: FakeClock) -> None:
    alert_id = make_alert(sessions)
    for _ in range(3):
        episode_rows(sessions, clock, alert_id, [OutboxKind.FIRE])
    assert len(statuses(sessions)) == 1


def test_slack_down_for_a_while_then_every_message_goes_out_once_in_order(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    first, second = make_alert(sessions, "a"), make_alert(sessions, "b")
    episode_rows(sessions, clock, first, [OutboxKind.FIRE, OutboxKind.UPDATE])
    episode_rows(sessions, clock, second, [OutboxKind.FIRE, OutboxKind.RESOLVE])
    outbox = sender(sessions, bot(slack), clock, max_attempts=30, backoff_max_s=300)

    slack.set_down(True)
    drain(outbox, clock, passes=15)
    assert slack.state.messages == []
    pending = statuses(sessions)
    assert {s for _, s, _ in pending} == {"pending"}
    # Replies never went before their root: only roots were ever attempted.
    assert [a for k, _, a in pending if k != "fire"] == [0, 0]

    slack.set_down(False)
    drain(outbox, clock, passes=10, step_s=300)

    assert {s for _, s, _ in statuses(sessions)} == {"sent"}
    assert sorted(m.text for m in slack.state.messages) == [
        "fire 0",
        "fire 0",
        "resolve 1",
        "update 1",
    ]
    markers = slack.markers()
    assert len(markers) == len(set(markers)) == 4
    for root in slack.roots():
        assert len(slack.replies(root.ts)) == 1


def test_a_message_that_landed_but_whose_answer_was_lost_is_found_not_resent(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    alert_id = make_alert(sessions)
    episode_rows(sessions, clock, alert_id, [OutboxKind.FIRE, OutboxKind.RESOLVE])
    outbox = sender(sessions, bot(slack), clock)
    slack.inject("post_then_500", methods={"chat.postMessage"})

    first = outbox.send_due()
    assert first.retried == 1 and len(slack.state.messages) == 1
    drain(outbox, clock, passes=5)

    assert len(slack.state.messages) == 2
    assert [s for _, s, _ in statuses(sessions)] == ["sent", "sent"]
    [root] = slack.roots()
    assert len(slack.replies(root.ts)) == 1
    with transaction(sessions) as session:
        row = session.exec(select(Notification).where(Notification.kind == "fire")).one()
        assert row.slack_ts == root.ts


def test_a_lost_answer_on_a_thread_reply_is_found_in_the_thread(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    alert_id = make_alert(sessions)
    episode_rows(sessions, clock, alert_id, [OutboxKind.FIRE])
    outbox = sender(sessions, bot(slack), clock)
    outbox.send_due()
    episode_rows(sessions, clock, alert_id, [OutboxKind.FIRE, OutboxKind.RESOLVE])
    slack.inject("post_then_500", methods={"chat.postMessage"})

    drain(outbox, clock, passes=5)

    [root] = slack.roots()
    assert [m.text for m in slack.replies(root.ts)] == ["resolve 1"]
    assert "conversations.replies" in slack.state.requests
    assert [s for _, s, _ in statuses(sessions)] == ["sent", "sent"]


def test_when_slack_cannot_say_whether_it_has_the_message_nothing_is_posted(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    alert_id = make_alert(sessions)
    episode_rows(sessions, clock, alert_id, [OutboxKind.FIRE])
    outbox = sender(sessions, bot(slack), clock)
    slack.inject("post_then_500", methods={"chat.postMessage"})
    outbox.send_due()
    slack.inject("500", times=3, methods={"conversations.history", "conversations.list"})

    for _ in range(3):
        clock.advance(600)
        outbox.send_due()
    assert len(slack.state.messages) == 1
    drain(outbox, clock, passes=3, step_s=600)
    assert len(slack.state.messages) == 1
    assert [s for _, s, _ in statuses(sessions)] == ["sent"]


def test_a_crash_between_send_and_mark_does_not_send_twice(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock, db_url: str, tmp_path: Path
) -> None:
    """Kill a real sender process after Slack took its message, before it could mark it."""
    alert_id = make_alert(sessions)
    episode_rows(sessions, clock, alert_id, [OutboxKind.FIRE])
    slack.inject("hold", methods={"chat.postMessage"})
    child = textwrap.dedent(
        f"""
        import random
        from leakwatch.clock import FakeClock
        from leakwatch.notify.outbox import OutboxSender
        from leakwatch.notify.slack import SlackNotifier
        from leakwatch.store.db import make_engine, session_factory
        sessions = session_factory(make_engine({db_url!r}))
        notifier = SlackNotifier(token={TOKEN!r}, channel="#billing-alerts",
                                 base_url={slack.base_url!r}, timeout_s=30)
        clock = FakeClock(datetime.fromisoformat({clock.now().isoformat()!r}))
        OutboxSender(sessions, notifier, clock).send_due()
        raise SystemExit("the sender was meant to be killed before it marked anything")
        """
    )
    child = "from datetime import datetime\n" + child
    process = subprocess.Popen([sys.executable, "-c", child], env={**os.environ}, cwd=tmp_path)
    try:
        assert slack.state.hold_reached.wait(timeout=30), "the child never posted"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        slack.state.hold_release.set()
        if process.poll() is None:
            process.kill()
    assert len(slack.state.messages) == 1
    assert statuses(sessions) == [("fire", "pending", 1)]

    clock.advance(600)  # past the dead sender's lease
    report = sender(sessions, bot(slack), clock).send_due()

    assert report.already_sent == 1 and report.sent == 0
    assert len(slack.state.messages) == 1
    assert statuses(sessions) == [("fire", "sent", 2)]


def test_a_429_is_honoured_with_its_retry_after_and_stops_the_pass(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    for name in ("a", "b"):
        episode_rows(sessions, clock, make_alert(sessions, name), [OutboxKind.FIRE])
    slack.inject("429", retry_after_s=1)
    outbox = sender(sessions, bot(slack), clock)

    report = outbox.send_due()

    assert report.rate_limited and report.sent == 0 and report.retried == 1
    with transaction(sessions) as session:
        first = session.exec(select(Notification).order_by(Notification.id)).first()  # type: ignore[arg-type]
        assert first is not None
        assert first.next_attempt_at == clock.now() + timedelta(seconds=1)
        assert first.last_error == "ratelimited"
    clock.advance(1)
    assert outbox.send_due().sent == 2
    assert len(slack.state.messages) == 2


def test_a_timeout_is_retried_and_the_message_found_if_it_landed(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    alert_id = make_alert(sessions)
    episode_rows(sessions, clock, alert_id, [OutboxKind.FIRE])
    slack.state.hang_s = 1.0
    slack.inject("timeout", methods={"chat.postMessage"})
    outbox = sender(sessions, bot(slack, timeout_s=0.3), clock)

    assert outbox.send_due().retried == 1
    with transaction(sessions) as session:
        row = session.exec(select(Notification)).one()
        assert row.last_error == "timeout"
    drain(outbox, clock, passes=3)
    assert len(slack.state.messages) == 1
    assert statuses(sessions) == [("fire", "sent", 2)]


def test_permanent_errors_and_exhausted_attempts_become_visible_dead_letters(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    episode_rows(sessions, clock, make_alert(sessions, "a"), [OutboxKind.FIRE])
    episode_rows(sessions, clock, make_alert(sessions, "b"), [OutboxKind.FIRE])
    slack.inject("error", error="channel_not_found")
    slack.inject("500", times=3)
    outbox = sender(sessions, bot(slack), clock, max_attempts=3)

    drain(outbox, clock, passes=6, step_s=600)

    assert [(s, a) for _, s, a in statuses(sessions)] == [("dead", 1), ("dead", 3)]
    assert slack.state.messages == []
    with transaction(sessions) as session:
        summary = outbox_summary(session)
        assert summary.counts == {"dead": 2}
        assert [error for _, _, error in summary.dead] == [
            "look-up failed: http_500",
            "channel_not_found",
        ]
        assert _requeue_dead(session, now=clock.now()) == 2
    drain(outbox, clock, passes=2)
    assert len(slack.state.messages) == 2


def test_replies_of_a_dead_root_are_posted_unthreaded_and_edits_skipped(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    alert_id = make_alert(sessions)
    episode_rows(
        sessions,
        clock,
        alert_id,
        [OutboxKind.FIRE, OutboxKind.RESOLVE, OutboxKind.EDIT],
    )
    slack.inject("error", error="invalid_blocks")
    sender(sessions, bot(slack), clock).send_due()

    assert [(k, s) for k, s, _ in statuses(sessions)] == [
        ("fire", "dead"),
        ("resolve", "sent"),
        ("edit", "skipped"),
    ]
    assert [m.thread_ts for m in slack.state.messages] == [None]


def test_webhook_mode_posts_everything_unthreaded_and_skips_edits(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    alert_id = make_alert(sessions)
    episode_rows(
        sessions,
        clock,
        alert_id,
        [OutboxKind.FIRE, OutboxKind.UPDATE, OutboxKind.EDIT],
    )
    outbox = sender(sessions, WebhookNotifier(url=slack.webhook_url), clock)
    slack.inject("429", retry_after_s=0, methods={"webhook"})

    drain(outbox, clock, passes=3)

    assert [m["text"] for m in slack.state.webhook_messages] == ["fire 0", "update 1"]
    assert [(k, s) for k, s, _ in statuses(sessions)] == [
        ("fire", "sent"),
        ("update", "sent"),
        ("edit", "skipped"),
    ]


def test_webhook_mode_is_at_least_once_when_an_answer_is_lost(
    sessions: SessionFactory, slack: FakeSlack, clock: FakeClock
) -> None:
    """The documented trade-off: a webhook cannot be asked, so a lost answer means a resend."""
    episode_rows(sessions, clock, make_alert(sessions), [OutboxKind.FIRE])
    slack.inject("post_then_500", methods={"webhook"})
    drain(sender(sessions, WebhookNotifier(url=slack.webhook_url), clock), clock, passes=3)
    assert [m["text"] for m in slack.state.webhook_messages] == ["fire 0", "fire 0"]
    assert statuses(sessions) == [("fire", "sent", 2)]


def _requeue_dead(session: Session, *, now: datetime) -> int:
    """What an operator's SQL does to retry dead letters: pending again, attempts kept
    above zero so a message that did land is found, not re-sent."""
    result = session.execute(
        update(Notification)
        .where(col(Notification.status) == "dead")
        .values(status="pending", next_attempt_at=now, attempts=1)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
