"""`POST /v1/usage` end to end: the simulator aggregates as billing does, and the
client follows every page, retries faults and refuses a broken answer.

The simulator's answer is checked against values computed by hand from what was
ingested, per aggregation type, so the reconciliation tests that build on it compare
leakwatch's expectations with an independent figure.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from leakwatch.clock import FakeClock
from leakwatch.core.reconcile import PropertyFilter, UsageAggregate
from leakwatch.metronome import SearchClient
from leakwatch.metronome.errors import RequestFailed, TokenRejected
from leakwatch.simulator import FaultKind, SimulatorServer, SimulatorState
from tests.fakes.simulator_fixtures import TOKEN, running_simulator

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY0 = datetime(2026, 11, 18, tzinfo=UTC)


def _state(clock: FakeClock) -> SimulatorState:
    state = SimulatorState(clock=clock, seed=3)
    state.add_customer("Acme", ["acme"], customer_id="c-acme")
    state.add_customer("Globex", ["globex"], customer_id="c-globex")
    state.add_metric("Calls", metric_id="m-count", event_type_in=["api"])
    state.add_metric(
        "Seconds",
        metric_id="m-sum",
        event_type_in=["gpu"],
        property_filters=[PropertyFilter("gpu", in_values=("a100", "h100"))],
        aggregation_type="SUM",
        aggregation_key="seconds",
    )
    state.add_metric(
        "Peak",
        metric_id="m-max",
        event_type_in=["gpu"],
        aggregation_type="MAX",
        aggregation_key="seconds",
    )
    state.add_metric(
        "Users",
        metric_id="m-unique",
        event_type_in=["api"],
        aggregation_type="UNIQUE",
        aggregation_key="user",
    )
    state.add_metric(
        "Last",
        metric_id="m-latest",
        event_type_in=["gpu"],
        aggregation_type="LATEST",
        aggregation_key="seconds",
    )
    state.add_metric(
        "Custom",
        metric_id="m-sql",
        event_type_in=["api"],
        aggregation_type="custom_sql",
        sql="select count(*) from events",
    )
    return state


def _event(
    txn: str, customer: str, event_type: str, at: datetime, **props: object
) -> dict[str, object]:
    return {
        "transaction_id": txn,
        "customer_id": customer,
        "event_type": event_type,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "properties": props,
    }


@pytest.fixture
def clock_start() -> datetime:
    return NOW


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[SimulatorServer]:
    state = _state(clock)
    state.ingest(
        [
            _event("a1", "acme", "api", DAY0 + timedelta(hours=1), user="u1"),
            _event("a2", "acme", "api", DAY0 + timedelta(hours=2), user="u1"),
            _event("a3", "acme", "api", DAY0 + timedelta(hours=3), user="u2"),
            _event("a4", "acme", "api", DAY0 + timedelta(days=1, hours=1), user="u3"),
            _event("g1", "globex", "gpu", DAY0 + timedelta(hours=5), gpu="a100", seconds=10),
            _event("g2", "globex", "gpu", DAY0 + timedelta(hours=6), gpu="h100", seconds="2.5"),
            _event("g3", "globex", "gpu", DAY0 + timedelta(hours=7), gpu="t4", seconds=100),
            _event("x1", "nobody", "api", DAY0 + timedelta(hours=1), user="u9"),
        ]
    )
    # A resend of a1 is a duplicate: billed once.
    state.ingest([_event("a1", "acme", "api", DAY0 + timedelta(hours=1), user="u1")])
    with running_simulator(clock, state=state) as server:
        yield server


@pytest.fixture
def client(sim: SimulatorServer, clock: FakeClock) -> Iterator[SearchClient]:
    with SearchClient(base_url=sim.base_url, token=TOKEN, clock=clock, requests_per_second=10) as c:
        yield c


def _values(rows: list[UsageAggregate]) -> dict[tuple[str, str, str], float | None]:
    return {
        (r.customer_id, r.billable_metric_id, r.start.date().isoformat()): r.value for r in rows
    }


def test_usage_aggregates_each_kind_per_customer_metric_and_day(client: SearchClient) -> None:
    rows = client.fetch_usage(starting_on=DAY0, ending_before=DAY0 + timedelta(days=2))
    values = _values(rows)
    day0, day1 = "2026-11-18", "2026-11-19"
    assert values[("c-acme", "m-count", day0)] == 3  # the resend is not counted again
    assert values[("c-acme", "m-count", day1)] == 1
    assert values[("c-acme", "m-unique", day0)] == 2
    assert values[("c-acme", "m-sql", day0)] is None  # the simulator runs no SQL
    assert values[("c-globex", "m-sum", day0)] == 12.5  # t4 fails the filter; "2.5" counts
    assert values[("c-globex", "m-max", day0)] == 100  # MAX has no property filter
    assert values[("c-globex", "m-latest", day0)] == 100
    assert values[("c-globex", "m-count", day0)] == 0
    assert values[("c-globex", "m-max", day1)] is None  # no events: no maximum
    # Every customer x metric x day has a row; the unknown alias is billed to nobody.
    assert len(rows) == 2 * 6 * 2
    assert {r.end - r.start for r in rows} == {timedelta(days=1)}


def test_usage_windows_hour_and_none_and_filters(client: SearchClient) -> None:
    hourly = client.fetch_usage(
        starting_on=DAY0,
        ending_before=DAY0 + timedelta(hours=4),
        window_size="HOUR",
        customer_ids=["c-acme"],
        metric_ids=["m-count"],
    )
    assert [r.value for r in hourly] == [0, 1, 1, 1]
    whole = client.fetch_usage(
        starting_on=DAY0,
        ending_before=DAY0 + timedelta(days=2),
        window_size="NONE",
        customer_ids=["c-acme"],
        metric_ids=["m-count"],
    )
    assert [r.value for r in whole] == [4]


def test_a_late_alias_re_attributes_usage(sim: SimulatorServer, client: SearchClient) -> None:
    sim.state.add_alias("c-globex", "nobody")
    rows = client.fetch_usage(
        starting_on=DAY0, ending_before=DAY0 + timedelta(days=1), metric_ids=["m-count"]
    )
    assert _values(rows)[("c-globex", "m-count", "2026-11-18")] == 1


def test_the_client_follows_every_page(sim: SimulatorServer, client: SearchClient) -> None:
    rows = client.fetch_usage(
        starting_on=DAY0 - timedelta(days=20), ending_before=DAY0 + timedelta(days=2)
    )
    assert len(rows) == 2 * 6 * 22  # 264 rows: three pages of 100
    assert len({(r.customer_id, r.billable_metric_id, r.start) for r in rows}) == len(rows)
    assert sim.stats["usage"].ok == 3


def test_faults_are_retried_and_a_broken_page_never_reads_as_data(
    sim: SimulatorServer, client: SearchClient
) -> None:
    sim.faults.endpoints = frozenset({"usage"})
    sim.faults.script(FaultKind.SERVER_ERROR, 2)
    sim.faults.script(FaultKind.MALFORMED_JSON, 1)
    rows = client.fetch_usage(starting_on=DAY0, ending_before=DAY0 + timedelta(days=1))
    assert len(rows) == 12
    sim.faults.script(FaultKind.SERVER_ERROR, 50)
    with pytest.raises(RequestFailed, match="gave up"):
        client.fetch_usage(starting_on=DAY0, ending_before=DAY0 + timedelta(days=1))


def test_a_bad_query_and_a_bad_token_fail_clearly(sim: SimulatorServer, clock: FakeClock) -> None:
    good = SearchClient(base_url=sim.base_url, token=TOKEN, clock=clock, requests_per_second=5)
    with good, pytest.raises(RequestFailed, match="HTTP 400: ending_before must be after"):
        good.fetch_usage(starting_on=DAY0, ending_before=DAY0)
    bad = SearchClient(base_url=sim.base_url, token="wrong", clock=clock, requests_per_second=5)
    with bad, pytest.raises(TokenRejected):
        bad.fetch_usage(starting_on=DAY0, ending_before=DAY0 + timedelta(days=1))
