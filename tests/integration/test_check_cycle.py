"""The check cycle end to end: a leaky pipeline, the simulator over loopback, the store.

Every sampled event's recorded outcome must equal the ground truth that was injected,
on Postgres and on SQLite; a cycle killed mid-way and run again records each sampled
event exactly once with the right final outcome.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from leakwatch.metronome.client import SearchClient
from leakwatch.store.db import session_factory, transaction
from leakwatch.store.models import SamplingRun
from leakwatch.wiring import build_check_cycle
from tests.support.cycle import TOKEN, World, _recorded, _settle, assert_true_outcomes, build_world


@pytest.fixture(params=[False, True], ids=["json-values", "string-values"])
def world(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[World]:
    yield from build_world(db_url, tmp_path, strings=request.param)


def test_every_recorded_outcome_equals_the_injected_truth(world: World) -> None:
    rows = assert_true_outcomes(world)
    seen = {r.outcome for r in rows}
    # A sample of this size sees every kind of injected leak.
    assert {"matched", "missing", "unmatched_customer", "unmatched_metric"} <= seen
    resends = [r for r in rows if r.outcome == "matched" and r.duplicate_count > 0]
    assert resends, "harmless resends are matched with their duplicate count kept"


def test_missing_waits_for_the_configured_rechecks(world: World) -> None:
    with world.search_client() as search:
        world.cycle(search).run()
    dropped = [r for r in _recorded(world.db_url) if r.transaction_id in world.scenario.dropped_ids]
    assert dropped
    assert {r.outcome for r in dropped} == {"pending"}
    assert {r.attempts for r in dropped} == {1}
    with world.search_client() as search:
        world.clock.advance(15 * 60)
        world.cycle(search).run(draw=False)
    dropped = [r for r in _recorded(world.db_url) if r.transaction_id in world.scenario.dropped_ids]
    assert {r.outcome for r in dropped} == {"missing"}
    assert {r.attempts for r in dropped} == {2}


def test_unmatched_customers_heal_when_the_alias_is_added(world: World) -> None:
    with world.search_client() as search:
        _settle(world, search, cycles=1)
        unmatched = [r for r in _recorded(world.db_url) if r.outcome == "unmatched_customer"]
        assert unmatched
        customer = world.server.state.customers()[0]
        world.server.state.add_alias(customer.id, "hooli")
        world.clock.advance(6 * 3600)
        world.cycle(search).run(draw=False)
    healed = {r.id: r for r in _recorded(world.db_url) if r.healed}
    assert set(healed) == {r.id for r in unmatched}
    assert all(r.outcome == "matched" for r in healed.values())


class _Killed(Exception):
    pass


class _KillAfter:
    """A search client that dies after answering — as if the process was killed
    between Metronome's answer and the store's write."""

    def __init__(self, inner: SearchClient) -> None:
        self.inner = inner
        self.stats = inner.stats
        self.max_ids_per_request = inner.max_ids_per_request

    def search(self, ids: list[str], **kwargs: object) -> object:
        self.inner.search(ids, **kwargs)  # type: ignore[arg-type]
        raise _Killed


def test_a_cycle_killed_mid_way_and_run_again_records_each_event_once(world: World) -> None:
    with world.search_client() as search:
        killer = _KillAfter(search)
        engine = world.engine
        doomed = build_check_cycle(
            world.settings,
            engine=engine,
            clock=world.clock,
            search=killer,  # type: ignore[arg-type]
        )
        with pytest.raises(_Killed):
            doomed.run()
        # Killed between Metronome's answer and the write: nothing of that draw is kept.
        assert _recorded(world.db_url) == []
        world.clock.advance(60)
        _settle(world, search, cycles=1)
        # Killed again after a full cycle: what was written stays, and is not redone.
        first = {r.id: r.outcome for r in _recorded(world.db_url)}
        with pytest.raises(_Killed):
            build_check_cycle(
                world.settings,
                engine=engine,
                clock=world.clock,
                search=killer,  # type: ignore[arg-type]
            ).run()
        _settle(world, search, cycles=2)
    rows = _recorded(world.db_url)
    identities = [(r.source, r.transaction_id, r.payload_hash) for r in rows]
    assert len(identities) == len(set(identities))
    assert set(first) <= {r.id for r in rows}
    truth = world.scenario.truth_by_identity()
    assert all(r.outcome == truth[(r.transaction_id, r.payload_hash)].value for r in rows)
    with transaction(session_factory(engine)) as session:
        statuses: dict[str, int] = dict(
            session.execute(
                select(col(SamplingRun.status), func.count()).group_by(col(SamplingRun.status))
            ).all()
        )
    assert statuses.get("failed") == 2


def test_lookup_failures_are_errors_not_missing(world: World) -> None:
    world.server.faults.server_error_rate = 1.0
    with SearchClient(
        base_url=world.server.base_url,
        token=TOKEN,
        clock=world.clock,
        requests_per_second=50,
        max_retries=1,
    ) as search:
        world.cycle(search).run()
    rows = _recorded(world.db_url)
    assert rows
    assert {r.outcome for r in rows} == {"error"}
    assert all(r.attempts == 0 for r in rows)
    world.server.faults.clear()
    world.clock.advance(15 * 60)
    with world.search_client() as search:
        world.cycle(search).run(draw=False)
    assert "error" not in {r.outcome for r in _recorded(world.db_url)}


def test_a_cycle_stays_within_its_search_budget(world: World, tmp_path: Path) -> None:
    with world.search_client() as search:
        cycle = world.cycle(search)
        summary = cycle.run()
    # Budget: 50 rps × 15 min × 0.8 × 100 ids — far more than needed, so all checked.
    assert summary.checked == sum(s.newly_recorded for s in summary.sources.values())
    assert summary.search_requests == -(-summary.checked // 100)


def test_a_stop_request_abandons_lookups_and_records_the_draw_as_pending(world: World) -> None:
    calls = iter([False, True])
    with SearchClient(
        base_url=world.server.base_url,
        token=TOKEN,
        clock=world.clock,
        requests_per_second=50,
        max_ids_per_request=10,
    ) as search:
        # Stop after the first slice of search calls: the rest stay for the next cycle.
        cycle = world.cycle(search, should_stop=lambda: next(calls, True))
        summary = cycle.run()
    rows = _recorded(world.db_url)
    assert summary.status == "finished"
    assert 0 < summary.search_requests <= 5
    pending = [r for r in rows if r.outcome == "pending" and r.attempts == 0]
    assert summary.not_looked_up == len(pending) > 0
    assert len(rows) == sum(s.newly_recorded for s in summary.sources.values())


def test_a_run_left_running_by_a_dead_process_is_marked_abandoned(world: World) -> None:
    with transaction(session_factory(world.engine)) as session:
        session.add(SamplingRun(started_at=world.clock.now(), status="running"))
    world.clock.advance(600)
    with world.search_client() as search:
        world.cycle(search).run()
    with transaction(session_factory(world.engine)) as session:
        runs = session.execute(select(SamplingRun).order_by(col(SamplingRun.id))).scalars().all()
        assert [(r.status, r.error) for r in runs] == [
            ("abandoned", "the process ended mid-cycle"),
            ("finished", None),
        ]
