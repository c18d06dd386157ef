"""The check cycle end to end: a leaky pipeline, the simulator over loopback, the store.

Every sampled event's recorded outcome must equal the ground truth that was injected,
on Postgres and on SQLite; a cycle killed mid-way and run again records each sampled
event exactly once with the right final outcome.
"""

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import col

from leakwatch.clock import FakeClock
from leakwatch.config import Settings, settings_from_mapping
from leakwatch.metronome.client import SearchClient
from leakwatch.pipeline.check import CheckCycle
from leakwatch.simulator import SimulatorOptions, SimulatorServer, build_demo_state
from leakwatch.simulator.scenario import Scenario, build_scenario, ingest_scenario
from leakwatch.store.db import make_engine, session_factory, transaction
from leakwatch.store.models import SampledEvent, SamplingRun
from leakwatch.wiring import build_check_cycle

TOKEN = "test-token-abcdef"
START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class World:
    clock: FakeClock
    scenario: Scenario
    server: SimulatorServer
    settings: Settings
    db_url: str
    engine: Engine
    rng: random.Random = field(default_factory=lambda: random.Random(11))

    def cycle(self, search: SearchClient, **kwargs: object) -> CheckCycle:
        return build_check_cycle(
            self.settings,
            engine=self.engine,
            clock=self.clock,
            search=search,
            rng=self.rng,
            **kwargs,  # type: ignore[arg-type]
        )

    def search_client(self) -> SearchClient:
        return SearchClient(
            base_url=self.server.base_url,
            token=TOKEN,
            clock=self.clock,
            requests_per_second=50,
            max_ids_per_request=100,
            rng=random.Random(3),
        )


# Writes the scenario where a source reads it; returns the source's config keys.
SourcePlacer = Callable[[Scenario, Path], dict[str, Any]]


def local_jsonl(scenario: Scenario, tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / "usage.jsonl"
    scenario.write_log(log)
    return {"type": "jsonl", "path": str(log)}


def _world(
    db_url: str,
    tmp_path: Path,
    *,
    strings: bool,
    events: int = 1200,
    place: SourcePlacer = local_jsonl,
) -> Iterator[World]:
    clock = FakeClock(START)
    scenario = build_scenario(now=START, events=events, seed=5)
    source = place(scenario, tmp_path)
    state = build_demo_state(clock=clock, options=SimulatorOptions(properties_as_strings=strings))
    state.faults.silent_drop_ids.update(scenario.dropped_ids)
    settings = settings_from_mapping(
        {
            "database_url": db_url,
            "state_dir": str(tmp_path / "state"),
            "metronome": {"requests_per_second": 50, "max_ids_per_request": 100},
            "sources": [
                {
                    "name": "gateway",
                    "sample_size": 400,
                    "settle_delay": "10m",
                    "max_age": "33d",
                    **source,
                }
            ],
            "checks": {"every": "15m", "missing_grace": "2h", "min_checks_before_missing": 2},
        }
    )
    with SimulatorServer(state, token=TOKEN) as server:
        with SearchClient(
            base_url=server.base_url, token=TOKEN, clock=clock, requests_per_second=100
        ) as ingest_client:
            ingest_scenario(scenario, ingest_client.ingest)
        engine = make_engine(db_url)
        yield World(clock, scenario, server, settings, db_url, engine)
        engine.dispose()


@pytest.fixture(params=[False, True], ids=["json-values", "string-values"])
def world(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> Iterator[World]:
    yield from _world(db_url, tmp_path, strings=request.param)


def _recorded(db_url: str) -> list[SampledEvent]:
    engine = make_engine(db_url)
    with transaction(session_factory(engine)) as session:
        rows = list(session.execute(select(SampledEvent)).scalars())
    engine.dispose()
    return rows


def _settle(world: World, search: SearchClient, cycles: int) -> None:
    for _ in range(cycles):
        world.cycle(search).run()
        world.clock.advance(15 * 60)
    # Work off what is still pending without drawing more.
    for _ in range(3):
        world.cycle(search).run(draw=False)
        world.clock.advance(15 * 60)


def assert_true_outcomes(world: World) -> list[SampledEvent]:
    """Settle three cycles; every recorded outcome must be the injected truth."""
    with world.search_client() as search:
        _settle(world, search, cycles=3)
    rows = _recorded(world.db_url)
    truth = world.scenario.truth_by_identity()
    assert len(rows) >= 700
    wrong = [
        (r.transaction_id, r.outcome, truth[(r.transaction_id, r.payload_hash)].value, r.reason)
        for r in rows
        if r.outcome != truth[(r.transaction_id, r.payload_hash)].value
    ]
    assert wrong == []
    return rows


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
        statuses = dict(
            session.execute(
                select(SamplingRun.status, func.count()).group_by(col(SamplingRun.status))
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
