"""The Metronome simulator over real loopback HTTP: ingest, search, matching, limits, faults."""

import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from leakwatch.clock import FakeClock
from leakwatch.simulator import (
    EventFate,
    FaultKind,
    PropertyFilter,
    SimulatorOptions,
    SimulatorServer,
    SimulatorState,
    load_seed_file,
)
from leakwatch.simulator.state import DEMO_CUSTOMERS
from tests.fakes.simulator_fixtures import TOKEN, make_event, running_simulator
from tests.support.cli import leakwatch

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[SimulatorServer]:
    with running_simulator(clock) as server:
        yield server


@pytest.fixture
def http(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, headers=AUTH, timeout=5) as client:
        yield client


def ingest(http: httpx.Client, events: Any) -> httpx.Response:
    return http.post("/v1/ingest", json=events)


def search(http: httpx.Client, *ids: str) -> list[dict[str, Any]]:
    response = http.post("/v1/events/search", json={"transactionIds": list(ids)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    return body


def test_ingest_then_search_returns_every_field(http: httpx.Client, clock: FakeClock) -> None:
    event = make_event("t-1", clock, properties={"endpoint": "/x", "user_id": 42})
    response = ingest(http, [event])
    assert response.status_code == 200
    assert response.content == b""

    [item] = search(http, "t-1", "never-sent")
    assert item["transaction_id"] == "t-1"
    assert item["customer_id"] == "acme"  # as sent: an alias, not the UUID
    assert item["event_type"] == "api_request"
    assert item["timestamp"] == event["timestamp"]
    assert item["is_duplicate"] is False
    assert item["properties"] == {"endpoint": "/x", "user_id": 42}
    assert item["matched_customer"] == {
        "id": "5a1f6a0e-7c43-4d35-9a5b-2a4f0e1c9b01",
        "name": "Acme Corp",
    }
    assert {m["name"] for m in item["matched_billable_metrics"]} == {
        "API requests",
        "Unique API users",
    }
    assert item["processed_at"].endswith("Z")
    assert item["id"]


@pytest.mark.parametrize(
    ("headers", "expected_status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": TOKEN}, 401),
        (AUTH, 200),
    ],
)
def test_bearer_auth(sim: SimulatorServer, headers: dict[str, str], expected_status: int) -> None:
    response = httpx.post(
        f"{sim.base_url}/v1/events/search", json={"transactionIds": []}, headers=headers
    )
    assert response.status_code == expected_status
    if expected_status == 401:
        assert "message" in response.json()


def _event(**overrides: Any) -> dict[str, Any]:
    event = {
        "transaction_id": "v-1",
        "customer_id": "acme",
        "event_type": "api_request",
        "timestamp": "2026-11-02T11:00:00Z",
        "properties": {},
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        ({"transaction_id": "x"}, "array"),
        ([], "1 to 100"),
        ([_event(transaction_id=f"b-{i}") for i in range(101)], "1 to 100"),
        ([_event(), _event(transaction_id=None)], "usage[1].transaction_id"),
        ([_event(transaction_id="x" * 129)], "usage[0].transaction_id: longer than 128"),
        ([_event(customer_id="")], "usage[0].customer_id"),
        ([_event(event_type=7)], "usage[0].event_type"),
        ([_event(timestamp="yesterday")], "usage[0].timestamp"),
        ([_event(timestamp="2026-11-02T11:00:00")], "usage[0].timestamp"),
        ([_event(timestamp="2026-11-03T12:00:01Z")], "24 hours in the future"),
        ([_event(timestamp="2026-09-28T11:00:00Z")], "older than 34 days"),
        ([_event(properties=[1, 2])], "usage[0].properties"),
        (["not an object"], "usage[0]"),
    ],
)
def test_ingest_rejects_invalid_batches_whole(
    http: httpx.Client, sim: SimulatorServer, body: Any, message_part: str
) -> None:
    response = ingest(http, body)
    assert response.status_code == 400
    assert message_part in response.json()["message"]
    assert sim.state.transaction_ids() == []


def test_transaction_id_of_128_chars_and_24h_future_are_accepted(
    http: httpx.Client, clock: FakeClock
) -> None:
    event = make_event("x" * 128, clock, age=timedelta(hours=-24))
    assert ingest(http, [event]).status_code == 200
    assert len(search(http, "x" * 128)) == 1


