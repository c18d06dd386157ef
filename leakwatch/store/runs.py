"""Sampling runs and source states: what each cycle did, what each source last showed. I/O.

The check stage opens a run (`start_run`), notes each source's scan (`note_scan`) and
closes the run with its summary (`finish_run`), each in a transaction it owns; the
daemon reads back when the last cycle started or finished and each source's state.
"""

from datetime import datetime

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from leakwatch.core.results import CycleSummary
from leakwatch.store.models import SamplingRun, SourceState

ERROR_MAX_CHARS = 2000


def start_run(session: Session, now: datetime) -> int:
    """Record a new running cycle and return its id; any run still running is abandoned.

    One leader runs one cycle at a time: a run still "running" now belongs to a process
    that died mid-cycle. Say so, so no report counts it as live. (Should a live run be
    caught, a manual check beside the daemon, its own finish writes its status back.)
    """
    session.execute(
        update(SamplingRun)
        .where(col(SamplingRun.status) == "running")
        .values(status="abandoned", finished_at=now, error="the process ended mid-cycle")
    )
    run = SamplingRun(started_at=now, status="running")
    session.add(run)
    session.flush()
    assert run.id is not None
    return run.id


def finish_run(session: Session, summary: CycleSummary) -> None:
    """Write a cycle's end, status, counts and summary document onto its run."""
    run = session.get(SamplingRun, summary.run_id)
    if run is None:
        return
    run.finished_at = summary.finished_at
    run.status = summary.status
    run.sampled = sum(r.drawn for r in summary.sources.values())
    run.new_events = sum(r.new_events for r in summary.sources.values())
    run.rechecked = summary.rechecked
    run.search_requests = summary.search_requests
    run.search_rate_limited = summary.search_rate_limited
    run.search_errors = summary.search_errors
    run.error = summary.error[:ERROR_MAX_CHARS] if summary.error else None
    run.summary = summary.to_dict()
    session.add(run)


def note_scan(
    session: Session,
    source: str,
    *,
    kind: str,
    now: datetime,
    saw_new_events: bool,
    newest_event_at: datetime | None,
) -> None:
    """Record what the daemon last saw of a source."""
    state = session.get(SourceState, source) or SourceState(name=source, kind=kind)
    state.last_scan_at = now
    if saw_new_events:
        state.last_new_events_at = now
    if newest_event_at is not None:
        state.newest_event_at = newest_event_at
    session.add(state)


def last_drawn_at(session: Session, source: str) -> datetime | None:
    """When a cycle last drew from `source`: the next draw takes what settled since."""
    state = session.get(SourceState, source)
    return state.last_sampled_at if state is not None else None


def note_draw(session: Session, source: str, *, kind: str, now: datetime) -> None:
    """Record that a cycle drew from `source` at `now`."""
    state = session.get(SourceState, source) or SourceState(name=source, kind=kind)
    state.last_sampled_at = now
    session.add(state)


def source_states(session: Session) -> dict[str, SourceState]:
    return {s.name: s for s in session.exec(select(SourceState)).all()}


def last_started_at(session: Session) -> datetime | None:
    """When the last cycle (of any leader) started."""
    value = session.execute(select(func.max(col(SamplingRun.started_at)))).scalar()
    return value if isinstance(value, datetime) else None


def last_finished_at(session: Session) -> datetime | None:
    """When the last cycle that finished did so."""
    value = session.execute(
        select(func.max(SamplingRun.finished_at)).where(col(SamplingRun.status) == "finished")
    ).scalar_one_or_none()
    return value if isinstance(value, datetime) else None


def latest_run(session: Session) -> SamplingRun | None:
    """The run that started last (finished, running or abandoned)."""
    return session.exec(
        select(SamplingRun).order_by(col(SamplingRun.started_at).desc()).limit(1)
    ).first()
