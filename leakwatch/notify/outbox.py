"""The notification outbox: enqueue with the cause, deliver once. I/O (database, Slack).

Enqueue. `enqueue` writes a `Notification` row in the caller's session, so the alert
transition and its message commit together or not at all. It is idempotent by
`dedup_key` (INSERT … ON CONFLICT DO NOTHING on both Postgres and SQLite): writing the
same transition twice leaves one row.

Deliver. `OutboxSender.send_due()` runs Alertmanager's stage order for each due row:

1. *claim* — in its own committed transaction, bump `attempts` and push
   `next_attempt_at` out by a lease, guarded by the attempts value it read (optimistic:
   a second sender claiming the same row updates nothing and moves on). Because the
   bump commits *before* Slack is called, `attempts > 0` on a pending row means "an
   earlier attempt may have reached Slack".
2. *look up* — for such a row, ask Slack whether a message carrying the row's
   `delivery_marker` (in the message metadata) is already there:
   `conversations.replies` for a thread reply, `conversations.history` for a root.
   Found → mark it sent with that ts and post nothing. Unknown (Slack not answering)
   → retry later, never post blind. The lease (longer than the HTTP timeout) makes
   sure the earlier attempt's request has finished before anyone looks.
3. *send* — `chat.postMessage` (replies with the episode root's `thread_ts`) or
   `chat.update` for an edit of the root. Edits are idempotent by nature (they set
   content), so they need no look-up.
4. *mark* — only after Slack said ok: status `sent`, the ts and channel id, and for a
   root the alert's `slack_ts`/`slack_channel`.

A crash between 3 and 4 leaves a pending row with attempts > 0, so step 2 finds the
message instead of sending it again. Failures the notifier calls retryable are retried
with exponential backoff and jitter (or exactly Slack's `Retry-After` on a 429, after
which the pass stops: the channel is rate limited for every row) for as long as a row
is younger than `retry_for_s` (a day by default, so a Slack outage of hours delays
alerts but loses none); permanent failures and rows past that age (or past an explicit
`max_attempts`) become `dead`, kept and shown by `store.outbox.outbox_summary`.

Order. Rows of one alert go out strictly in id order: a reply waits for its root, so
it can thread under the root's ts, and a resolve never overtakes its fire. A root
that died (or was skipped while silenced) leaves its replies to be posted unthreaded
rather than lost.

Webhooks cannot be asked what they delivered and return no ts. For them the sender
chooses *at least once*: a row whose earlier attempt may have landed (a timeout, a
crash mid-request) is posted again, so a duplicate is possible in exactly that case
and no other; a lost alert is worse than a doubled one. Edits are skipped there.
"""

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from sqlmodel import Session

from leakwatch.clock import Clock
from leakwatch.core.results import SendReport
from leakwatch.notify.blocks import SlackMessage
from leakwatch.notify.slack import LookupStatus, Notifier, SendResult, SendStatus
from leakwatch.store import outbox as rows
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import Notification
from leakwatch.store.outbox import NotificationStatus

# A look-up for a message posted by an earlier attempt searches from a little before
# the row was written, for clock skew between this host and Slack.
LOOKUP_SKEW = timedelta(minutes=10)


class OutboxKind(StrEnum):
    FIRE = "fire"
    UPDATE = "update"
    REPEAT = "repeat"
    RESOLVE = "resolve"
    EDIT = "edit"
    REPORT = "report"


def delivery_marker(dedup_key: str) -> str:
    """Derive the marker Slack carries in metadata; the same key always gives the same one."""
    return hashlib.sha256(dedup_key.encode("utf-8")).hexdigest()[:32]


def enqueue(
    session: Session,
    *,
    dedup_key: str,
    kind: OutboxKind,
    message: SlackMessage,
    now: datetime,
    alert_id: int | None = None,
    root_key: str | None = None,
    episode: int | None = None,
    status: NotificationStatus = NotificationStatus.PENDING,
    note: str | None = None,
) -> Notification:
    """Add a notification to the outbox in the caller's transaction; once per `dedup_key`.

    `root_key` names the dedup key of the message to thread under (replies) or to
    edit (EDIT). Returns the row, the existing one when the key was already there.
    """
    values: dict[str, Any] = {
        "dedup_key": dedup_key,
        "alert_id": alert_id,
        "kind": kind.value,
        "payload": {
            "message": message.to_payload(),
            "root_key": root_key,
            "episode": episode,
        },
        "status": status.value,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
        "delivery_marker": delivery_marker(dedup_key),
        "last_error": note,
    }
    return rows.insert_once(session, values)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    attempts: int
    kind: OutboxKind
    alert_id: int | None
    marker: str
    created_at: datetime
    message: SlackMessage
    root_key: str | None
    episode: int | None


