"""A check-cycle world for tests: a scenario's source log, the simulator holding what was
ingested, and cycles built against both; `assert_true_outcomes` checks every recorded
verdict against what the scenario injected."""

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from leakwatch.clock import FakeClock
from leakwatch.config import Settings, settings_from_mapping
from leakwatch.metronome.client import SearchClient
from leakwatch.pipeline.check import CheckCycle
from leakwatch.simulator import SimulatorOptions, SimulatorServer, build_demo_state
from leakwatch.simulator.scenario import Scenario, build_scenario, ingest_scenario
from leakwatch.store.db import make_engine, session_factory, transaction
from leakwatch.store.models import SampledEvent
from leakwatch.wiring import build_check_cycle

SourcePlacer = Callable[[Scenario, Path], dict[str, Any]]
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


def local_jsonl(scenario: Scenario, tmp_path: Path) -> dict[str, Any]:
    log = tmp_path / "usage.jsonl"
    scenario.write_log(log)
    return {"type": "jsonl", "path": str(log)}


def build_world(
    db_url: str,
    tmp_path: Path,
    *,
    strings: bool,
    events: int = 1200,
    place: SourcePlacer = local_jsonl,
    scenario: Scenario | None = None,
    sample_size: int = 400,
    checks: Mapping[str, Any] | None = None,
    alerts: Sequence[Mapping[str, Any]] = (),
) -> Iterator[World]:
    clock = FakeClock(START)
    scenario = scenario or build_scenario(now=START, events=events, seed=5)
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
                    "sample_size": sample_size,
                    "settle_delay": "10m",
                    "max_age": "33d",
                    **source,
                }
            ],
            "checks": {
                "every": "15m",
                "missing_grace": "2h",
                "min_checks_before_missing": 2,
                **(checks or {}),
            },
            "alerts": list(alerts),
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


# Writes the scenario where a source reads it; returns the source's config keys.


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
