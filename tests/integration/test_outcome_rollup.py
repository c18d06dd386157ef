"""`outcome_rollup` stays equal to a GROUP BY over `sampled_event`, whatever writes it.

Random sequences of what the cycle and retention do — draws recorded (resends
included), verdicts written over recorded rows (pending → decided, healing, a verdict
written twice), old detail dropped — on SQLite and Postgres, compared after every step
with the sums computed from the samples themselves. Then what a single sequence cannot
show: two Postgres writers on the same rows and the same roll-up row at once, the
history a migration finds, and a TRUNCATE.
"""

import threading
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, func, select, text
from sqlmodel import Session, col

from alembic import command
from leakwatch.core.classify import Verdict
from leakwatch.core.events import DrawnEvent, Outcome, SourceEvent
from leakwatch.store.db import (
    alembic_config,
    make_engine,
    session_factory,
    transaction,
    upgrade,
)
from leakwatch.store.models import OutcomeRollup, SampledEvent
from leakwatch.store.outcomes import (
    NEW_ROW,
    RecheckPolicy,
    record_samples,
    record_verdicts,
    sample_row,
    verdict_update,
)
from leakwatch.store.queries import outcome_batches, outcome_counts
from leakwatch.store.retention import drop_old_detail
from tests.support.databases import empty_postgres_url

START = datetime(2026, 11, 20, tzinfo=UTC)
CYCLE = timedelta(minutes=15)
POLICY = RecheckPolicy(timedelta(minutes=15), timedelta(hours=6))
KEY = ("sampled_at", "source", "event_type", "outcome")

# One sampled event: (transaction number, source, event type, weight, quantity).
events = st.tuples(
    st.integers(0, 30),
    st.sampled_from(["gateway", "batch"]),
    st.sampled_from(["api_request", "gpu_seconds", "tokens"]),
    st.sampled_from([1.0, 0.1, 2.5, 40.0, 1 / 3]),
    st.sampled_from([None, 0.0, 3.0, 250.5]),
)
outcomes = st.sampled_from(list(Outcome))
steps = st.one_of(
    st.tuples(st.just("draw"), st.lists(st.tuples(events, outcomes), max_size=12)),
    st.tuples(st.just("verdicts"), st.lists(st.tuples(st.integers(0, 200), outcomes), max_size=8)),
    st.tuples(st.just("retention"), st.integers(0, 6)),
)


def _sums(session: Session) -> dict[tuple[Any, ...], tuple[int, float, float, float]]:
    """The roll-up's rows as a map, and the same computed from the samples, to compare."""
    return {
        tuple(row[:4]): (int(row[4]), float(row[5]), float(row[6]), float(row[7]))
        for row in session.execute(
            select(
                col(OutcomeRollup.sampled_at),
                col(OutcomeRollup.source),
                col(OutcomeRollup.event_type),
                col(OutcomeRollup.outcome),
                col(OutcomeRollup.samples),
                col(OutcomeRollup.weight_sum),
                col(OutcomeRollup.weight_sq_sum),
                col(OutcomeRollup.weighted_quantity_sum),
            )
        )
    }


def _grouped_samples(session: Session) -> dict[tuple[Any, ...], tuple[int, float, float, float]]:
    weight = col(SampledEvent.weight)
    keys = [col(getattr(SampledEvent, name)) for name in KEY]
    return {
        tuple(row[:4]): (int(row[4]), float(row[5]), float(row[6]), float(row[7]))
        for row in session.execute(
            select(
                *keys,
                func.count(),
                func.sum(weight),
                func.sum(weight * weight),
                func.sum(weight * func.coalesce(col(SampledEvent.quantity), 0.0)),
            ).group_by(*keys)
        )
    }


def assert_rollup_matches(session: Session) -> None:
    rollup, grouped = _sums(session), _grouped_samples(session)
    assert rollup.keys() == grouped.keys()
    for key, (samples, *rest) in grouped.items():
        assert rollup[key][0] == samples, key
        assert rollup[key][1:] == pytest.approx(tuple(rest), rel=1e-9, abs=1e-9), key


