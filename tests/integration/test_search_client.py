"""The search client against the real simulator over loopback HTTP.

Client, simulator state and the simulator's rate limiter share one FakeClock, so
Retry-After waits and retry backoffs are instant while the HTTP is real. Only the
timeout test needs a server that really sleeps.
"""

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from structlog.testing import capture_logs

from leakwatch.clock import FakeClock, SystemClock
from leakwatch.metronome import IngestRejected, SearchClient, TokenRejected
from leakwatch.simulator import EventFate, FaultKind, SimulatorServer
from tests.fakes.simulator_fixtures import TOKEN, make_event, running_simulator


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[SimulatorServer]:
    with running_simulator(clock) as server:
        yield server


@dataclass
class RecordingObserver:
    """Keep what the client reported, as a metrics exporter would."""

    calls: list[str] = field(default_factory=list)
    retries: list[str] = field(default_factory=list)
    waits_s: list[float] = field(default_factory=list)
    failures: list[tuple[str, int]] = field(default_factory=list)

    def on_call(self, status: str, latency_s: float) -> None:
        assert latency_s >= 0
        self.calls.append(status)

    def on_retry(self, reason: str) -> None:
        self.retries.append(reason)

    def on_rate_limited(self, wait_s: float) -> None:
        self.waits_s.append(wait_s)

    def on_failed(self, reason: str, id_count: int) -> None:
        self.failures.append((reason, id_count))


def make_client(
    sim: SimulatorServer,
    clock: FakeClock,
    *,
    token: str = TOKEN,
    requests_per_second: float = 1_000,
    observer: RecordingObserver | None = None,
    **kwargs: object,
) -> SearchClient:
    return SearchClient(
        base_url=sim.base_url,
        token=token,
        clock=clock,
        requests_per_second=requests_per_second,
        rng=random.Random(3),
        observer=observer,
        **kwargs,  # type: ignore[arg-type]
    )


def ingest_ids(sim: SimulatorServer, clock: FakeClock, ids: list[str]) -> None:
    for start in range(0, len(ids), 100):
        sim.state.ingest([make_event(txn, clock) for txn in ids[start : start + 100]])


def test_splits_ids_into_batches_and_answers_each(sim: SimulatorServer, clock: FakeClock) -> None:
    present = [f"p-{i}" for i in range(180)]
    ingest_ids(sim, clock, present)
    absent = [f"a-{i}" for i in range(70)]
    with make_client(sim, clock, max_ids_per_request=100) as client:
        result = client.search([*present, *absent, "p-0"])  # a repeated id is asked once
    assert sim.stats["search"].requests == 3
    assert result.requests == 3
    assert result.complete
    assert set(result.answered) == set(present) | set(absent)
    assert all(len(result.items_for(t)) == 1 for t in present)
    assert all(result.items_for(t) == () for t in absent)
    assert result.items_for("p-7")[0].transaction_id == "p-7"
    assert client.stats.ids_answered == 250


def test_waits_retry_after_on_429_and_slows_down(clock: FakeClock) -> None:
    observer = RecordingObserver()
    with running_simulator(clock, search_rate_limit_rps=2, burst=1) as sim:
        ids = [f"r-{i}" for i in range(10)]
        ingest_ids(sim, clock, ids)
        with make_client(
            sim, clock, requests_per_second=10, max_ids_per_request=2, observer=observer
        ) as client:
            result = client.search(ids)
    assert result.complete
    assert all(len(result.items_for(t)) == 1 for t in ids)
    assert client.stats.rate_limited >= 1
    assert observer.waits_s and all(w > 0 for w in observer.waits_s)
    assert observer.calls.count("429") == client.stats.rate_limited
    assert client.rate.rate_rps < 10  # lowered, still recovering
    assert sim.stats["search"].ok == 5


def test_persistent_429_leaves_the_id_due_never_missing_nor_error(
    sim: SimulatorServer, clock: FakeClock
) -> None:
    sim.set_rate_limit("search", 0.001, 1)
    with make_client(sim, clock, max_rate_limited_waits=3) as client:
        first = client.search(["x"])  # takes the only token
        second = client.search(["y"])
    assert first.answered == {"x": ()}
    assert "y" not in second.answered
    assert second.errors == {}
    assert second.not_looked_up == ("y",)


