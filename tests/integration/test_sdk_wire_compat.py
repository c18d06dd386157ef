"""The official Metronome SDK cannot tell the simulator from the real service.

`_strict_response_validation=True` makes the SDK raise on a wrong type, a missing
field or an unknown enum value; `model_extra` catches keys the contract lacks.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pydantic
import pytest
from metronome import AuthenticationError, BadRequestError, Metronome, RateLimitError
from metronome.types.v1 import UsageSearchResponse

from leakwatch.clock import FakeClock, SystemClock
from leakwatch.metronome import parse_search_body
from leakwatch.simulator import SimulatorOptions, SimulatorServer
from tests.fakes.simulator_fixtures import TOKEN, make_event, running_simulator


@pytest.fixture
def system_clock() -> SystemClock:
    return SystemClock()


@pytest.fixture
def sim(system_clock: SystemClock) -> Iterator[SimulatorServer]:
    with running_simulator(system_clock) as server:
        yield server


@pytest.fixture
def sdk(sim: SimulatorServer) -> Iterator[Metronome]:
    client = Metronome(
        bearer_token=TOKEN,
        base_url=sim.base_url,
        _strict_response_validation=True,
        max_retries=0,
    )
    yield client
    client.close()


def assert_no_unknown_keys(model: pydantic.BaseModel) -> None:
    """Walk the model tree: every key the simulator sent must be a declared field."""
    assert not model.model_extra, f"{type(model).__name__} got unknown keys {model.model_extra}"
    for name in type(model).model_fields:
        value = getattr(model, name)
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, pydantic.BaseModel):
                assert_no_unknown_keys(child)


def ingest_sample(sdk: Metronome, system_clock: SystemClock) -> list[dict[str, Any]]:
    usage = [
        make_event(
            "w-api", system_clock, properties={"endpoint": "/v1/x", "user_id": "u1", "ms": 45}
        ),
        make_event("w-api", system_clock, properties={"endpoint": "/v1/other"}),  # a collision
        make_event(
            "w-gpu",
            system_clock,
            customer_id="5a1f6a0e-7c43-4d35-9a5b-2a4f0e1c9b01",
            event_type="gpu_seconds",
            properties={"seconds": 12.5, "gpu": "h100"},
        ),
        make_event("w-nobody", system_clock, customer_id="no-such-alias"),
    ]
    sdk.v1.usage.ingest(usage=usage)  # type: ignore[arg-type]
    return usage


def test_sdk_ingests_and_searches_parsing_every_field(
    sdk: Metronome, system_clock: SystemClock
) -> None:
    ingest_sample(sdk, system_clock)
    response = sdk.v1.usage.search(transaction_ids=["w-api", "w-gpu", "w-nobody", "w-unknown"])

    by_txn: dict[str, list[Any]] = {}
    for item in response:
        assert_no_unknown_keys(item)
        by_txn.setdefault(item.transaction_id, []).append(item)
    assert set(by_txn) == {"w-api", "w-gpu", "w-nobody"}

    accepted, duplicate = sorted(by_txn["w-api"], key=lambda i: bool(i.is_duplicate))
    assert accepted.is_duplicate is False
    assert duplicate.is_duplicate is True
    assert accepted.properties == {"endpoint": "/v1/x", "user_id": "u1", "ms": 45}
    assert accepted.matched_customer is not None
    assert accepted.matched_customer.name == "Acme Corp"
    assert accepted.processed_at is not None
    assert accepted.timestamp.tzinfo is not None
    metrics = {m.name: m for m in accepted.matched_billable_metrics or []}
    assert set(metrics) == {"API requests", "Unique API users"}
    assert metrics["API requests"].aggregation_type == "COUNT"
    assert metrics["API requests"].event_type_filter is not None
    assert metrics["API requests"].event_type_filter.in_values == ["api_request"]
    assert metrics["API requests"].property_filters is not None
    assert metrics["API requests"].property_filters[0].exists is True
    assert metrics["API requests"].group_keys == [["endpoint"]]
    assert metrics["Unique API users"].aggregation_key == "user_id"

    [gpu] = by_txn["w-gpu"]
    [gpu_metric] = gpu.matched_billable_metrics or []
    assert gpu_metric.aggregation_type == "SUM"
    assert gpu_metric.property_filters is not None
    assert gpu_metric.property_filters[1].in_values == ["a100", "h100"]

    [nobody] = by_txn["w-nobody"]
    assert nobody.matched_customer is None
    assert nobody.matched_billable_metrics == []


def test_raw_answer_validates_with_type_adapter_and_our_parser(
    sdk: Metronome, sim: SimulatorServer, system_clock: SystemClock
) -> None:
    ingest_sample(sdk, system_clock)
    raw = httpx.post(
        f"{sim.base_url}/v1/events/search",
        json={"transactionIds": ["w-api", "w-gpu", "w-nobody"]},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    items = pydantic.TypeAdapter(UsageSearchResponse).validate_json(raw.content, strict=False)
    assert len(items) == 4
    for item in items:
        assert_no_unknown_keys(item)
    ours = parse_search_body(raw.content)
    assert [i.id for i in ours] == [i.id for i in items]
    assert [i.timestamp for i in ours] == [i.timestamp for i in items]


def test_sdk_wire_body_for_search_is_camel_case(sdk: Metronome, sim: SimulatorServer) -> None:
    # The simulator answers 400 to `transaction_ids`; the SDK must send `transactionIds`.
    assert sdk.v1.usage.search(transaction_ids=["none"]) == []
    assert sim.stats["search"].bad_request == 0


def test_sdk_sees_the_documented_errors(sim: SimulatorServer, sdk: Metronome) -> None:
    with pytest.raises(BadRequestError) as bad:
        sdk.v1.usage.ingest(usage=[])
    assert "1 to 100" in str(bad.value)

    wrong = Metronome(bearer_token="nope", base_url=sim.base_url, max_retries=0)
    with pytest.raises(AuthenticationError):
        wrong.v1.usage.search(transaction_ids=["a"])
    wrong.close()

    sim.set_rate_limit("search", 0.01, 1)
    sdk.v1.usage.search(transaction_ids=["a"])
    with pytest.raises(RateLimitError) as limited:
        sdk.v1.usage.search(transaction_ids=["a"])
    assert float(limited.value.response.headers["retry-after-ms"]) > 0


def test_sandbox_quirks_still_parse() -> None:
    options = SimulatorOptions(properties_as_strings=True, metrics_key="billable_metrics")
    fake = FakeClock()
    with running_simulator(fake, options=options) as sim:
        sim.state.ingest([make_event("q", fake, properties={"endpoint": "/x", "n": 3})])
        [item] = sim.state.search(["q"])
    [parsed] = parse_search_body(httpx.Response(200, json=[item]).content)
    assert parsed.properties == {"endpoint": "/x", "n": "3"}
    assert [m.name for m in parsed.matched_billable_metrics] == ["API requests"]
    validated = pydantic.TypeAdapter(UsageSearchResponse).validate_python([item])
    assert validated[0].model_extra is not None
    assert "billable_metrics" in validated[0].model_extra  # the SDK would not see them


def test_sdk_parses_custom_sql_metrics_custom_fields_and_deprecated_fields(
    sim: SimulatorServer, sdk: Metronome, system_clock: SystemClock
) -> None:
    customer = sim.state.customers()[0]
    sim.state.add_metric(
        "Weighted tokens",
        event_type_in=["tokens"],
        aggregation_type="custom_sql",
        sql="SELECT sum(count) FROM events",
        custom_fields={"owner": "finance"},
        group_keys=[["model"]],
        created_at=system_clock.now() - timedelta(days=1),
    )
    sdk.v1.usage.ingest(
        usage=[
            make_event(  # type: ignore[list-item]
                "w-sql",
                system_clock,
                customer_id=customer.id,
                event_type="tokens",
                properties={"count": 3, "model": "big"},
            )
        ]
    )
    [item] = sdk.v1.usage.search(transaction_ids=["w-sql"])
    assert_no_unknown_keys(item)
    metrics = {m.name: m for m in item.matched_billable_metrics or []}
    weighted = metrics["Weighted tokens"]
    assert weighted.aggregation_type == "custom_sql"
    assert weighted.sql == "SELECT sum(count) FROM events"
    assert weighted.custom_fields == {"owner": "finance"}
    assert weighted.group_by == ["model"]
    tokens = metrics["Tokens"]
    assert tokens.aggregate == "sum"
    assert tokens.aggregate_keys == ["count"]
    assert tokens.custom_fields == {}


def test_sdk_lists_usage_aggregates_across_pages_with_strict_validation(
    sdk: Metronome, sim: SimulatorServer, system_clock: SystemClock
) -> None:
    """`client.v1.usage.list` parses every row and follows `next_page` to the end."""
    ingest_sample(sdk, system_clock)
    today = system_clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    rows = list(
        sdk.v1.usage.list(
            starting_on=today - timedelta(days=40),
            ending_before=today + timedelta(days=1),
            window_size="DAY",
        )
    )
    for row in rows:
        assert_no_unknown_keys(row)
    customers, metrics = len(sim.state.customers()), len(sim.state.metrics())
    assert len(rows) == customers * metrics * 41  # more than one page of 100
    acme_gpu = [
        r
        for r in rows
        if r.customer_id == "5a1f6a0e-7c43-4d35-9a5b-2a4f0e1c9b01"
        and r.billable_metric_name == "GPU seconds"
        and r.value
    ]
    assert [r.value for r in acme_gpu] == [12.5]
