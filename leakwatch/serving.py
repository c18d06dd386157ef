"""Run a stdlib HTTP server in a background thread, and stop it cleanly. I/O.

Shared by the daemon's health endpoint and the Metronome simulator: both serve from
a daemon thread (so a hung handler never keeps the process alive) and stop by
shutting the loop down, closing the socket and joining the thread.

`BoundedHTTPServer` keeps a client from exhausting the process: each connection's
socket times out (a client that sends half a request, or idles, is dropped after
`request_timeout_s`), and at most `max_threads` connections are served at once —
one more is closed at once rather than given a thread.
"""

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any


class BoundedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server with socket timeouts and a cap on concurrent connections."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_threads: int,
        request_timeout_s: float,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_threads)
        self.request_timeout_s = request_timeout_s
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, client = super().get_request()
        connection.settimeout(self.request_timeout_s)
        return connection, client

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            # Every thread is busy: shed this connection instead of queueing a thread.
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            self._slots.release()

    def close_connections(self) -> None:
        """Cut every open connection, kept-alive ones included: a stopped server is gone.

        Without this a client's pooled keep-alive connection would still be served by
        its handler thread after the listening socket closed.
        """
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue


def serve_in_thread(httpd: HTTPServer, *, name: str, poll_interval_s: float) -> threading.Thread:
    """Start `httpd.serve_forever` in a daemon thread; return the thread."""
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": poll_interval_s},
        name=name,
        daemon=True,
    )
    thread.start()
    return thread


def stop_serving(
    httpd: HTTPServer, thread: threading.Thread | None, *, join_timeout_s: float = 5.0
) -> None:
    """Stop the serving loop, close the listening socket and open connections, and wait."""
    httpd.shutdown()
    httpd.server_close()
    if isinstance(httpd, BoundedHTTPServer):
        httpd.close_connections()
    if thread is not None:
        thread.join(timeout=join_timeout_s)