@dataclass(frozen=True, slots=True)
class _Target:
    channel: str | None
    thread_ts: str | None
    # Why the row cannot go out at all (edit with no root), else None.
    skip_reason: str | None = None
    wait: bool = False


class OutboxSender:
    """Deliver due outbox rows through a notifier, with retries, once each."""

    def __init__(
        self,
        sessions: SessionFactory,
        notifier: Notifier,
        clock: Clock,
        *,
        max_attempts: int | None = None,
        retry_for_s: float = 24 * 3600.0,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 900.0,
        lease_s: float = 120.0,
        batch_size: int = 50,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts is not None and max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._sessions = sessions
        self._notifier = notifier
        self._clock = clock
        self._max_attempts = max_attempts
        self._retry_for = timedelta(seconds=retry_for_s)
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._lease = timedelta(seconds=lease_s)
        self._batch_size = batch_size
        self._rng = rng or random.Random()

    def backoff_s(self, attempts: int) -> float:
        """Return the delay before attempt `attempts + 1`: exponential, capped, jittered.

        "Equal jitter": half the delay fixed, half random, so retries after a shared
        outage spread out but never come back sooner than half the backoff.
        """
        exponent = max(0, attempts - 1)
        delay_s = min(self._backoff_max_s, self._backoff_base_s * float(2**exponent))
        return delay_s / 2 + self._rng.uniform(0, delay_s / 2)

    def send_due(self) -> SendReport:
        """Deliver every due row (up to the batch size), in order per alert.

        The due set is recomputed after each row, so a root and its replies go out in
        one pass; a row is tried at most once per pass.
        """
        log = structlog.get_logger()
        report = SendReport()
        tried: set[int] = set()
        while len(tried) < self._batch_size:
            row_id = self._next_due(tried)
            if row_id is None:
                break
            tried.add(row_id)
            claimed = self._claim(row_id)
            if claimed is None:
                continue
            try:
                result = self._deliver(claimed, report)
            except Exception as exc:
                # The lease keeps the row from being retried before the request ended.
                log.exception("notification.send_crashed", notification_id=row_id)
                report.errors.append(f"{row_id}: {type(exc).__name__}")
                continue
            if result is not None and result.rate_limited:
                report.rate_limited = True
                log.warning(
                    "notification.rate_limited",
                    notification_id=row_id,
                    retry_after_s=result.retry_after_s,
                )
                break
        report.waiting = self._count_waiting()
        return report

    def _pending(self) -> list[tuple[int, int | None, datetime]]:
        with transaction(self._sessions) as session:
            return rows.pending(session)

    def _next_due(self, tried: set[int]) -> int | None:
        """The first due row not tried yet whose alert has no earlier pending row."""
        now = self._clock.now()
        blocked_alerts: set[int] = set()
        for row_id, alert_id, next_attempt_at in self._pending():
            if alert_id is not None:
                if alert_id in blocked_alerts:
                    continue
                # Whatever happens to this row, later rows of its alert wait for it.
                blocked_alerts.add(alert_id)
            if row_id not in tried and next_attempt_at <= now:
                return row_id
        return None

    def _count_waiting(self) -> int:
        now = self._clock.now()
        return sum(1 for _, _, at in self._pending() if at > now)

    def _claim(self, row_id: int) -> _Claimed | None:
        now = self._clock.now()
        with transaction(self._sessions) as session:
            found = rows.claim(session, row_id, now=now, lease=self._lease)
            if found is None:
                return None
            row, attempts = found
            payload = dict(row.payload or {})
            return _Claimed(
                id=row_id,
                attempts=attempts,
                kind=OutboxKind(row.kind),
                alert_id=row.alert_id,
                marker=row.delivery_marker,
                created_at=row.created_at,
                message=SlackMessage.from_payload(payload.get("message") or {}),
                root_key=payload.get("root_key"),
                episode=payload.get("episode"),
            )

    def _target(self, claimed: _Claimed) -> _Target:
        if claimed.root_key is None:
            if claimed.kind is OutboxKind.EDIT:
                return _Target(None, None, skip_reason="nothing to edit")
            return _Target(None, None)
        if not self._notifier.can_thread:
            if claimed.kind is OutboxKind.EDIT:
                return _Target(None, None, skip_reason="webhooks cannot edit messages")
            return _Target(None, None)
        with transaction(self._sessions) as session:
            root = rows.by_dedup_key(session, claimed.root_key)
        if root is not None and root.status == NotificationStatus.PENDING.value:
            return _Target(None, None, wait=True)
        if root is None or root.status != NotificationStatus.SENT.value or not root.slack_ts:
            if claimed.kind is OutboxKind.EDIT:
                return _Target(None, None, skip_reason="root message was never posted")
            # The root died or was silenced: say it unthreaded rather than not at all.
            return _Target(None, None)
        return _Target(root.slack_channel, root.slack_ts)

    def _deliver(self, claimed: _Claimed, report: SendReport) -> SendResult | None:
        log = structlog.get_logger().bind(
            notification_id=claimed.id, kind=claimed.kind.value, attempt=claimed.attempts
        )
        target = self._target(claimed)
        if target.wait:
            # Roots are sent before their replies (see _due_ids); only a root of
            # another alert can be pending here. Give the attempt back.
            self._release(claimed)
            return None
        if target.skip_reason is not None:
            self._finish(claimed, NotificationStatus.SKIPPED, error=target.skip_reason)
            report.skipped += 1
            log.info("notification.skipped", reason=target.skip_reason)
            return None

        if claimed.attempts > 1 and claimed.kind is not OutboxKind.EDIT:
            if self._notifier.can_look_up:
                found = self._notifier.look_up(
                    marker=claimed.marker,
                    oldest=claimed.created_at - LOOKUP_SKEW,
                    channel=target.channel,
                    thread_ts=target.thread_ts,
                )
                if found.status is LookupStatus.FOUND:
                    self._mark_sent(claimed, channel=found.channel, ts=found.ts)
                    report.already_sent += 1
                    log.info("notification.found_already_sent", ts=found.ts)
                    return None
                if found.status is LookupStatus.UNKNOWN:
                    result = SendResult(
                        SendStatus.RETRYABLE,
                        error=f"look-up failed: {found.error}",
                        retry_after_s=found.retry_after_s,
                    )
                    self._failed(claimed, result, report, log)
                    return result
            else:
                log.info("notification.resend_unverifiable")

        if claimed.kind is OutboxKind.EDIT:
            assert target.channel is not None and target.thread_ts is not None
            result = self._notifier.edit(
                claimed.message, channel=target.channel, ts=target.thread_ts
            )
        else:
            result = self._notifier.post(
                claimed.message,
                marker=claimed.marker,
                channel=target.channel,
                thread_ts=target.thread_ts,
            )
        if result.ok:
            if claimed.kind is OutboxKind.EDIT:
                self._mark_sent(claimed, channel=target.channel, ts=target.thread_ts)
            else:
                self._mark_sent(claimed, channel=result.channel, ts=result.ts)
            report.sent += 1
            log.info("notification.sent", ts=result.ts, threaded=target.thread_ts is not None)
            return result
        self._failed(claimed, result, report, log)
        return result

    def _gives_up(self, claimed: _Claimed, result: SendResult) -> bool:
        """Whether a failed attempt is the row's last: permanent, too old, or out of tries.

        Retryable failures are bounded by age, not by count: an attempt count that runs
        out in half an hour of exponential backoff would turn every alert of a longer
        Slack outage into a dead letter, and a 429 or a look-up Slack could not answer
        is no verdict on the message.
        """
        if result.status is SendStatus.PERMANENT:
            return True
        if self._max_attempts is not None and claimed.attempts >= self._max_attempts:
            return True
        return self._clock.now() - claimed.created_at >= self._retry_for

    def _failed(self, claimed: _Claimed, result: SendResult, report: SendReport, log: Any) -> None:
        if self._gives_up(claimed, result):
            self._finish(claimed, NotificationStatus.DEAD, error=result.error)
            report.dead += 1
            log.error("notification.dead", error=result.error, retryable=result.status.value)
            return
        delay_s = (
            result.retry_after_s
            if result.retry_after_s is not None
            else self.backoff_s(claimed.attempts)
        )
        now = self._clock.now()
        with transaction(self._sessions) as session:
            rows.schedule_retry(
                session,
                claimed.id,
                attempts=claimed.attempts,
                at=now + timedelta(seconds=delay_s),
                error=result.error,
            )
        report.retried += 1
        log.warning("notification.retry_scheduled", error=result.error, delay_s=round(delay_s, 3))

    def _release(self, claimed: _Claimed) -> None:
        with transaction(self._sessions) as session:
            rows.release(session, claimed.id, attempts=claimed.attempts, now=self._clock.now())

    def _finish(self, claimed: _Claimed, status: NotificationStatus, *, error: str | None) -> None:
        with transaction(self._sessions) as session:
            rows.finish(session, claimed.id, status, error=error)

    def _mark_sent(self, claimed: _Claimed, *, channel: str | None, ts: str | None) -> None:
        with transaction(self._sessions) as session:
            rows.mark_sent(
                session,
                claimed.id,
                now=self._clock.now(),
                channel=channel,
                ts=ts,
                alert_id=claimed.alert_id,
                is_root=claimed.kind is OutboxKind.FIRE,
                episode=claimed.episode,
            )
