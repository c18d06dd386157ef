"""The simulated Metronome over HTTP: `POST /v1/ingest`, `/v1/events/search`, `/v1/usage`.

Does I/O: a stdlib threading HTTP server (bounded threads, socket timeouts: see
`leakwatch.serving`) bound to loopback by default. Each request passes, in order:
routing → bearer auth (401) → body size (413), all before the body is read → the
endpoint's token bucket (429 with
`Retry-After` and `retry-after-ms`) → injected faults (a scripted 429, 500, an answer
held past the client's timeout, slow, dropped connection, a body cut short, malformed
body) → the state. Importable for tests (`SimulatorServer` as a context
manager on an ephemeral port) and runnable in the foreground (`serve`).
"""

import contextlib
import hmac
import json
import math
import socket
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any

from leakwatch.clock import Clock, SystemClock
from leakwatch.serving import BoundedHTTPServer, serve_in_thread, stop_serving
from leakwatch.simulator.state import (
    MALFORMED_KINDS,
    FaultKind,
    Faults,
    InvalidIngest,
    SimulatorState,
    UsageQueryRejected,
    build_demo_state,
    load_seed_file,
)

ROUTES = {"/v1/ingest": "ingest", "/v1/events/search": "search", "/v1/usage": "usage"}
MAX_BODY_BYTES = 10 * 1024 * 1024
# A refused request's body up to this size is read and dropped rather than hung up on.
MAX_DISCARD_BYTES = 64 * 1024


class TokenBucket:
    """Refill `rate_rps` tokens a second up to `burst`; thread-safe."""

    def __init__(self, rate_rps: float, burst: float, clock: Clock) -> None:
        if rate_rps <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate_rps > 0 and burst >= 1")
        self.rate_rps = rate_rps
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._updated = clock.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token; return 0 on success, else the seconds until one is available."""
        with self._lock:
            now = self._clock.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_rps)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate_rps


@dataclass
class ServerStats:
    """Per-endpoint answer counts, so tests and benchmarks can read what the server saw."""

    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    unauthorized: int = 0
    bad_request: int = 0
    faults: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def bump(self, counter: str) -> None:
        """Add one to `counter`; handler threads run concurrently."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)