def test_duplicates_keep_first_payload_and_flag_later_copies(
    http: httpx.Client, sim: SimulatorServer, clock: FakeClock
) -> None:
    first = make_event("dup", clock, properties={"endpoint": "/first"})
    second = make_event("dup", clock, properties={"endpoint": "/second"})
    assert ingest(http, [first]).status_code == 200
    assert ingest(http, [second]).status_code == 200  # a collision still answers 200

    items = search(http, "dup")
    accepted = [i for i in items if not i["is_duplicate"]]
    duplicates = [i for i in items if i["is_duplicate"]]
    assert [i["properties"]["endpoint"] for i in accepted] == ["/first"]
    assert [i["properties"]["endpoint"] for i in duplicates] == ["/second"]
    assert [r.fate for r in sim.state.history("dup")] == [EventFate.STORED, EventFate.DUPLICATE]


def test_resend_after_dedup_window_is_accepted_again(
    http: httpx.Client, sim: SimulatorServer, clock: FakeClock
) -> None:
    assert ingest(http, [make_event("old", clock)]).status_code == 200
    clock.advance(timedelta(days=35).total_seconds())
    assert ingest(http, [make_event("old", clock)]).status_code == 200
    assert [r.fate for r in sim.state.history("old")] == [EventFate.STORED, EventFate.STORED]


def test_events_older_than_34_days_are_not_found(http: httpx.Client, clock: FakeClock) -> None:
    assert ingest(http, [make_event("aging", clock, age=timedelta(days=1))]).status_code == 200
    clock.advance(timedelta(days=32, hours=23).total_seconds())
    assert len(search(http, "aging")) == 1
    clock.advance(timedelta(hours=2).total_seconds())
    assert search(http, "aging") == []


def test_alias_added_later_reattributes_earlier_usage(
    http: httpx.Client, sim: SimulatorServer, clock: FakeClock
) -> None:
    assert ingest(http, [make_event("h-1", clock, customer_id="hooli")]).status_code == 200
    [before] = search(http, "h-1")
    assert "matched_customer" not in before
    assert before["matched_billable_metrics"] == []

    hooli = sim.state.add_customer("Hooli")
    sim.state.add_alias(hooli.id, "hooli")
    [after] = search(http, "h-1")
    assert after["matched_customer"] == {"id": hooli.id, "name": "Hooli"}
    assert after["customer_id"] == "hooli"
    assert [m["name"] for m in after["matched_billable_metrics"]] == ["API requests"]


@pytest.mark.parametrize(
    ("event_type", "properties", "expected_metrics"),
    [
        ("api_request", {"endpoint": "/x"}, {"API requests"}),
        ("api_request", {"endpoint": "/x", "user_id": "u"}, {"API requests", "Unique API users"}),
        ("api_request", {}, set()),  # exists: true fails
        ("api_request", {"endpoint": None}, set()),  # null counts as absent
        ("gpu_seconds", {"seconds": 3, "gpu": "h100"}, {"GPU seconds"}),
        ("gpu_seconds", {"seconds": 3, "gpu": "H100"}, set()),  # case-sensitive
        ("gpu_seconds", {"seconds": 3}, set()),  # in_values needs the property
        ("tokens", {"count": 10, "model": "big"}, {"Tokens"}),
        ("tokens", {"count": 10}, {"Tokens"}),  # not_in_values passes when absent
        ("tokens", {"count": 10, "model": "internal-test"}, set()),
        ("storage_gb", {"gb": 1}, set()),  # no metric for this type
    ],
)
def test_billable_metric_matching(
    clock: FakeClock, event_type: str, properties: dict[str, Any], expected_metrics: set[str]
) -> None:
    with running_simulator(clock) as sim:
        sim.state.ingest([make_event("m", clock, event_type=event_type, properties=properties)])
        [item] = sim.state.search(["m"])
    assert {m["name"] for m in item["matched_billable_metrics"]} == expected_metrics


