"""Re-checks within a tight budget: the oldest first, and no budget left unspent; and
what a cycle says when its lookups fail.

The simulator over loopback holds none of these events, so every look-up answers "not
found" and the rows stay pending; what matters here is which rows were looked at.
"""

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine, select
from sqlmodel import col

from leakwatch.clock import FakeClock
from leakwatch.config import Settings, settings_from_mapping
from leakwatch.core.events import DrawnEvent, SourceEvent
from leakwatch.core.results import CycleSummary
from leakwatch.metronome.client import SearchClient
from leakwatch.simulator import SimulatorServer, build_demo_state
from leakwatch.simulator.scenario import jsonl
from leakwatch.store.db import make_engine, session_factory, transaction
from leakwatch.store.models import SampledEvent as SampledEventRow
from leakwatch.store.outcomes import record_samples, sample_row
from leakwatch.views.terminal import print_cycle_summary
from leakwatch.wiring import build_check_cycle

TOKEN = "test-token-rechecks"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EVENTS = 30
IDS_PER_REQUEST = 10


@dataclass
class Setup:
    clock: FakeClock
    server: SimulatorServer
    settings: Settings
    engine: Engine
    events: list[SourceEvent]
    log: Path


@pytest.fixture
def setup(db_url: str, tmp_path: Path) -> Iterator[Setup]:
    clock = FakeClock(NOW)
    # Event i is i hours old: txn-00 the youngest, txn-29 the oldest.
    events = [
        SourceEvent(
            transaction_id=f"txn-{i:02d}",
            customer_id="acme",
            event_type="api_request",
            timestamp=NOW - timedelta(hours=i + 1),
            properties={"endpoint": "/v1/x", "user_id": f"u{i}"},
        )
        for i in range(EVENTS)
    ]
    log = tmp_path / "usage.jsonl"
    log.write_text(jsonl(events), encoding="utf-8")
    # One search call of 10 ids per cycle: 15 min × 0.8 × rps = 1 request.
    settings = settings_from_mapping(
        {
            "database_url": db_url,
            "state_dir": str(tmp_path / "state"),
            "metronome": {
                "requests_per_second": 1 / 720,
                "max_ids_per_request": IDS_PER_REQUEST,
            },
            "sources": [{"name": "gateway", "type": "jsonl", "path": str(log), "sample_size": 50}],
            "checks": {"every": "15m", "recheck_share": 0.3},
        }
    )
    with SimulatorServer(build_demo_state(clock=clock), token=TOKEN) as server:
        engine = make_engine(db_url)
        yield Setup(clock, server, settings, engine, events, log)
        engine.dispose()


def _record_pending(setup: Setup) -> None:
    """Record every event as pending and due, the youngest event due the longest."""
    rows = []
    for i, event in enumerate(setup.events):
        row = sample_row(
            DrawnEvent(source="gateway", event=event, weight=1.0),
            now=NOW,
            run_id=None,
            quantity_properties={},
        )
        row["next_check_at"] = NOW - timedelta(minutes=EVENTS - i)
        rows.append(row)
    with transaction(session_factory(setup.engine)) as session:
        record_samples(session, rows)


def _run(setup: Setup, *, draw: bool) -> tuple[CycleSummary, set[str]]:
    with SearchClient(
        base_url=setup.server.base_url,
        token=TOKEN,
        clock=setup.clock,
        requests_per_second=50,
        max_ids_per_request=IDS_PER_REQUEST,
    ) as search:
        cycle = build_check_cycle(
            setup.settings,
            engine=setup.engine,
            clock=setup.clock,
            search=search,
            rng=random.Random(1),
        )
        summary = cycle.run(draw=draw)
    with transaction(session_factory(setup.engine)) as session:
        looked_at = {
            str(txn)
            for (txn,) in session.execute(
                select(col(SampledEventRow.transaction_id)).where(
                    SampledEventRow.last_checked_at.is_not(None)  # type: ignore[union-attr]
                )
            )
        }
    return summary, looked_at


def test_pending_events_are_rechecked_oldest_first_within_the_budget(setup: Setup) -> None:
    _record_pending(setup)
    summary, looked_at = _run(setup, draw=False)
    assert summary.rechecked == IDS_PER_REQUEST
    oldest = {f"txn-{i:02d}" for i in range(EVENTS - IDS_PER_REQUEST, EVENTS)}
    assert looked_at == oldest


def test_a_draw_of_events_already_recorded_leaves_its_budget_to_rechecks(setup: Setup) -> None:
    # Every event in the log is recorded and due: whatever the draw picks is known, so
    # its share of the one search call must go to re-checks instead of going unspent.
    _record_pending(setup)
    summary, looked_at = _run(setup, draw=True)
    assert summary.rechecked == IDS_PER_REQUEST
    assert summary.search_requests == 1
    assert len(looked_at) == IDS_PER_REQUEST


def test_a_cycle_whose_lookups_fail_says_why(setup: Setup) -> None:
    setup.server.faults.server_error_rate = 1.0
    _record_pending(setup)
    summary, _ = _run(setup, draw=False)
    assert summary.verdicts == {"error": IDS_PER_REQUEST}
    ((reason, count),) = summary.lookup_errors.items()
    assert count == IDS_PER_REQUEST
    assert "500" in reason
    assert summary.to_dict()["search"]["failed_lookups"] == {reason: count}
    text = io.StringIO()
    print_cycle_summary(Console(file=text, width=200), summary, [], None)
    assert f"{IDS_PER_REQUEST} lookup(s) failed" in text.getvalue()
    assert reason in text.getvalue()