def _drawn(number: int, source: str, event_type: str, weight: float, quantity: Any) -> DrawnEvent:
    properties = {} if quantity is None else {"seconds": quantity}
    return DrawnEvent(
        source=source,
        event=SourceEvent(
            transaction_id=f"txn-{number}",
            customer_id=f"cust-{number % 4}",
            event_type=event_type,
            timestamp=START - timedelta(hours=1),
            properties=properties,
        ),
        weight=weight,
    )


def _verdict(outcome: Outcome) -> Verdict:
    return Verdict(outcome=outcome, reason=f"test {outcome.value}")


def _apply(session: Session, step: tuple[str, Any], now: datetime) -> None:
    kind, arguments = step
    if kind == "draw":
        rows = []
        for (number, source, event_type, weight, quantity), outcome in arguments:
            sample = _drawn(number, source, event_type, weight, quantity)
            row = sample_row(
                sample, now=now, run_id=None, quantity_properties={event_type: "seconds"}
            )
            row.update(
                verdict_update(
                    NEW_ROW, _verdict(outcome), now=now, recheck=POLICY, counted_attempt=True
                )
            )
            del row["id"]
            rows.append(row)
        record_samples(session, rows)
    elif kind == "verdicts":
        stored = list(
            session.execute(select(SampledEvent).order_by(col(SampledEvent.id))).scalars()
        )
        if not stored:
            return
        # The same row twice in one batch writes its last verdict, as a re-check would.
        chosen = {stored[i % len(stored)].id: (stored[i % len(stored)], o) for i, o in arguments}
        record_verdicts(
            session,
            [
                verdict_update(row, _verdict(o), now=now, recheck=POLICY, counted_attempt=True)
                for row, o in chosen.values()
            ],
        )
    else:
        drop_old_detail(session, before=START + arguments * CYCLE)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sequence=st.lists(steps, min_size=1, max_size=12))
def test_the_rollup_equals_the_samples_grouped_after_any_sequence(
    engine: Engine, sequence: list[tuple[str, Any]]
) -> None:
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        session.execute(delete(SampledEvent))
        session.execute(delete(OutcomeRollup))
    for n, step in enumerate(sequence):
        with transaction(sessions) as session:
            _apply(session, step, START + n * CYCLE)
        with transaction(sessions) as session:
            assert_rollup_matches(session)


def test_a_verdict_moves_its_sample_between_outcomes_and_the_views_see_it(
    engine: Engine,
) -> None:
    sessions = session_factory(engine)
    now = START
    with transaction(sessions) as session:
        _apply(
            session,
            (
                "draw",
                [
                    ((1, "gateway", "api_request", 2.0, None), Outcome.PENDING),
                    ((2, "gateway", "api_request", 2.0, None), Outcome.MATCHED),
                ],
            ),
            now,
        )
    until = now + CYCLE
    with transaction(sessions) as session:
        [before] = outcome_counts(session, since=now, until=until)
        assert before.counts == {Outcome.PENDING: 1, Outcome.MATCHED: 1}
        [batch] = outcome_batches(session, outcomes=[Outcome.MISSING], since=now, until=until)[None]
        assert (batch.leaks, batch.decided) == (0, 1)  # pending is not decided
        pending = session.execute(
            select(SampledEvent).where(col(SampledEvent.outcome) == "pending")
        ).scalar_one()
        update = verdict_update(
            pending, _verdict(Outcome.MISSING), now=now, recheck=POLICY, counted_attempt=True
        )
    for _ in range(2):  # written twice (a retried commit): moved once
        with transaction(sessions) as session:
            record_verdicts(session, [update])
    with transaction(sessions) as session:
        [after] = outcome_counts(session, since=now, until=until)
        assert after.counts == {Outcome.MISSING: 1, Outcome.MATCHED: 1}
        assert after.weights == {Outcome.MISSING: 2.0, Outcome.MATCHED: 2.0}
        [batch] = outcome_batches(session, outcomes=[Outcome.MISSING], since=now, until=until)[None]
        assert (batch.leaks, batch.decided, batch.weighted_leaks) == (1, 2, 2.0)
        assert_rollup_matches(session)


