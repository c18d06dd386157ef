"""Alert rows: read, lock, create, and the CLI's silence and ack. I/O (database).

The alert stage (`pipeline/alert.py`) reads an alert's state with `lock_or_create` and
`state_of`, asks the core what to do, and writes the answer back with `apply_state` in
its own transaction. `list_open` is what `leakwatch alerts` and `status` read;
`silence`, `unsilence` and `ack` are the handling commands, each one transaction.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from leakwatch.core.alerting import AlertState, AlertStatus, acknowledge
from leakwatch.core.stats import Interval
from leakwatch.errors import UnknownAlertError
from leakwatch.store.db import SessionFactory, transaction
from leakwatch.store.models import Alert, AlertTransition


def alerts_of_rule(session: Session, rule_name: str) -> list[Alert]:
    return list(session.exec(select(Alert).where(Alert.rule_name == rule_name)).all())


def _locked(session: Session, rule_name: str, scope: str) -> Alert | None:
    """Read one alert row and lock it until the caller's transaction ends.

    Two evaluations can overlap: a leader that lost its lock is still finishing its
    pass while the new leader starts one. Without the lock both read the same state,
    both decide "fire" (or "resolve") and both record it; with it the second waits and
    then decides on what the first wrote. (SQLite ignores FOR UPDATE; it has one
    writer and, with the lock file, one daemon.)
    """
    return session.exec(
        select(Alert)
        .where(Alert.rule_name == rule_name, Alert.scope == scope)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def lock_or_create(
    session: Session, rule_name: str, scope: str, *, kind: str, severity: str
) -> Alert:
    """The alert row for (rule, scope), locked for this transaction; created if new."""
    alert = _locked(session, rule_name, scope)
    if alert is not None:
        return alert
    # A silence set on the rule (any scope) covers groups that appear later.
    silences = [a.silenced_until for a in alerts_of_rule(session, rule_name) if a.silenced_until]
    values = {
        "rule_name": rule_name,
        "scope": scope,
        "kind": kind,
        "severity": severity,
        "status": "inactive",
        "episode": 0,
        "observation": {},
        "silenced_until": max(silences) if silences else None,
    }
    # Two evaluators creating the same alert: one inserts, the other finds its row.
    dialect = session.get_bind().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert_fn(Alert)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["rule_name", "scope"])
    )
    alert = _locked(session, rule_name, scope)
    assert alert is not None
    return alert


def _interval_json(interval: Interval | None) -> list[float] | None:
    return None if interval is None else [interval.lo, interval.hi]


def _interval_of(value: Any) -> Interval | None:
    if isinstance(value, list) and len(value) == 2:
        return Interval(float(value[0]), float(value[1]))
    return None


def state_of(alert: Alert) -> AlertState:
    """Read the core's state from an `Alert` row.

    `announced` and the intervals have no columns of their own; they ride in the
    row's `observation` document under "state".
    """
    kept: Mapping[str, Any] = (alert.observation or {}).get("state") or {}
    return AlertState(
        status=AlertStatus(alert.status),
        since=alert.since,
        episode=alert.episode,
        announced=bool(kept.get("announced", False)),
        last_notified_at=alert.last_notified_at,
        notified_interval=_interval_of(kept.get("notified_interval")),
        last_rate=kept.get("last_rate"),
        last_interval=_interval_of(kept.get("last_interval")),
        silenced_until=alert.silenced_until,
        acked=alert.acked_at is not None,
    )


def apply_state(alert: Alert, state: AlertState, now: datetime, facts: Mapping[str, Any]) -> None:
    alert.status = state.status.value
    alert.since = state.since
    alert.episode = state.episode
    alert.last_notified_at = state.last_notified_at
    alert.silenced_until = state.silenced_until
    if not state.acked:
        alert.acked_at = None
    elif alert.acked_at is None:
        alert.acked_at = now
    alert.last_evaluated_at = now
    alert.observation = {
        **facts,
        "state": {
            "announced": state.announced,
            "notified_interval": _interval_json(state.notified_interval),
            "last_rate": state.last_rate,
            "last_interval": _interval_json(state.last_interval),
        },
    }


def save_decision(
    session: Session,
    alert: Alert,
    *,
    before: AlertState,
    after: AlertState,
    now: datetime,
    facts: Mapping[str, Any],
    transition: str | None,
    reason: str,
) -> None:
    """Write an evaluation's new state onto its row, and its transition when there is one.

    In the caller's transaction, with the outbox rows that tell Slack about it.
    """
    assert alert.id is not None
    if after.status is AlertStatus.FIRING and before.status is not AlertStatus.FIRING:
        alert.opened_at = now
        alert.resolved_at = None
    if before.status is AlertStatus.FIRING and after.status is AlertStatus.INACTIVE:
        alert.resolved_at = now
    apply_state(alert, after, now, facts)
    session.add(alert)
    if transition is not None:
        session.add(
            AlertTransition(
                alert_id=alert.id,
                episode=after.episode,
                transition=transition,
                at=now,
                observation={**dict(facts), "reason": reason},
            )
        )


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """One alert as `leakwatch alerts` and `leakwatch status` show it."""

    id: int
    rule_name: str
    scope: str
    kind: str
    severity: str
    status: str
    episode: int
    since: datetime | None
    opened_at: datetime | None
    silenced_until: datetime | None
    acked_at: datetime | None
    last_evaluated_at: datetime | None
    rate: float | None
    lower: float | None
    upper: float | None
    samples: int | None
    slack_ts: str | None
    # Why it fired, in plain words (the sequential test's evidence); "" for others.
    why: str = ""


def list_open(
    sessions: SessionFactory, now: datetime, *, include_silenced: bool = True
) -> list[OpenAlert]:
    """List alerts that are pending or firing, and (optionally) any currently silenced."""
    with transaction(sessions) as session:
        rows = session.exec(select(Alert).order_by(col(Alert.rule_name), col(Alert.scope))).all()
        found: list[OpenAlert] = []
        for alert in rows:
            silenced = alert.silenced_until is not None and alert.silenced_until > now
            if alert.status == "inactive" and not (include_silenced and silenced):
                continue
            seen: Mapping[str, Any] = alert.observation or {}
            found.append(
                OpenAlert(
                    id=alert.id or 0,
                    rule_name=alert.rule_name,
                    scope=alert.scope,
                    kind=alert.kind,
                    severity=alert.severity,
                    status=alert.status,
                    episode=alert.episode,
                    since=alert.since,
                    opened_at=alert.opened_at,
                    silenced_until=alert.silenced_until if silenced else None,
                    acked_at=alert.acked_at,
                    last_evaluated_at=alert.last_evaluated_at,
                    rate=seen.get("rate"),
                    lower=seen.get("lower"),
                    upper=seen.get("upper"),
                    samples=seen.get("samples"),
                    slack_ts=alert.slack_ts,
                    why=str(seen.get("why") or ""),
                )
            )
        return found


def scopes_of_rule(sessions: SessionFactory, rule_name: str) -> list[str]:
    """The scopes a rule has had alerts for, in order."""
    with transaction(sessions) as session:
        return sorted({alert.scope for alert in alerts_of_rule(session, rule_name)})


def _matching(session: Session, rule_name: str, scope: str | None) -> list[Alert]:
    # Locked like an evaluation's read, so an ack cannot land on an episode that an
    # evaluation is resolving at the same moment.
    query = select(Alert).where(Alert.rule_name == rule_name)
    if scope is not None:
        query = query.where(Alert.scope == scope)
    return list(session.exec(query.order_by(col(Alert.id)).with_for_update()).all())


def silence(
    sessions: SessionFactory, rule_name: str, until: datetime, *, scope: str | None = None
) -> int:
    """Suppress notifications of a rule (every scope, or one) until `until`.

    State keeps moving while silenced. A rule never evaluated yet gets a row now, so a
    silence can be set ahead of trouble; groups that appear later inherit it.
    Returns how many alerts were silenced.
    """
    with transaction(sessions) as session:
        alerts = _matching(session, rule_name, scope)
        if not alerts:
            alerts = [
                lock_or_create(session, rule_name, scope or "", kind="rate", severity="warning")
            ]
        for alert in alerts:
            alert.silenced_until = until
            session.add(alert)
    structlog.get_logger().info(
        "alert.silenced", rule=rule_name, scope=scope, until=until.isoformat()
    )
    return len(alerts)


def unsilence(sessions: SessionFactory, rule_name: str, *, scope: str | None = None) -> int:
    """Lift a silence early; returns how many alerts it covered."""
    with transaction(sessions) as session:
        alerts = _matching(session, rule_name, scope)
        for alert in alerts:
            alert.silenced_until = None
            session.add(alert)
    structlog.get_logger().info("alert.unsilenced", rule=rule_name, scope=scope)
    return len(alerts)


def ack(
    sessions: SessionFactory, rule_name: str, now: datetime, *, scope: str | None = None
) -> int:
    """Acknowledge firing alerts of a rule: no more updates or repeats this episode.

    Raises UnknownAlertError when nothing by that name exists. Returns how many
    firing alerts were acknowledged (others are left alone).
    """
    with transaction(sessions) as session:
        alerts = _matching(session, rule_name, scope)
        if not alerts:
            raise UnknownAlertError(
                f"no alert named {rule_name!r}" + (f" with scope {scope!r}" if scope else "")
            )
        acked = 0
        for alert in alerts:
            state = acknowledge(state_of(alert))
            if state.acked and alert.acked_at is None:
                alert.acked_at = now
                session.add(alert)
                acked += 1
    structlog.get_logger().info("alert.acked", rule=rule_name, scope=scope, alerts=acked)
    return acked
