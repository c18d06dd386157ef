"""Benchmark the search client's pacing against the simulator's rate limit.

The baseline is the ideal throughput of the same run: the server's limit R times
`max_ids_per_request` IDs a second. Two scenarios:

1. client configured at R (the right budget): ≥ 95% of ideal, ≤ 1% of calls answered 429;
2. client configured at 2 × R (a wrong budget): it must adapt — ≥ 80% of ideal, ≤ 5% 429s.

Run: `.venv/bin/python bench/bench_search.py [--quick] [--rate 20] [--ids 20000] [--burst 2]`.
Exits 1 if a target is missed. The server's bucket holds `--burst` calls (default 2:
it tolerates two calls landing in one 1/R interval). With `--burst 1` a client at
exactly R collides with the limit on network jitter alone.
"""

import argparse
import logging
import sys
from dataclasses import dataclass
from datetime import timedelta

import structlog

from leakwatch.clock import SystemClock
from leakwatch.core.events import format_timestamp
from leakwatch.metronome import SearchClient
from leakwatch.simulator import SimulatorServer, build_demo_state

TOKEN = "bench-token"


@dataclass(frozen=True)
class Scenario:
    name: str
    client_rps_factor: float
    min_throughput_ratio: float
    max_rate_limited_share: float


SCENARIOS = (
    Scenario("client at R", 1.0, 0.95, 0.01),
    Scenario("client at 2R", 2.0, 0.80, 0.05),
)


def ingest_all(sim: SimulatorServer, ids: list[str], clock: SystemClock) -> None:
    timestamp = format_timestamp(clock.now() - timedelta(hours=1))
    events = [
        {
            "transaction_id": txn,
            "customer_id": "acme",
            "event_type": "api_request",
            "timestamp": timestamp,
            "properties": {"endpoint": "/v1/things"},
        }
        for txn in ids
    ]
    with SearchClient(
        base_url=sim.base_url, token=TOKEN, clock=clock, requests_per_second=1_000
    ) as client:
        client.ingest(events)


def run_scenario(
    sim: SimulatorServer,
    scenario: Scenario,
    ids: list[str],
    rate_rps: float,
    max_ids: int,
    burst: float,
    clock: SystemClock,
    strict: bool,
) -> bool:
    # A fresh bucket per scenario; a small burst, so it cannot flatter the ratio.
    sim.set_rate_limit("search", rate_rps, burst)
    with SearchClient(
        base_url=sim.base_url,
        token=TOKEN,
        clock=clock,
        requests_per_second=rate_rps * scenario.client_rps_factor,
        max_ids_per_request=max_ids,
    ) as client:
        started = clock.monotonic()
        result = client.search(ids)
        elapsed_s = clock.monotonic() - started
        stats = client.stats
    found = sum(1 for items in result.answered.values() if items)
    throughput = len(result.answered) / elapsed_s
    ideal = rate_rps * max_ids
    ratio = throughput / ideal
    share_429 = stats.rate_limited / stats.calls if stats.calls else 0.0
    ok_ratio = ratio >= scenario.min_throughput_ratio
    ok_429 = share_429 <= scenario.max_rate_limited_share
    print(
        f"\n{scenario.name} (server R = {rate_rps:g} rps, burst {burst:g}, "
        f"client {scenario.client_rps_factor:g}×R)"
    )
    print(
        f"  ids answered {len(result.answered)}/{len(ids)}, found {found}, "
        f"errors {len(result.errors)}"
    )
    print(f"  calls {stats.calls}, 429s {stats.rate_limited}, elapsed {elapsed_s:.2f} s")
    print(f"  final client rate {stats.current_rate_rps:.2f} rps")
    print(
        f"  throughput / ideal = {throughput:.0f} / {ideal:.0f} ids/s = {ratio:.3f}"
        f"  (target ≥ {scenario.min_throughput_ratio:.2f})  {'PASS' if ok_ratio else 'FAIL'}"
    )
    print(
        f"  429 share = {share_429:.4f}"
        f"  (target ≤ {scenario.max_rate_limited_share:.2f})  {'PASS' if ok_429 else 'FAIL'}"
    )
    complete = not result.errors and found == len(ids)
    return complete and ((ok_ratio and ok_429) or not strict)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2,000 ids; targets printed but not enforced (too few calls)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="server rate limit R (rps)")
    parser.add_argument("--ids", type=int, default=20_000)
    parser.add_argument("--burst", type=float, default=2.0, help="server bucket size (calls)")
    parser.add_argument("--max-ids", type=int, default=100, help="ids per request")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    n_ids = 2_000 if args.quick else args.ids
    clock = SystemClock()
    state = build_demo_state(clock=clock)
    ids = [f"bench-{i:06d}" for i in range(n_ids)]
    with SimulatorServer(state, token=TOKEN) as sim:
        ingest_all(sim, ids, clock)
        print(f"ingested {n_ids} events; searching them with max {args.max_ids} ids/request")
        passed = [
            run_scenario(
                sim, scenario, ids, args.rate, args.max_ids, args.burst, clock, not args.quick
            )
            for scenario in SCENARIOS
        ]
    if args.quick:
        print("\n(--quick: 20 calls are too few for the ratios; only completeness is enforced)")
    print("\nOVERALL", "PASS" if all(passed) else "FAIL")
    return 0 if all(passed) else 1


if __name__ == "__main__":
    sys.exit(main())