@pytest.mark.parametrize(
    ("rule", "properties", "passes"),
    [
        (PropertyFilter("n", in_values=("5",)), {"n": 5}, True),  # compared as strings
        (PropertyFilter("n", in_values=("5",)), {"n": "5"}, True),
        (PropertyFilter("n", in_values=("true",)), {"n": True}, True),
        (PropertyFilter("n", not_in_values=("5",)), {"n": 5}, False),
        (PropertyFilter("n", exists=False), {"n": 1}, False),
        (PropertyFilter("n", exists=False), {}, True),
        (PropertyFilter("n"), {}, True),
    ],
)
def test_property_filter_rules(
    rule: PropertyFilter, properties: dict[str, Any], passes: bool
) -> None:
    assert rule.passes(properties) is passes


def test_event_type_not_in_filter_and_archived_and_late_metrics(clock: FakeClock) -> None:
    state = SimulatorState(clock=clock)
    state.add_customer("Solo", ["solo"])
    catch_all = state.add_metric("All but pings", event_type_not_in=["ping"])
    state.ingest(
        [make_event("a", clock, customer_id="solo"), make_event("p", clock, event_type="ping")]
    )
    clock.advance(1)
    late = state.add_metric("Created after usage", event_type_in=["api_request"])
    [a] = state.search(["a"])
    assert [m["id"] for m in a["matched_billable_metrics"]] == [catch_all.id]
    assert a["matched_billable_metrics"][0]["event_type_filter"] == {"not_in_values": ["ping"]}

    clock.advance(1)
    state.ingest([make_event("b", clock, customer_id="solo")])
    [b] = state.search(["b"])
    assert {m["id"] for m in b["matched_billable_metrics"]} == {catch_all.id, late.id}

    state.archive_metric(catch_all.id)
    clock.advance(1)
    [b_after] = state.search(["b"])
    assert [m["id"] for m in b_after["matched_billable_metrics"]] == [late.id]


def test_sandbox_quirks(clock: FakeClock) -> None:
    options = SimulatorOptions(
        properties_as_strings=True, metrics_key="billable_metrics", searchable_after_s=6
    )
    with running_simulator(clock, options=options) as sim:
        event = make_event("q", clock, properties={"endpoint": "/x", "n": 5, "ok": True})
        sim.state.ingest([event])
        assert sim.state.search(["q"]) == []  # not yet searchable
        clock.advance(6)
        [item] = sim.state.search(["q"])
    assert item["properties"] == {"endpoint": "/x", "n": "5", "ok": "true"}
    assert "matched_billable_metrics" not in item
    assert [m["name"] for m in item["billable_metrics"]] == ["API requests"]


def test_rate_limit_answers_429_with_retry_after(clock: FakeClock) -> None:
    with (
        running_simulator(clock, search_rate_limit_rps=2, burst=1) as sim,
        httpx.Client(base_url=sim.base_url, headers=AUTH) as http,
    ):
        body = {"transactionIds": ["a"]}
        assert http.post("/v1/events/search", json=body).status_code == 200
        limited = http.post("/v1/events/search", json=body)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "1"  # ceil of 0.5 s
        assert limited.headers["retry-after-ms"] == "500"
        assert "message" in limited.json()
        assert ingest(http, [make_event("i", clock)]).status_code == 200  # own bucket
        clock.advance(0.5)
        assert http.post("/v1/events/search", json=body).status_code == 200
        assert sim.stats["search"].rate_limited == 1


def test_scripted_faults(sim: SimulatorServer, http: httpx.Client, clock: FakeClock) -> None:
    ingest(http, [make_event("f", clock)])
    sim.faults.script(FaultKind.SERVER_ERROR)
    sim.faults.script(FaultKind.MALFORMED_JSON)
    sim.faults.script(FaultKind.WRONG_SHAPE)
    sim.faults.script(FaultKind.MISSING_FIELD)
    sim.faults.script(FaultKind.DROP_CONNECTION)
    body = {"transactionIds": ["f"]}

    assert http.post("/v1/events/search", json=body).status_code == 500
    malformed = http.post("/v1/events/search", json=body)
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    assert isinstance(http.post("/v1/events/search", json=body).json(), dict)
    [broken] = http.post("/v1/events/search", json=body).json()
    assert "transaction_id" not in broken
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/v1/events/search", json=body)
    assert len(search(http, "f")) == 1  # faults used up


