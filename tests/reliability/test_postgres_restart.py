"""Postgres really stopped, restarted and its connections killed while cycles run.

The store is a Postgres cluster this test creates (see pg_cluster.py; the shared one
is never touched). Each fault lands while a cycle is in flight: the cycle is held in
its lookups (the simulator keeps a few answers past the client's timeout) while the
server is restarted, stopped until the cycle tries to record, or has every session
of ours terminated. What must hold: the cycle either carries on (a pre-pinged pool
reconnects) or fails cleanly (a job failure, logged; never an exception out of the
job), the next cycle recovers, and in the end every sampled event is recorded once
with its true outcome and no run is left "running".
"""

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from leakwatch.clock import SystemClock
from leakwatch.simulator import FaultKind
from tests.reliability.conftest import Ledger
from tests.reliability.pg_cluster import Cluster, own_cluster
from tests.reliability.world import World, cycle_world

CLOCK = SystemClock()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with own_cluster() as own:
        yield own


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = CLOCK.monotonic() + timeout_s
    while not condition():
        if CLOCK.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        CLOCK.sleep(0.01)


def _terminate_ours(cluster: Cluster) -> int:
    with psycopg.connect(
        f"postgresql://postgres@127.0.0.1:{cluster.port}/template1", autocommit=True
    ) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = 'postgres' AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def _mid_cycle(world: World, fault: Callable[[], object], after: Callable[[], object]) -> None:
    """Run a cycle in a thread; inject `fault` while its lookups are held; `after` it ends."""
    stats = world.simulator.stats["search"]
    world.simulator.faults.script(FaultKind.TIMEOUT, 3)  # ~3 x the 0.5 s client timeout
    seen = stats.requests
    worker = threading.Thread(target=world.cycle)
    worker.start()
    try:
        _wait(lambda: stats.requests > seen, "the cycle's first lookup")
        fault()
    finally:
        worker.join(timeout=120)
        after()
    assert not worker.is_alive()


def _run_statuses(world: World) -> dict[str, int]:
    return {
        str(s): int(n)
        for s, n in world.query("SELECT status, count(*) FROM sampling_run GROUP BY status")
    }


def test_postgres_restarted_stopped_and_killed_mid_cycle_then_every_event_once(
    tmp_path: Path, cluster: Cluster, ledger: Ledger
) -> None:
    with cycle_world(tmp_path, database_url=cluster.url, sample_size=40, timeout_s=0.5) as world:
        world.cycle()
        # 1. Restarted while the cycle waits on Metronome: the pool reconnects.
        _mid_cycle(world, cluster.restart, lambda: None)
        # 2. Stopped until the cycle tries to record what it looked up: it fails.
        _mid_cycle(world, cluster.stop, cluster.start)
        world.cycle()
        # 3. Every session of ours terminated mid-cycle, twice.
        _mid_cycle(world, lambda: _terminate_ours(cluster) and None, lambda: None)
        _mid_cycle(world, lambda: _terminate_ours(cluster) and None, lambda: None)
        ledger.faults = 4
        world.recover()

        events, lost, doubled, examples = world.truth_report()
        statuses = _run_statuses(world)
        ledger.cases = events
        ledger.events_lost = lost
        ledger.events_doubled = doubled
        ledger.crashes = world.crashes
        _, ledger.notifications_lost, ledger.notifications_doubled = world.notification_report()

        assert world.crashes == 0
        assert statuses.get("running", 0) == 0, statuses
        assert statuses.get("failed", 0) + statuses.get("abandoned", 0) >= 1, statuses
        assert lost == 0, examples
        assert doubled == 0
        assert events > 50
        assert ledger.notifications_lost == ledger.notifications_doubled == 0
