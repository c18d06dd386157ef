"""An in-memory Metronome usage API (`/v1/ingest`, `/v1/events/search`, `/v1/usage`)."""

from leakwatch.core.reconcile import PropertyFilter
from leakwatch.simulator.server import ServerStats, SimulatorServer, TokenBucket, serve
from leakwatch.simulator.state import (
    BillableMetric,
    Customer,
    EventFate,
    FaultKind,
    Faults,
    IngestRecord,
    InvalidIngest,
    SimulatorOptions,
    SimulatorState,
    build_demo_state,
    load_seed_file,
    state_from_seed,
)

__all__ = [
    "BillableMetric",
    "Customer",
    "EventFate",
    "FaultKind",
    "Faults",
    "IngestRecord",
    "InvalidIngest",
    "PropertyFilter",
    "ServerStats",
    "SimulatorOptions",
    "SimulatorServer",
    "SimulatorState",
    "TokenBucket",
    "build_demo_state",
    "load_seed_file",
    "serve",
    "state_from_seed",
]
