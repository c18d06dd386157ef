"""Run a stdlib HTTP server in a background thread, and stop it cleanly. I/O.

Shared by the daemon's health endpoint and the Metronome simulator: both serve from
a daemon thread (so a hung handler never keeps the process alive) and stop by
shutting the loop down, closing the socket and joining the thread.
"""

import threading
from http.server import HTTPServer


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
    """Stop the serving loop, close the listening socket, and wait for the thread."""
    httpd.shutdown()
    httpd.server_close()
    if thread is not None:
        thread.join(timeout=join_timeout_s)