class _SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; Nagle would hold the second for ~40 ms.
    disable_nagle_algorithm = True
    server: "_SimulatorHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the stdlib would write every request to stderr."""

    def do_GET(self) -> None:
        self._send_json(404, {"message": f"no such route: GET {self.path}"})

    def do_POST(self) -> None:
        sim = self.server.simulator
        path = self.path.split("?", 1)[0]
        endpoint = ROUTES.get(path)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        # Route, credentials and size are judged from the headers alone: a body is read
        # only for an authenticated request of an acceptable size. Any answer given
        # before reading it hangs up, or the unread body would be parsed as a request.
        if length < 0:
            self.close_connection = True
            self._send_json(400, {"message": "Content-Length is not a non-negative integer"})
            return
        if endpoint is None:
            self._skip_unread_body(length)
            self._send_json(404, {"message": f"no such route: POST {path}"})
            return
        stats = sim.stats[endpoint]
        stats.bump("requests")
        if not sim.token_matches(self.headers.get("Authorization", "")):
            stats.bump("unauthorized")
            self._skip_unread_body(length)
            self._send_json(401, {"message": "Unauthorized: missing or invalid bearer token"})
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_json(413, {"message": "request body too large"})
            return
        raw_body = self.rfile.read(length) if length else b""
        wait_s = sim.rate_limit_wait_s(endpoint)
        if wait_s > 0:
            stats.bump("rate_limited")
            self._send_json(
                429,
                {"message": "Too many requests"},
                headers={
                    "Retry-After": str(max(1, math.ceil(wait_s))),
                    "retry-after-ms": str(max(1, math.ceil(wait_s * 1000))),
                },
            )
            return
        fault = sim.draw_fault(endpoint)
        if fault is FaultKind.RATE_LIMITED:
            stats.bump("rate_limited")
            self._send_json(
                429,
                {"message": "Too many requests"},
                headers={"Retry-After": "1", "retry-after-ms": "1000"},
            )
            return
        if fault is FaultKind.TIMEOUT:
            stats.bump("faults")
            self._hang(sim.state.faults.hang_s)
            return
        if fault is FaultKind.SLOW:
            sim.clock.sleep(sim.state.faults.slow_delay_s)
        elif fault is FaultKind.SERVER_ERROR:
            stats.bump("faults")
            self._send_raw(500, b"Internal Server Error", "text/plain")
            return
        elif fault is FaultKind.DROP_CONNECTION:
            stats.bump("faults")
            self._drop_connection()
            return
        try:
            body = json.loads(raw_body) if raw_body else None
        except (ValueError, UnicodeDecodeError):
            stats.bump("bad_request")
            self._send_json(400, {"message": "body is not valid JSON"})
            return
        if endpoint == "ingest":
            self._ingest(body, stats, fault)
        elif endpoint == "usage":
            self._usage(body, stats, fault)
        else:
            self._search(body, stats, fault)

    def _ingest(self, body: Any, stats: ServerStats, fault: FaultKind | None) -> None:
        try:
            self.server.simulator.state.ingest(body)
        except InvalidIngest as err:
            stats.bump("bad_request")
            self._send_json(400, {"message": str(err)})
            return
        if fault in MALFORMED_KINDS:
            stats.bump("faults")
            self._send_raw(200, b"{not json", "application/json")
            return
        stats.bump("ok")
        self._send_raw(200, b"", None)

    def _search(self, body: Any, stats: ServerStats, fault: FaultKind | None) -> None:
        ids = body.get("transactionIds") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            stats.bump("bad_request")
            self._send_json(400, {"message": "transactionIds: required array of strings"})
            return
        items = self.server.simulator.state.search(ids)
        if fault is FaultKind.MALFORMED_JSON:
            stats.bump("faults")
            self._send_raw(200, b'[{"id": "truncated', "application/json")
            return
        if fault is FaultKind.WRONG_SHAPE:
            stats.bump("faults")
            self._send_json(200, {"data": items})
            return
        if fault is FaultKind.MISSING_FIELD:
            stats.bump("faults")
            broken = [{k: v for k, v in item.items() if k != "transaction_id"} for item in items]
            self._send_json(200, broken or [{"id": "x"}])
            return
        if fault is FaultKind.BAD_ENCODING:
            stats.bump("faults")
            self._send_raw(
                200, b"\x00not gzip", "application/json", headers={"Content-Encoding": "gzip"}
            )
            return
        if fault is FaultKind.DEEP_NESTING:
            stats.bump("faults")
            self._send_raw(200, b"[" * 100_000 + b"]" * 100_000, "application/json")
            return
        if fault is FaultKind.TRUNCATED_BODY:
            stats.bump("faults")
            self._send_truncated(json.dumps(items).encode("utf-8"))
            return
        stats.bump("ok")
        self._send_json(200, items)

    def _usage(self, body: Any, stats: ServerStats, fault: FaultKind | None) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        pages = query.get("next_page")
        next_page = pages[0] if pages else None
        try:
            page = self.server.simulator.state.usage(body, next_page)
        except UsageQueryRejected as err:
            stats.bump("bad_request")
            self._send_json(400, {"message": str(err)})
            return
        if fault in MALFORMED_KINDS:
            stats.bump("faults")
            self._send_raw(200, b'{"data": [{"customer_id": ', "application/json")
            return
        stats.bump("ok")
        self._send_json(200, page)

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        self._send_raw(status, payload, "application/json", headers)

    def _skip_unread_body(self, length: int) -> None:
        """Before answering without the body: drop a small one, hang up on a large one.

        A small body (up to MAX_DISCARD_BYTES) is read and thrown away, so the
        connection stays usable and closing never races the answer (a socket closed
        with unread data is reset, which can destroy the answer in flight). A larger
        one is not read: the answer says `Connection: close` and the server hangs up.
        """
        if 0 < length <= MAX_DISCARD_BYTES:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _send_raw(
        self,
        status: int,
        payload: bytes,
        content_type: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if self.close_connection:
            # Tell the client not to reuse the connection: it closes after this answer.
            self.send_header("Connection", "close")
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    def _send_truncated(self, payload: bytes) -> None:
        """Promise the whole body, send half of it, hang up: a proxy dying mid-answer."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload) + 2))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2 + 1])
        self.wfile.flush()
        self._drop_connection()

    def _hang(self, hang_s: float) -> None:
        """Answer nothing until the client gives up (closes) or `hang_s` real seconds pass.

        Real time on purpose: a client's timeout is a socket timeout, whatever clock
        the test runs on.
        """
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.settimeout(hang_s)
            self.connection.recv(1)
        self._drop_connection()

    def _drop_connection(self) -> None:
        """Close the socket without a byte of answer, as a crashing proxy would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _SimulatorHTTPServer(BoundedHTTPServer):
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: "SimulatorServer") -> None:
        self.simulator = simulator
        # Idle keep-alive connections and half-sent requests are dropped after a minute.
        super().__init__(address, _SimulatorHandler, max_threads=128, request_timeout_s=60.0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hung up (a timed-out client is a normal test scenario)."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class SimulatorServer:
    """Serve a `SimulatorState` over HTTP in a background thread.

    `with SimulatorServer(state, token="t") as sim: sim.base_url` starts on an
    ephemeral loopback port and stops cleanly on exit. Rate limits are per endpoint
    (`search`, `ingest`); None means unlimited. The bucket reads `clock` (real time by
    default, even when the state runs on a FakeClock). Faults live in `state.faults`.
    """

    def __init__(
        self,
        state: SimulatorState,
        *,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        search_rate_limit_rps: float | None = None,
        ingest_rate_limit_rps: float | None = None,
        usage_rate_limit_rps: float | None = None,
        burst: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not token:
            raise ValueError("the simulator needs a non-empty bearer token")
        self.state = state
        self.clock: Clock = clock or SystemClock()
        self._token = token
        self._host = host
        self._port = port
        self._buckets: dict[str, TokenBucket | None] = dict.fromkeys(set(ROUTES.values()))
        self.set_rate_limit("search", search_rate_limit_rps, burst)
        self.set_rate_limit("ingest", ingest_rate_limit_rps, burst)
        self.set_rate_limit("usage", usage_rate_limit_rps, burst)
        self.stats = {endpoint: ServerStats() for endpoint in ROUTES.values()}
        self._httpd: _SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SimulatorServer(host={self._host!r}, port={self._port}, state={self.state!r})"

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    def set_rate_limit(
        self, endpoint: str, rate_rps: float | None, burst: float | None = None
    ) -> None:
        """Limit `endpoint` to `rate_rps` (burst defaults to one second's worth, at least 1)."""
        if endpoint not in self._buckets:
            raise ValueError(f"unknown endpoint {endpoint!r}")
        if rate_rps is None:
            self._buckets[endpoint] = None
            return
        self._buckets[endpoint] = TokenBucket(
            rate_rps, burst if burst is not None else max(1.0, rate_rps), self.clock
        )

    def set_token(self, token: str) -> None:
        """Accept only `token` from now on: revoking the old one mid-run, or restoring it."""
        if not token:
            raise ValueError("the simulator needs a non-empty bearer token")
        self._token = token

    def token_matches(self, authorization: str) -> bool:
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(presented.strip().encode(), self._token.encode())

    def rate_limit_wait_s(self, endpoint: str) -> float:
        bucket = self._buckets[endpoint]
        return bucket.take() if bucket is not None else 0.0

    def draw_fault(self, endpoint: str) -> FaultKind | None:
        """Pick this request's fault: scripted ones first, then by the configured rates."""
        faults = self.state.faults
        if endpoint not in faults.endpoints:
            return None
        if faults.scripted:
            try:
                return faults.scripted.pop(0)
            except IndexError:
                return None
        draw = self.state.draw()
        for rate, kind in (
            (faults.server_error_rate, FaultKind.SERVER_ERROR),
            (faults.drop_connection_rate, FaultKind.DROP_CONNECTION),
            (faults.malformed_rate, None),
            (faults.slow_rate, FaultKind.SLOW),
            (faults.timeout_rate, FaultKind.TIMEOUT),
            (faults.truncated_rate, FaultKind.TRUNCATED_BODY),
        ):
            if draw < rate:
                return kind if kind is not None else self.state.choose(MALFORMED_KINDS)
            draw -= rate
        return None

    def bind(self) -> "SimulatorServer":
        """Open the listening socket (so `base_url` knows an ephemeral port) without serving."""
        if self._httpd is None:
            self._httpd = _SimulatorHTTPServer((self._host, self._port), self)
            self._port = self._httpd.server_address[1]
        return self

    def start(self) -> "SimulatorServer":
        """Serve in a background daemon thread."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self.bind()
        assert self._httpd is not None
        self._thread = serve_in_thread(
            self._httpd, name=f"metronome-simulator:{self._port}", poll_interval_s=0.05
        )
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        stop_serving(self._httpd, self._thread)
        self._httpd = None
        self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self.bind()
        assert self._httpd is not None
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "SimulatorServer":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def faults_from_rate(fault_rate: float) -> Faults:
    """Spread one overall fault rate evenly over 500s, drops, malformed bodies and slowness."""
    if not 0 <= fault_rate <= 1:
        raise ValueError("fault_rate must be between 0 and 1")
    share = fault_rate / 4
    return Faults(
        server_error_rate=share,
        drop_connection_rate=share,
        malformed_rate=share,
        slow_rate=share,
        slow_delay_s=2.0,
        endpoints=frozenset({"search"}),
    )


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    token: str = "",
    rate_limit_rps: float | None = 5.0,
    fault_rate: float = 0.0,
    seed_path: Path | str | None = None,
) -> None:
    """Run the simulator in the foreground until Ctrl-C.

    `rate_limit_rps` limits `/v1/events/search` (ingest stays unlimited, as Metronome
    advertises 100,000 events a second). `fault_rate` applies to search only. Without
    a seed file the demo state (four customers, four metrics) is served.
    """
    import structlog

    clock = SystemClock()
    faults = faults_from_rate(fault_rate)
    if seed_path is not None:
        state = load_seed_file(seed_path, clock=clock, faults=faults)
    else:
        state = build_demo_state(clock=clock, faults=faults)
    server = SimulatorServer(
        state, token=token, host=host, port=port, search_rate_limit_rps=rate_limit_rps
    )
    server.bind()
    log = structlog.get_logger()
    log.info(
        "simulator.started",
        base_url=server.base_url,
        rate_limit_rps=rate_limit_rps,
        fault_rate=fault_rate,
        seed_path=str(seed_path) if seed_path else None,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        log.info("simulator.stopped", base_url=server.base_url)
