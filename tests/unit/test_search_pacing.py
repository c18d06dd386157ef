"""Pacing, retry and parsing decisions of the search client, on a FakeClock.

The fake Metronome here is an `httpx.MockTransport` handler with a token bucket on
the same FakeClock: every sleep advances fake time, so pacing is checked exactly and
instantly (no timing assertions on wall time).
"""

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from leakwatch.clock import FakeClock
from leakwatch.core.durations import retry_after_s
from leakwatch.metronome import (
    AdaptiveRate,
    MalformedResponse,
    SearchClient,
    TokenRejected,
    parse_search_body,
)
from leakwatch.metronome.client import MAX_RETRY_AFTER_S
from leakwatch.simulator import TokenBucket

TOKEN = "unit-token"


def item(txn: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"id-{txn}",
        "customer_id": "acme",
        "event_type": "api_request",
        "timestamp": "2026-11-02T11:00:00Z",
        "transaction_id": txn,
    }
    body.update(overrides)
    return body


@dataclass
class FakeMetronome:
    """A stateful stand-in for `/v1/events/search`: a rate limit and scripted answers."""

    clock: FakeClock
    rate_rps: float | None = None
    burst: float = 1.0
    known: set[str] = field(default_factory=set)
    scripted: list[Callable[[list[str]], httpx.Response]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bucket: TokenBucket | None = None

    def __post_init__(self) -> None:
        if self.rate_rps is not None:
            self.bucket = TokenBucket(self.rate_rps, self.burst, self.clock)

    def handle(self, request: httpx.Request) -> httpx.Response:
        response = self._answer(request)
        self.statuses.append(response.status_code)
        return response

    def _answer(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"message": "bad token"})
        if self.bucket is not None:
            wait_s = self.bucket.take()
            if wait_s > 0:
                return httpx.Response(
                    429, headers={"retry-after-ms": str(wait_s * 1000)}, json={"message": "slow"}
                )
        ids = json.loads(request.content)["transactionIds"]
        if self.scripted:
            return self.scripted.pop(0)(ids)
        return httpx.Response(200, json=[item(t) for t in ids if t in self.known])


def client_for(
    fake: FakeMetronome, *, requests_per_second: float, token: str = TOKEN, **kwargs: Any
) -> SearchClient:
    return SearchClient(
        base_url="https://metronome.test",
        token=token,
        clock=fake.clock,
        requests_per_second=requests_per_second,
        http=httpx.Client(transport=httpx.MockTransport(fake.handle)),
        rng=random.Random(1),
        **kwargs,
    )


# -- AdaptiveRate ------------------------------------------------------------------------


def test_paces_calls_at_the_configured_rate() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(5, clock)
    for _ in range(11):
        assert rate.acquire()
    assert clock.slept_s == pytest.approx(2.0)  # ten intervals of 0.2 s; the first is free


def test_scheduled_slots_absorb_time_spent_between_calls() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(10, clock)
    rate.acquire()
    clock.advance(0.06)  # the request itself took time
    rate.acquire()
    assert clock.slept_s == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("events", "expected_rps"),
    [
        (["429"], 6.0),  # multiplicative decrease
        (["429", "429"], 3.6),
        (["429"] * 30, 0.5),  # floor: max_rps / 20
        # While 429s are recent (6 s): a gentle probe per successful call.
        (["429", "ok"], 6.0 * 1.003),
        (["429"] + ["ok"] * 10, 6.0 * 1.003**10),
        (["429", "wait:5.9"], 6.0),
        # Quiet since (6 s after the Retry-After window): each second adds max / 3 s.
        (["429", "wait:6", "ok", "wait:0.2", "ok"], 6.0 + 10 / 3 * 0.2),
        (["429", "wait:6.9"], 6.0 + 10 / 3 * 0.9),
        (["429", "wait:6", "ok"] + ["wait:0.1", "ok"] * 30, 10.0),  # never above the budget
        (["429", "wait:3600"], 10.0),  # the configured rate, once the windows have passed
        (["ok", "ok"], 10.0),
    ],
)
def test_decrease_on_429_and_recovery_per_success(events: list[str], expected_rps: float) -> None:
    clock = FakeClock()
    rate = AdaptiveRate(10, clock)
    for event in events:
        if event == "429":
            rate.on_rate_limited(0.0)
        elif event == "ok":
            rate.on_success()
        else:
            clock.advance(float(event.split(":")[1]))
    assert rate.rate_rps == pytest.approx(expected_rps)


def test_after_429s_stop_the_budget_is_back_within_seconds_not_hundreds_of_calls() -> None:
    """A burst of 429s (a competitor took the budget), then none: like TCP, back fast."""
    clock = FakeClock()
    rate = AdaptiveRate(1, clock)
    for _ in range(10):
        rate.on_rate_limited(1.0)
    assert rate.rate_rps == pytest.approx(1 / 20)  # the floor
    stopped = clock.monotonic()
    calls = 0
    while rate.rate_rps < 0.9 and calls < 1_000:
        rate.acquire()
        rate.on_success()
        calls += 1
    # Retry-After (1 s) + the quiet spell (6 s) + additive increase at 1/3 of the budget/s.
    assert clock.monotonic() - stopped <= 10
    assert calls <= 15  # was ~800 at +0.3% a call