def test_slow_fault_delays_the_answer(clock: FakeClock) -> None:
    with running_simulator(clock) as sim, httpx.Client(base_url=sim.base_url, headers=AUTH) as h:
        sim.faults.slow_delay_s = 30
        sim.faults.script(FaultKind.SLOW)
        before = clock.monotonic()
        assert h.post("/v1/events/search", json={"transactionIds": []}).status_code == 200
        assert clock.monotonic() - before == pytest.approx(30)  # the server slept on its clock


def test_silently_dropped_events_are_accepted_but_never_found(
    http: httpx.Client, sim: SimulatorServer, clock: FakeClock
) -> None:
    sim.faults.silent_drop_ids.add("lost")
    assert ingest(http, [make_event("lost", clock), make_event("kept", clock)]).status_code == 200
    assert [i["transaction_id"] for i in search(http, "lost", "kept")] == ["kept"]
    assert sim.state.fate("lost") is EventFate.DROPPED
    assert sim.state.fate("kept") is EventFate.STORED
    assert sim.state.fate("never") is None


def test_fault_rates_are_seeded_and_reproducible(clock: FakeClock) -> None:
    def run() -> list[EventFate | None]:
        with running_simulator(clock) as sim:
            sim.faults.silent_drop_rate = 0.3
            sim.state.ingest([make_event(f"r-{i}", clock) for i in range(100)])
            return [sim.state.fate(f"r-{i}") for i in range(100)]

    first, second = run(), run()
    assert first == second
    assert 10 < first.count(EventFate.DROPPED) < 50


def test_random_server_errors_follow_the_rate(sim: SimulatorServer, http: httpx.Client) -> None:
    sim.faults.server_error_rate = 0.5
    statuses = [
        http.post("/v1/events/search", json={"transactionIds": []}).status_code for _ in range(60)
    ]
    assert 10 < statuses.count(500) < 50
    assert set(statuses) == {200, 500}


def test_seed_file(tmp_path: Path, clock: FakeClock) -> None:
    seed = {
        "customers": [{"id": "c-1", "name": "Seeded", "ingest_aliases": ["seed-alias"]}],
        "billable_metrics": [
            {
                "name": "Seeded calls",
                "aggregation_type": "SUM",
                "aggregation_key": "n",
                "event_type_filter": {"in_values": ["call"]},
                "property_filters": [{"name": "n", "exists": True}],
                "group_keys": [["region"]],
            },
            {"name": "Archived", "event_type_filter": {"in_values": ["call"]}, "archived": True},
        ],
        "events": [
            make_event(
                "s-1", clock, customer_id="seed-alias", event_type="call", properties={"n": 2}
            )
        ],
    }
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    state = load_seed_file(path, clock=clock)
    with (
        SimulatorServer(state, token=TOKEN) as sim,
        httpx.Client(base_url=sim.base_url, headers=AUTH) as http,
    ):
        [item] = search(http, "s-1")
    assert item["matched_customer"] == {"id": "c-1", "name": "Seeded"}
    [metric] = item["matched_billable_metrics"]
    assert metric["name"] == "Seeded calls"
    assert metric["aggregation_key"] == "n"
    assert metric["group_keys"] == [["region"]]
    assert metric["property_filters"] == [{"name": "n", "exists": True}]


def test_unknown_route_and_bad_search_body(http: httpx.Client) -> None:
    assert http.post("/v1/nope", json=[]).status_code == 404
    bad = http.post("/v1/events/search", json={"transaction_ids": ["a"]})
    assert bad.status_code == 400
    assert "transactionIds" in bad.json()["message"]
    assert http.post("/v1/events/search", content=b"{nope").status_code == 400


def test_unusable_content_length_is_a_400_not_a_crashed_handler() -> None:
    with running_simulator(FakeClock()) as server:
        host, port = server.base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(
                b"POST /v1/events/search HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                b"Content-Length: abc\r\n\r\n{}"
            )
            answer = conn.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b"Content-Length" in answer


