"""A compressed day of cycles against a growing source: no memory, fd or connection creep.

The daemon's own jobs run a full 24-hour schedule on a fake clock (so a day takes
seconds to minutes), against the simulator over loopback HTTP, while the source log
grows before every cycle. Appended events are not sent to the simulator: they become
`missing` once their grace passes, so the alert fires and the re-check queue works
all day too. Measured per cycle in this process (leakwatch, the simulator and the
fake Slack together): resident memory, open file descriptors, open sockets, and the
cycle's own duration on the fake clock, which is what the search pacing would take
in real time.

What must hold after the warm-up (the first quarter of the day): resident memory
grows by less than 10%, the fd and socket counts do not grow, every cycle finishes,
and every cycle fits its interval.

The CI version is small (a few thousand events, hourly cycles). The full version —
`slow`, a source growing from 500,000 to 1,000,000 events under 15-minute cycles — runs
only when `LEAKWATCH_SOAK_FULL=1` (bench/reliability_report.py sets it).
"""

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from leakwatch.core.events import format_timestamp
from tests.reliability.conftest import Ledger
from tests.reliability.world import World, cycle_world, leak_alert

ALERTS = leak_alert(window="24h")


@dataclass(frozen=True)
class SoakPlan:
    start_events: int
    end_events: int
    every: timedelta
    sample_size: int


SHORT = SoakPlan(start_events=3_000, end_events=6_000, every=timedelta(hours=1), sample_size=40)
FULL = SoakPlan(
    start_events=500_000, end_events=1_000_000, every=timedelta(minutes=15), sample_size=200
)


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def _fds() -> tuple[int, int]:
    """(open fds, of which sockets) of this process."""
    names = os.listdir("/proc/self/fd")
    sockets = 0
    for name in names:
        try:
            sockets += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
        except OSError:
            continue  # the fd listdir itself used, already closed
    return len(names), sockets


def _append(log: Path, world: World, first: int, count: int, span: timedelta) -> None:
    """Append `count` time-ordered events over the `span` before the clock's now."""
    if count <= 0:
        return
    end = world.clock.now() - timedelta(minutes=11)
    step = span / count
    start = end - span
    lines = []
    for i in range(count):
        number = first + i
        lines.append(
            json.dumps(
                {
                    "transaction_id": f"soak-{number:08d}",
                    "customer_id": ("acme", "globex", "initech")[number % 3],
                    "event_type": "api_request",
                    "timestamp": format_timestamp(start + step * (i + 1)),
                    "properties": {"endpoint": "/v1/things", "n": number},
                },
                separators=(",", ":"),
            )
        )
    with log.open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def _soak(tmp_path: Path, plan: SoakPlan, ledger: Ledger) -> None:
    cycles = int(timedelta(hours=24) / plan.every)
    warm_up = cycles // 4
    every_toml = f"{int(plan.every.total_seconds())}s"
    with cycle_world(
        tmp_path,
        events=600,
        sample_size=plan.sample_size,
        extra_config=ALERTS,
        every=every_toml,
    ) as world:
        added = 0
        _append(world.log_path, world, 0, plan.start_events, timedelta(hours=2, minutes=30))
        added += plan.start_events
        growth = (plan.end_events - plan.start_events) // cycles
        samples: list[tuple[int, int, int]] = []
        for _ in range(cycles):
            _append(world.log_path, world, added, growth, plan.every)
            added += growth
            world.cycle()
            samples.append((_rss_kb(), *_fds()))
        runs = world.query("SELECT status, started_at, finished_at FROM sampling_run ORDER BY id")
        fired = world.query("SELECT count(*) FROM alert_transition WHERE transition = 'fire'")

        base_rss, base_fds, base_sockets = samples[warm_up - 1]
        end_rss, end_fds, end_sockets = samples[-1]
        late = [
            r
            for r in runs
            if r[0] != "finished" or _seconds(r[2], r[1]) > plan.every.total_seconds()
        ]
        ledger.cases = cycles
        ledger.faults = added
        ledger.crashes = world.crashes
        rss_growth = (end_rss - base_rss) / base_rss
        print(
            f"soak: {cycles} cycles, {added} events appended, rss {base_rss} -> {end_rss} kB"
            f" ({rss_growth:+.1%}), fds {base_fds} -> {end_fds},"
            f" sockets {base_sockets} -> {end_sockets}, late or failed cycles {len(late)}"
        )
        assert len(runs) == cycles
        assert late == []
        assert rss_growth < 0.10, samples
        assert end_fds <= base_fds and end_sockets <= base_sockets, samples
        assert fired[0][0] >= 1
        assert world.crashes == 0


def _seconds(finished: object, started: object) -> float:
    from datetime import datetime

    def as_dt(value: object) -> datetime:
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))

    return (as_dt(finished) - as_dt(started)).total_seconds()


def test_a_compressed_day_with_a_growing_source_holds_memory_fds_and_schedule(
    tmp_path: Path, ledger: Ledger
) -> None:
    _soak(tmp_path, SHORT, ledger)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("LEAKWATCH_SOAK_FULL") != "1",
    reason="the full soak (1 M events) runs from bench/reliability_report.py",
)
def test_the_full_soak_a_day_of_15_minute_cycles_to_a_million_events(
    tmp_path: Path, ledger: Ledger
) -> None:
    _soak(tmp_path, FULL, ledger)