def test_rate_limited_blocks_until_retry_after() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(100, clock)
    rate.acquire()
    rate.on_rate_limited(2.5)
    rate.acquire()
    assert clock.slept_s == pytest.approx(2.5)


def test_acquire_refuses_a_slot_past_the_deadline_without_sleeping() -> None:
    clock = FakeClock()
    rate = AdaptiveRate(1, clock)
    assert rate.acquire(deadline_monotonic=clock.monotonic())
    assert not rate.acquire(deadline_monotonic=clock.monotonic() + 0.5)
    assert clock.slept_s == 0


@pytest.mark.parametrize(
    ("headers", "expected_s"),
    [
        ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "3600"}, 60.0),  # capped, like the official SDK
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "-5"}, None),
        ({"retry-after-ms": "nan", "retry-after": "1"}, 1.0),
        ({}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], expected_s: float | None) -> None:
    assert retry_after_s(httpx.Headers(headers), MAX_RETRY_AFTER_S) == expected_s


def test_retry_after_reads_slack_sdk_headers_too() -> None:
    # slack-sdk hands over a plain dict, with the server's casing and list values.
    assert retry_after_s({"Retry-After": ["3"]}) == 3.0
    assert retry_after_s({"retry-after": "0"}) == 0.0
    assert retry_after_s({"Retry-After": []}) is None


# -- parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"data": []}',
        b"null",
        b'["a string"]',
        json.dumps([{k: v for k, v in item("t").items() if k != "transaction_id"}]).encode(),
        json.dumps([item("t", timestamp=None)]).encode(),
        json.dumps([item("t", id="")]).encode(),
        json.dumps([item("t", is_duplicate="yes")]).encode(),
        json.dumps([item("t", properties=[1])]).encode(),
        json.dumps([item("t", matched_customer="acme")]).encode(),
        json.dumps([item("t", matched_billable_metrics={"id": "m"})]).encode(),
        json.dumps([item("t", matched_billable_metrics=[{"id": "m"}])]).encode(),
    ],
)
def test_malformed_answers_raise(body: bytes) -> None:
    with pytest.raises(MalformedResponse):
        parse_search_body(body)


def test_parses_both_metric_keys_and_optional_fields() -> None:
    metrics = [{"id": "m1", "name": "API requests", "aggregation_type": "COUNT"}]
    body = [
        item(
            "a",
            matched_billable_metrics=metrics,
            matched_customer={"id": "c", "name": "Acme"},
            is_duplicate=False,
            processed_at="2026-11-02T11:00:06Z",
            properties={"n": "5"},
        ),
        item("b", billable_metrics=metrics, timestamp="garbled"),
        item("c", is_duplicate=True, matched_customer=None),
    ]
    a, b, c = parse_search_body(json.dumps(body).encode())
    assert [m.name for m in a.matched_billable_metrics] == ["API requests"]
    assert a.matched_customer is not None
    assert a.matched_customer.name == "Acme"
    assert a.processed_at is not None
    assert a.properties == {"n": "5"}
    assert [m.id for m in b.matched_billable_metrics] == ["m1"]
    assert b.timestamp is None
    assert b.timestamp_raw == "garbled"
    assert c.is_duplicate
    assert c.matched_customer is None
    assert c.matched_billable_metrics == ()


# -- the client on a fake clock ----------------------------------------------------------


def test_client_at_the_server_rate_never_hits_429() -> None:
    clock = FakeClock()
    fake = FakeMetronome(clock, rate_rps=4, burst=1)
    ids = [f"t-{i}" for i in range(5000)]
    with client_for(fake, requests_per_second=4) as client:
        started = clock.monotonic()
        result = client.search(ids)
    assert result.complete
    assert fake.statuses == [200] * 50
    assert clock.monotonic() - started == pytest.approx(49 / 4)


def test_client_at_twice_the_server_rate_adapts() -> None:
    clock = FakeClock()
    fake = FakeMetronome(clock, rate_rps=4, burst=2)
    ids = [f"t-{i}" for i in range(40_000)]
    with client_for(fake, requests_per_second=8) as client:
        started = clock.monotonic()
        result = client.search(ids)
        elapsed_s = clock.monotonic() - started
    assert result.complete
    share_429 = fake.statuses.count(429) / len(fake.statuses)
    assert share_429 <= 0.05
    assert 400 / elapsed_s >= 0.8 * 4  # ≥ 80% of the server's rate in fake time