def _race(url: str, sessions: Any, first: Any, second: Any) -> None:
    """Run `first` in a transaction held open until `second`, in its own, waits on a lock.

    Both then commit, `first` before `second`: the second writer works on rows the
    first changed after the second's statement began.
    """
    errors: list[BaseException] = []
    holding, release = threading.Event(), threading.Event()

    def run(work: Any, hold: bool) -> None:
        try:
            with transaction(sessions) as session:
                work(session)
                if hold:
                    holding.set()
                    release.wait(20)
        except BaseException as exc:
            errors.append(exc)
            holding.set()

    threads = [threading.Thread(target=run, args=(first, True))]
    threads[0].start()
    assert holding.wait(20)
    threads.append(threading.Thread(target=run, args=(second, False)))
    threads[1].start()
    libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq, autocommit=True) as watcher:
        for _ in range(500):
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting and waiting[0] >= 1:
                break
            threading.Event().wait(0.02)
        else:
            release.set()
            raise AssertionError("the second writer never waited on the first")
    release.set()
    for thread in threads:
        thread.join(30)
    assert errors == []


@pytest.mark.postgres
def test_concurrent_writers_on_postgres_lose_no_count(pg_url: str) -> None:
    engine = make_engine(pg_url)
    sessions = session_factory(engine)
    now = START

    def draw(number: int) -> Any:
        sample = ((number, "gw", "api", 1.5, None), Outcome.PENDING)
        return lambda session: _apply(session, ("draw", [sample]), now)

    # Two draws of the same cycle add to one roll-up row at once.
    _race(pg_url, sessions, draw(1), draw(2))
    with transaction(sessions) as session:
        assert_rollup_matches(session)
        [counts] = outcome_counts(session, since=now, until=now + CYCLE)
        assert counts.counts == {Outcome.PENDING: 2}
        target = session.execute(select(SampledEvent).order_by(col(SampledEvent.id))).scalars()
        pending = next(iter(target))

    # Two re-checks of one pending sample at once, one saying missing, one matched: the
    # later commit wins and the sample is counted once, under the outcome it ends with
    # (the second moves it from missing, which it never read, to matched).
    def recheck(outcome: Outcome) -> Any:
        update = verdict_update(
            pending, _verdict(outcome), now=now, recheck=POLICY, counted_attempt=True
        )
        return lambda session: record_verdicts(session, [update])

    _race(pg_url, sessions, recheck(Outcome.MISSING), recheck(Outcome.MATCHED))
    with transaction(sessions) as session:
        assert_rollup_matches(session)
        [counts] = outcome_counts(session, since=now, until=now + CYCLE)
        assert counts.counts == {Outcome.MATCHED: 1, Outcome.PENDING: 1}
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_migration_rolls_up_the_history_it_finds(backend: str, tmp_path: Path) -> None:
    with _fresh(backend, tmp_path) as url:
        engine = make_engine(url)
        config = alembic_config()
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
        sessions = session_factory(engine)
        with transaction(sessions) as session:
            for n in range(8):
                session.add(
                    SampledEvent(
                        source="gw",
                        transaction_id=f"t{n}",
                        payload_hash="h",
                        customer_id="c",
                        event_type=("api", "gpu")[n % 2],
                        event_timestamp=START,
                        weight=1.0 + n,
                        quantity=2.0 if n % 3 else None,
                        outcome="missing" if n % 4 == 1 else "matched",
                        sampled_at=START + (n // 4) * CYCLE,
                    )
                )
        # 0003 has no roll-up: the samples above are only in sampled_event.
        upgrade(engine)
        with transaction(sessions) as session:
            rolled = _sums(session)
            assert (len(rolled), sum(s[0] for s in rolled.values())) == (6, 8)
            assert_rollup_matches(session)
        engine.dispose()


def test_truncating_the_samples_empties_the_rollup(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    with transaction(sessions) as session:
        _apply(session, ("draw", [((1, "gw", "api", 1.0, None), Outcome.MATCHED)]), START)
    with transaction(sessions) as session:
        if engine.dialect.name == "postgresql":
            session.execute(text("TRUNCATE sampled_event"))
        else:
            session.execute(delete(SampledEvent))
    with transaction(sessions) as session:
        assert _sums(session) == {}
        assert_rollup_matches(session)
    engine.dispose()


def _fresh(backend: str, tmp_path: Path) -> AbstractContextManager[str]:
    if backend == "postgres":
        return empty_postgres_url("leakwatch_rollup")
    return nullcontext(f"sqlite:///{tmp_path / 'history.db'}")