def test_retries_a_burst_of_server_errors(sim: SimulatorServer, clock: FakeClock) -> None:
    ingest_ids(sim, clock, ["s-1"])
    sim.faults.script(FaultKind.SERVER_ERROR, 3)
    observer = RecordingObserver()
    with make_client(sim, clock, observer=observer) as client:
        result = client.search(["s-1"])
    assert len(result.items_for("s-1")) == 1
    assert observer.calls == ["500", "500", "500", "200"]
    assert client.stats.retries == 3
    assert clock.slept_s <= 0.5 + 1 + 2  # full jitter stays under each cap


def test_gives_up_after_bounded_retries_and_reports_errors(
    sim: SimulatorServer, clock: FakeClock
) -> None:
    sim.faults.server_error_rate = 1.0
    observer = RecordingObserver()
    with make_client(sim, clock, max_retries=2, observer=observer) as client:
        result = client.search([f"e-{i}" for i in range(150)])
    assert result.answered == {}
    assert set(result.errors) == {f"e-{i}" for i in range(150)}
    assert "HTTP 500" in result.errors["e-0"]
    assert sim.stats["search"].requests == 6  # 2 batches × (1 + 2 retries)
    assert observer.failures == [(result.errors["e-0"], 100), (result.errors["e-100"], 50)]


def test_retries_dropped_connections(sim: SimulatorServer, clock: FakeClock) -> None:
    ingest_ids(sim, clock, ["d-1"])
    sim.faults.script(FaultKind.DROP_CONNECTION, 2)
    with make_client(sim, clock) as client:
        result = client.search(["d-1"])
    assert len(result.items_for("d-1")) == 1
    assert client.stats.connection_errors == 2


@pytest.mark.parametrize(
    "kind", [FaultKind.MALFORMED_JSON, FaultKind.WRONG_SHAPE, FaultKind.MISSING_FIELD]
)
def test_retries_malformed_bodies(sim: SimulatorServer, clock: FakeClock, kind: FaultKind) -> None:
    ingest_ids(sim, clock, ["m-1"])
    sim.faults.script(kind)
    with make_client(sim, clock) as client:
        result = client.search(["m-1"])
    assert len(result.items_for("m-1")) == 1
    assert client.stats.malformed == 1


def test_persistently_malformed_answers_are_errors(sim: SimulatorServer, clock: FakeClock) -> None:
    ingest_ids(sim, clock, ["m-2"])
    sim.faults.malformed_rate = 1.0
    with make_client(sim, clock, max_retries=1) as client:
        result = client.search(["m-2", "unknown"])
    assert result.answered == {}
    assert set(result.errors) == {"m-2", "unknown"}
    assert "malformed" in result.errors["unknown"]


def test_retries_timeouts() -> None:
    real = SystemClock()
    client_clock = FakeClock()
    with running_simulator(real) as sim:
        sim.faults.slow_delay_s = 0.5
        sim.faults.script(FaultKind.SLOW)
        sim.state.ingest([make_event("slow-1", real)])
        with make_client(sim, client_clock, timeout_s=0.1) as client:
            result = client.search(["slow-1"])
    assert len(result.items_for("slow-1")) == 1
    assert client.stats.timeouts == 1
    assert client.stats.retries == 1


@pytest.mark.parametrize("token", ["wrong-token", "x"])
def test_rejected_token_raises_at_once(sim: SimulatorServer, clock: FakeClock, token: str) -> None:
    with make_client(sim, clock, token=token) as client, pytest.raises(TokenRejected) as caught:
        client.search([f"t-{i}" for i in range(300)])
    assert caught.value.status_code == 401
    assert sim.stats["search"].requests == 1  # no retry storm
    assert token not in str(caught.value)
    assert "token" in str(caught.value)


def test_token_never_in_repr_logs_or_errors(sim: SimulatorServer, clock: FakeClock) -> None:
    sim.faults.script(FaultKind.SERVER_ERROR)
    sim.faults.script(FaultKind.DROP_CONNECTION)
    sim.faults.script(FaultKind.WRONG_SHAPE)
    with (
        capture_logs() as logs,
        make_client(sim, clock, max_retries=1) as client,
        make_client(sim, clock, token="another-secret-token") as rejected,
    ):
        result = client.search(["a"])
        client.search(["b"])
        with pytest.raises(TokenRejected) as caught:
            rejected.search(["c"])
    events = {entry["event"] for entry in logs}
    assert {"search.call", "search.retry", "search.failed"} <= events
    everything = " ".join(
        [repr(client), str(client.stats), repr(result), str(caught.value), repr(logs)]
    )
    assert TOKEN not in everything
    assert "another-secret-token" not in everything
    assert "redacted" in repr(client)