def test_ignores_items_for_ids_not_asked() -> None:
    fake = FakeMetronome(FakeClock())
    fake.scripted.append(lambda ids: httpx.Response(200, json=[item("a"), item("zzz")]))
    with client_for(fake, requests_per_second=10) as client:
        result = client.search(["a", "b"])
    assert set(result.answered) == {"a", "b"}
    assert [i.id for i in result.items_for("a")] == ["id-a"]
    assert result.items_for("b") == ()


def test_a_non_array_body_is_an_error_never_absent() -> None:
    fake = FakeMetronome(FakeClock())
    fake.scripted.extend([lambda ids: httpx.Response(200, json={"items": []})] * 3)
    with client_for(fake, requests_per_second=10, max_retries=2) as client:
        result = client.search(["a", "b"])
    assert result.answered == {}
    assert set(result.errors) == {"a", "b"}
    assert "not an array" in result.errors["a"]
    assert client.stats.malformed == 3


def test_429_without_retry_after_backs_off_and_succeeds() -> None:
    fake = FakeMetronome(FakeClock(), known={"a"})
    fake.scripted.append(lambda ids: httpx.Response(429))
    with client_for(fake, requests_per_second=10) as client:
        result = client.search(["a"])
    assert len(result.items_for("a")) == 1
    assert fake.statuses == [429, 200]


def test_honours_whole_second_retry_after() -> None:
    clock = FakeClock()
    fake = FakeMetronome(clock, known={"a"})
    fake.scripted.append(lambda ids: httpx.Response(429, headers={"Retry-After": "3"}))
    with client_for(fake, requests_per_second=1000) as client:
        client.search(["a"])
    assert clock.slept_s >= 3


def test_503_with_retry_after_waits_at_least_that_long() -> None:
    clock = FakeClock()
    fake = FakeMetronome(clock, known={"a"})
    fake.scripted.append(lambda ids: httpx.Response(503, headers={"Retry-After": "5"}))
    with client_for(fake, requests_per_second=1000) as client:
        assert len(client.search(["a"]).items_for("a")) == 1
    assert clock.slept_s >= 5


@pytest.mark.parametrize(
    ("status", "retried"),
    [(500, True), (502, True), (503, True), (408, True), (400, False), (404, False)],
)
def test_which_statuses_are_retried(status: int, retried: bool) -> None:
    fake = FakeMetronome(FakeClock(), known={"a"})
    fake.scripted.append(lambda ids: httpx.Response(status, json={"message": "no"}))
    with client_for(fake, requests_per_second=1000) as client:
        result = client.search(["a"])
    assert ("a" in result.answered) is retried
    assert ("a" in result.errors) is not retried
    assert len(fake.statuses) == (2 if retried else 1)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_raise_without_retry(status: int) -> None:
    fake = FakeMetronome(FakeClock())
    fake.scripted.append(lambda ids: httpx.Response(status, json={"message": "denied"}))
    with client_for(fake, requests_per_second=10) as client, pytest.raises(TokenRejected):
        client.search(["a"])
    assert fake.statuses == [status]


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="token"):
        SearchClient(base_url="http://x", token="", clock=FakeClock(), requests_per_second=1)
    with pytest.raises(ValueError, match="max_ids_per_request"):
        SearchClient(
            base_url="http://x",
            token="t",
            clock=FakeClock(),
            requests_per_second=1,
            max_ids_per_request=0,
        )
    with pytest.raises(ValueError, match="requests_per_second"):
        SearchClient(base_url="http://x", token="t", clock=FakeClock(), requests_per_second=0)


def test_rate_limited_past_every_wait_leaves_the_ids_due_never_error() -> None:
    """A 429 says nothing about the ids: they are not looked up (stay due), not `error`."""
    fake = FakeMetronome(FakeClock(), known={"a", "c"})
    fake.scripted.extend([lambda ids: httpx.Response(429, headers={"Retry-After": "1"})] * 3)
    with client_for(fake, requests_per_second=10, max_rate_limited_waits=2) as client:
        result = client.search(["a", "b", "c"])
    assert result.errors == {}
    assert set(result.not_looked_up) == {"a", "b", "c"}
    assert client.stats.failed_requests == 0
    assert fake.statuses == [429, 429, 429]


def test_a_batch_still_failing_at_the_deadline_counts_as_abandoned_not_silent() -> None:
    """Retries cut off by the cycle's deadline: not looked up (stays due), but counted,
    so the health check sees a cycle that could not search at all as a failed one."""
    clock = FakeClock()
    fake = FakeMetronome(clock)
    fake.scripted.extend([lambda ids: httpx.Response(503)] * 20)
    with client_for(fake, requests_per_second=10) as client:
        result = client.search(["a", "b"], deadline_monotonic=clock.monotonic() + 1.0)
    assert result.errors == {}
    assert set(result.not_looked_up) == {"a", "b"}
    assert client.stats.batches_abandoned == 1
    assert client.stats.failed_attempts >= 1
    assert "HTTP 503" in client.stats.last_failure