def test_seed_filters_on_booleans_and_numbers_match_json_values(
    tmp_path: Path, clock: FakeClock
) -> None:
    seed = {
        "customers": [{"id": "c-1", "name": "Seeded"}],
        "billable_metrics": [
            {
                "name": "Billable calls",
                "event_type_filter": {"in_values": ["call"]},
                "property_filters": [
                    {"name": "billable", "in_values": [True]},
                    {"name": "tier", "not_in_values": [0]},
                ],
            }
        ],
        "events": [
            make_event(txn, clock, customer_id="c-1", event_type="call", properties=props)
            for txn, props in (
                ("b-yes", {"billable": True, "tier": 2}),
                ("b-no", {"billable": False, "tier": 2}),
                ("b-free", {"billable": True, "tier": 0}),
            )
        ],
    }
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    state = load_seed_file(path, clock=clock)
    matched = {
        item["transaction_id"]: item["matched_billable_metrics"]
        for item in state.search(["b-yes", "b-no", "b-free"])
    }
    assert [m["name"] for m in matched["b-yes"]] == ["Billable calls"]
    assert matched["b-no"] == []
    assert matched["b-free"] == []


def test_metric_renders_custom_fields_sql_and_deprecated_mirrors(clock: FakeClock) -> None:
    state = SimulatorState(clock=clock)
    customer = state.add_customer("Acme", ["acme"])
    state.add_metric(
        "Tokens",
        event_type_in=["tokens"],
        aggregation_type="SUM",
        aggregation_key="count",
        group_keys=[["model", "region"], ["model"]],
        custom_fields={"team": "ml"},
        created_at=clock.now() - timedelta(days=1),
    )
    state.add_metric(
        "Weighted",
        event_type_in=["tokens"],
        aggregation_type="custom_sql",
        sql="SELECT sum(count) FROM events",
        created_at=clock.now() - timedelta(days=1),
    )
    state.ingest([make_event("cf-1", clock, customer_id=customer.id, event_type="tokens")])
    [item] = state.search(["cf-1"])
    metrics = {m["name"]: m for m in item["matched_billable_metrics"]}
    assert metrics["Tokens"]["custom_fields"] == {"team": "ml"}
    assert metrics["Tokens"]["aggregate"] == "sum"
    assert metrics["Tokens"]["aggregate_keys"] == ["count"]
    assert metrics["Tokens"]["group_by"] == ["model", "region"]
    assert "sql" not in metrics["Tokens"]
    assert metrics["Weighted"]["sql"] == "SELECT sum(count) FROM events"
    assert metrics["Weighted"]["custom_fields"] == {}
    with pytest.raises(ValueError, match="sql"):
        state.add_metric("No SQL", aggregation_type="custom_sql")


def _readme_seed() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### The simulator with your own customers", 1)[1]
    return section.split("```json\n", 1)[1].split("```", 1)[0]


def test_the_readme_seed_example_loads_and_matches_the_users_own_ids(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "seed.json"
    path.write_text(_readme_seed(), encoding="utf-8")
    state = load_seed_file(path, clock=clock)
    events = [
        make_event(
            "own-1",
            clock,
            customer_id="cust_1001",
            event_type="request",
            properties={"route": "/v1/things"},
        ),
        make_event(
            "own-2",
            clock,
            customer_id="cust_1002",
            event_type="compute",
            properties={"seconds": 12},
        ),
        make_event(
            "own-3",
            clock,
            customer_id="cust_9999",
            event_type="request",
            properties={"route": "/v1/things"},
        ),
    ]
    with (
        SimulatorServer(state, token=TOKEN) as sim,
        httpx.Client(base_url=sim.base_url, headers=AUTH) as http,
    ):
        assert ingest(http, events).status_code == 200
        found = {item["transaction_id"]: item for item in search(http, "own-1", "own-2", "own-3")}
    assert found["own-1"]["matched_customer"]["name"] == "Example Co"
    assert [m["name"] for m in found["own-1"]["matched_billable_metrics"]] == ["Requests"]
    assert found["own-2"]["matched_customer"] == {
        "id": "7d1c0b9a-2e3f-4a5b-8c6d-0e1f2a3b4c5d",
        "name": "Other Inc",
    }
    assert [m["name"] for m in found["own-2"]["matched_billable_metrics"]] == ["Compute seconds"]
    assert found["own-3"].get("matched_customer") is None


def test_simulator_help_names_what_it_serves_without_a_seed(tmp_path: Path) -> None:
    result = leakwatch("simulator", "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for _id, name, aliases in DEMO_CUSTOMERS:
        assert name in text
        for alias in aliases:
            assert alias in text
    assert "unmatched_customer" in text
    assert "--seed" in text