def test_deadline_leaves_remaining_ids_not_looked_up(
    sim: SimulatorServer, clock: FakeClock
) -> None:
    ids = [f"dl-{i}" for i in range(500)]
    with make_client(sim, clock, requests_per_second=2) as client:
        result = client.search(ids, deadline_monotonic=clock.monotonic() + 1.2)
    # Slots at 0, 0.5 and 1.0 s fit the deadline; the fourth would not.
    assert len(result.answered) == 300
    assert result.not_looked_up == tuple(ids[300:])
    assert result.errors == {}
    assert sim.stats["search"].requests == 3


def test_request_budget_is_spent_exactly(sim: SimulatorServer, clock: FakeClock) -> None:
    sim.faults.script(FaultKind.SERVER_ERROR)
    ids = [f"b-{i}" for i in range(500)]
    with make_client(sim, clock) as client:
        result = client.search(ids, max_requests=3)
    assert sim.stats["search"].requests == 3  # one retry + two batches
    assert result.requests == 3
    assert len(result.answered) == 200
    assert result.not_looked_up == tuple(ids[200:])


def test_silent_drop_is_answered_as_absent(sim: SimulatorServer, clock: FakeClock) -> None:
    sim.faults.silent_drop_ids.add("leak")
    with make_client(sim, clock) as client:
        client.ingest([make_event("leak", clock), make_event("fine", clock)])
        result = client.search(["leak", "fine"])
    assert result.items_for("leak") == ()
    assert len(result.items_for("fine")) == 1
    assert sim.state.fate("leak") is EventFate.DROPPED


def test_ingest_batches_and_rejections(sim: SimulatorServer, clock: FakeClock) -> None:
    events = [make_event(f"i-{i}", clock) for i in range(250)]
    with make_client(sim, clock) as client:
        assert client.ingest(events) == 250
        with pytest.raises(IngestRejected, match=r"usage\[0\]\.timestamp"):
            client.ingest([{**events[0], "timestamp": "soon"}])
    assert sim.stats["ingest"].ok == 3
    assert len(sim.state.transaction_ids()) == 250


def test_uses_an_injected_http_client(sim: SimulatorServer, clock: FakeClock) -> None:
    with httpx.Client() as http:
        client = SearchClient(
            base_url=sim.base_url + "/",
            token=TOKEN,
            clock=clock,
            requests_per_second=100,
            http=http,
        )
        client.close()  # not ours to close
        assert client.search(["nothing"]).answered == {"nothing": ()}


@pytest.mark.parametrize("kind", [FaultKind.BAD_ENCODING, FaultKind.DEEP_NESTING])
def test_undecodable_answers_are_retried_then_errors_never_a_crash(
    sim: SimulatorServer, clock: FakeClock, kind: FaultKind
) -> None:
    ingest_ids(sim, clock, ["enc-1"])
    sim.faults.script(kind)
    with make_client(sim, clock) as client:
        healed = client.search(["enc-1"])
    assert len(healed.items_for("enc-1")) == 1
    assert healed.errors == {}
    with make_client(sim, clock, max_retries=1) as client:
        sim.faults.script(kind, count=2)
        failed = client.search(["enc-1", "unknown"])
    assert failed.answered == {}
    assert set(failed.errors) == {"enc-1", "unknown"}


@pytest.mark.parametrize("kind", [FaultKind.TIMEOUT, FaultKind.TRUNCATED_BODY])
def test_an_answer_that_never_comes_or_is_cut_short_is_retried_never_absent(
    sim: SimulatorServer, clock: FakeClock, kind: FaultKind
) -> None:
    ingest_ids(sim, clock, ["cut-1"])
    sim.faults.script(kind)
    with make_client(sim, clock, timeout_s=0.3) as client:
        healed = client.search(["cut-1"])
    assert len(healed.items_for("cut-1")) == 1
    with make_client(sim, clock, max_retries=1, timeout_s=0.3) as client:
        sim.faults.script(kind, count=2)
        failed = client.search(["cut-1", "unknown"])
    assert failed.answered == {}
    assert set(failed.errors) == {"cut-1", "unknown"}


def test_a_revoked_token_is_rejected_and_a_restored_one_answers(
    sim: SimulatorServer, clock: FakeClock
) -> None:
    ingest_ids(sim, clock, ["tok-1"])
    sim.set_token("rotated-token-0000")
    with make_client(sim, clock) as client, pytest.raises(TokenRejected):
        client.search(["tok-1"])
    sim.set_token(TOKEN)
    with make_client(sim, clock) as client:
        assert len(client.search(["tok-1"]).items_for("tok-1")) == 1
