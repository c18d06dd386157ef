"""Metronome misbehaving during real cycles: nothing sampled is misjudged for it.

Each phase injects one fault into the simulator (over real loopback HTTP) for a few
cycles of the daemon's own jobs, then the next; at the end a few clean cycles run.
What must hold: no sampled event ends with an outcome other than its ground truth
(above all, never `missing` because a lookup failed), none is recorded twice, the
jobs never raise (a failing job is logged and the next beat runs), health alerts
fire during the fault and resolve in their thread once Metronome is back, and every
notification reaches Slack exactly once.
"""

from pathlib import Path

from leakwatch.simulator import FaultKind
from tests.reliability.conftest import Ledger
from tests.reliability.world import TOKEN, World, cycle_world

TOKEN_TITLE = "Metronome rejects the API token"
UNREACHABLE_TITLE = "Metronome unreachable"


def _phase(world: World, cycles: int) -> int:
    """Run `cycles` beats; return how many faults the simulator injected meanwhile."""
    stats = world.simulator.stats["search"]
    before = stats.faults + stats.rate_limited + stats.unauthorized
    for _ in range(cycles):
        world.cycle()
    return stats.faults + stats.rate_limited + stats.unauthorized - before


def _account(world: World, ledger: Ledger) -> list[tuple[str, str, str]]:
    events, lost, doubled, examples = world.truth_report()
    _queued, notes_lost, notes_doubled = world.notification_report()
    ledger.cases += events
    ledger.crashes += world.crashes
    ledger.events_lost += lost
    ledger.events_doubled += doubled
    ledger.notifications_lost += notes_lost
    ledger.notifications_doubled += notes_doubled
    return examples


def test_faulty_answers_for_many_cycles_misjudge_and_double_nothing(
    tmp_path: Path, ledger: Ledger
) -> None:
    with cycle_world(tmp_path, sample_size=60) as world:
        faults = world.simulator.faults
        faults.endpoints = frozenset({"search"})
        world.cycle()  # a clean first beat: the baseline every later fault departs from

        faults.server_error_rate = 0.2  # 20% of calls answer 500
        ledger.faults += _phase(world, 4)
        faults.clear()
        faults.timeout_rate = 0.15  # held past the client's 0.3 s timeout
        ledger.faults += _phase(world, 2)
        faults.clear()
        faults.drop_connection_rate = 0.2
        ledger.faults += _phase(world, 3)
        faults.clear()
        faults.malformed_rate = 0.15  # truncated JSON, a wrong shape, items missing fields
        faults.truncated_rate = 0.1  # a body cut short of its Content-Length
        faults.script(FaultKind.BAD_ENCODING, 2)
        faults.script(FaultKind.DEEP_NESTING, 2)
        ledger.faults += _phase(world, 3)
        faults.clear()
        faults.script(FaultKind.RATE_LIMITED, 40)  # a 429 storm
        ledger.faults += _phase(world, 3)

        faults.clear()
        world.simulator.set_token("revoked-" + TOKEN)  # the token revoked mid-run
        ledger.faults += _phase(world, 2)
        assert any(TOKEN_TITLE in t for t in world.titles()), world.titles()
        world.simulator.set_token(TOKEN)
        world.recover()

        examples = _account(world, ledger)
        assert world.resolved(TOKEN_TITLE), "the token alert never resolved"
        assert ledger.faults >= 50
        assert ledger.crashes == 0
        assert ledger.events_lost == 0, examples
        assert ledger.events_doubled == 0
        assert ledger.notifications_lost == ledger.notifications_doubled == 0
        assert ledger.cases > 100


def test_metronome_down_for_several_cycles_fires_the_health_alert_then_resolves(
    tmp_path: Path, ledger: Ledger
) -> None:
    with cycle_world(tmp_path) as world:
        world.cycle()
        world.simulator.stop()  # connections refused
        try:
            ledger.faults += 4
            _phase(world, 4)
            assert any(UNREACHABLE_TITLE in t for t in world.titles()), world.titles()
        finally:
            world.simulator.start()
        world.recover()
        examples = _account(world, ledger)
        assert world.resolved(UNREACHABLE_TITLE), "the outage alert never resolved"
        assert ledger.events_lost == 0, examples
        assert ledger.events_doubled == 0
        assert ledger.notifications_lost == ledger.notifications_doubled == 0
