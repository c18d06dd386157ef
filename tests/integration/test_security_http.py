"""The HTTP servers (simulator, daemon health) hold up against hostile clients.

Raw sockets on loopback: a body is never read before the request is authenticated,
an answer given without reading the body hangs up (so the body is never parsed as a
request of its own), half-sent requests time out, and connections beyond the thread
cap are shed.
"""

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from leakwatch.clock import SystemClock
from leakwatch.serving import BoundedHTTPServer, serve_in_thread, stop_serving
from leakwatch.simulator import SimulatorServer, build_demo_state
from leakwatch.simulator.server import MAX_BODY_BYTES

TOKEN = "http-test-token-123456"


@pytest.fixture
def simulator() -> Iterator[SimulatorServer]:
    with SimulatorServer(build_demo_state(clock=SystemClock()), token=TOKEN) as server:
        yield server


def _exchange(port: int, raw: bytes, *, timeout_s: float = 5.0) -> bytes:
    """Send `raw`, then read until the server hangs up; raises TimeoutError if it never does."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.sendall(raw)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def _port(server: SimulatorServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1])


def test_an_unauthenticated_body_is_never_read(simulator: SimulatorServer) -> None:
    # Announces a large body and sends none: the answer must not wait for it.
    answer = _exchange(
        _port(simulator),
        b"POST /v1/events/search HTTP/1.1\r\nHost: sim\r\nAuthorization: Bearer wrong\r\n"
        b"Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 401")


def test_a_413_hangs_up_so_the_body_is_not_parsed_as_a_request(
    simulator: SimulatorServer,
) -> None:
    smuggled = b"POST /v1/nowhere HTTP/1.1\r\nHost: sim\r\nContent-Length: 0\r\n\r\n"
    answer = _exchange(
        _port(simulator),
        b"POST /v1/events/search HTTP/1.1\r\nHost: sim\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        + smuggled,
    )
    assert answer.startswith(b"HTTP/1.1 413")
    assert answer.count(b"HTTP/1.1 ") == 1, answer


class _Hello(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def bounded() -> Iterator[BoundedHTTPServer]:
    server = BoundedHTTPServer(("127.0.0.1", 0), _Hello, max_threads=1, request_timeout_s=0.5)
    thread = serve_in_thread(server, name="test-bounded", poll_interval_s=0.05)
    yield server
    stop_serving(server, thread)


def test_a_half_sent_request_is_dropped_after_the_socket_timeout(
    bounded: BoundedHTTPServer,
) -> None:
    # Never finishes its headers; the server hangs up rather than waiting for ever.
    assert _exchange(bounded.server_address[1], b"GET / HTTP/1.1\r\nHost: x\r\n") == b""


def test_connections_beyond_the_thread_cap_are_shed(bounded: BoundedHTTPServer) -> None:
    port = bounded.server_address[1]
    hog = socket.create_connection(("127.0.0.1", port), timeout=5)
    hog.sendall(b"GET / HTTP/1.1\r\n")  # holds the only thread until its timeout
    pause = threading.Event()
    pause.wait(0.2)  # let the server accept it and give it the thread
    try:
        assert _exchange(port, b"GET / HTTP/1.0\r\n\r\n") == b""
    finally:
        hog.close()
    # Once the hog is gone (closed or timed out), the thread serves again.
    for _ in range(50):
        answer = _exchange(port, b"GET / HTTP/1.0\r\n\r\n")
        if answer:
            break
        pause.wait(0.05)
    assert answer.startswith(b"HTTP/1.0 200")
