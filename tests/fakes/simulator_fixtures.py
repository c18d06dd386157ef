"""Helpers to run the Metronome simulator in-process for tests (real loopback HTTP)."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from leakwatch.clock import Clock
from leakwatch.core.events import format_timestamp
from leakwatch.simulator import SimulatorOptions, SimulatorServer, SimulatorState, build_demo_state

TOKEN = "sim-test-token-3f9a1c"


def make_event(
    transaction_id: str,
    clock: Clock,
    *,
    customer_id: str = "acme",
    event_type: str = "api_request",
    age: timedelta = timedelta(hours=1),
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build one ingest event (Metronome's wire shape), `age` before the clock's now."""
    return {
        "transaction_id": transaction_id,
        "customer_id": customer_id,
        "event_type": event_type,
        "timestamp": format_timestamp(clock.now() - age),
        "properties": {"endpoint": "/v1/things"} if properties is None else properties,
    }


@contextmanager
def running_simulator(
    clock: Clock,
    *,
    options: SimulatorOptions | None = None,
    search_rate_limit_rps: float | None = None,
    burst: float | None = None,
    server_clock: Clock | None = None,
    state: SimulatorState | None = None,
) -> Iterator[SimulatorServer]:
    """Run the demo state on an ephemeral loopback port; the rate limiter reads `server_clock`.

    Default server clock = `clock`, so a FakeClock shared with the client makes rate
    limits and retries instant and deterministic.
    """
    state = state or build_demo_state(clock=clock, options=options, rng_seed=7)
    with SimulatorServer(
        state,
        token=TOKEN,
        search_rate_limit_rps=search_rate_limit_rps,
        burst=burst,
        clock=server_clock or clock,
    ) as sim:
        yield sim
