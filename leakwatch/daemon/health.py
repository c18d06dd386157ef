"""The daemon's HTTP endpoint: `/healthz` and `/metrics`. I/O (a small stdlib server).

Health is a pure decision (`judge_health`) over the daemon's status; the server only
renders it. A follower is healthy while it is alive: it is waiting by design. A leader
is healthy while its last successful cycle (or, before the first one, the moment it
took the lead) is no older than `stale_after` — three check intervals by default —
so a leader stuck in a hung cycle gets restarted by its orchestrator. A leader whose
last cycle found Metronome unreachable (or the token rejected) stays 200 and says
`"status": "degraded"` with the reason in `problems`: a restart cannot fix that.
"""

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from http.server import BaseHTTPRequestHandler
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from leakwatch.clock import Clock
from leakwatch.serving import BoundedHTTPServer, serve_in_thread, stop_serving

STALE_AFTER_CYCLES = 3


class Role(StrEnum):
    STARTING = "starting"
    LEADER = "leader"
    FOLLOWER = "follower"
    STOPPING = "stopping"


@dataclass(frozen=True)
class StatusSnapshot:
    """A consistent copy of the daemon's status at one moment."""

    role: Role
    started_at: datetime
    leader_since: datetime | None
    last_success_at: datetime | None
    # What the last cycle found wrong with Metronome, by condition, with its reason.
    problems: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthVerdict:
    healthy: bool
    body: dict[str, Any]

    @property
    def http_status(self) -> int:
        return 200 if self.healthy else 503


def judge_health(status: StatusSnapshot, *, now: datetime, stale_after: timedelta) -> HealthVerdict:
    """Decide /healthz from the status: who we are and how long since a cycle succeeded."""
    age = now - status.last_success_at if status.last_success_at is not None else None
    body: dict[str, Any] = {
        "alive": True,
        "role": status.role.value,
        "last_successful_cycle_age_s": round(age.total_seconds(), 3) if age is not None else None,
        "stale_after_s": stale_after.total_seconds(),
        "uptime_s": round((now - status.started_at).total_seconds(), 3),
    }
    if status.role is Role.LEADER:
        reference = status.last_success_at
        if status.leader_since is not None and (
            reference is None or status.leader_since > reference
        ):
            # A fresh leader gets a full allowance before its first cycle must succeed.
            reference = status.leader_since
        healthy = reference is not None and now - reference <= stale_after
        if not healthy:
            body["problem"] = "no successful check cycle within the allowed time"
    else:
        healthy = status.role is not Role.STOPPING
        if not healthy:
            body["problem"] = "shutting down"
    body["status"] = "ok" if healthy else "unhealthy"
    if healthy and status.role is Role.LEADER and status.problems:
        # Still 200: restarting leakwatch cannot bring Metronome back, and a liveness
        # probe would only lose its state. The Slack health alert is the page.
        body["status"] = "degraded"
        body["problems"] = dict(status.problems)
    return HealthVerdict(healthy=healthy, body=body)


class DaemonStatus:
    """The daemon's mutable status, shared by the election loop, the jobs and the server."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._role = Role.STARTING
        self._started_at = clock.now()
        self._leader_since: datetime | None = None
        self._last_success_at: datetime | None = None
        self._problems: dict[str, str] = {}

    def set_problems(self, problems: Mapping[str, str]) -> None:
        """What the last cycle found wrong with Metronome (empty: nothing)."""
        with self._lock:
            self._problems = dict(problems)

    def set_role(self, role: Role) -> None:
        with self._lock:
            if role is Role.LEADER and self._role is not Role.LEADER:
                self._leader_since = self._clock.now()
            elif role is not Role.LEADER:
                self._leader_since = None
            self._role = role

    def cycle_succeeded(self, at: datetime) -> None:
        with self._lock:
            if self._last_success_at is None or at > self._last_success_at:
                self._last_success_at = at

    def view(self) -> StatusSnapshot:
        with self._lock:
            return StatusSnapshot(
                role=self._role,
                started_at=self._started_at,
                leader_since=self._leader_since,
                last_success_at=self._last_success_at,
                problems=dict(self._problems),
            )


def parse_address(address: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 hosts may be bracketed: `[::1]:9108`)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _HealthHandler(BaseHTTPRequestHandler):
    server: "_HealthHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds would drown the log

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            verdict = self.server.endpoint.health()
            self._send(verdict.http_status, "application/json", json.dumps(verdict.body).encode())
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.endpoint.registry))
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


class _HealthHTTPServer(BoundedHTTPServer):
    def __init__(self, address: tuple[str, int], endpoint: "HealthServer") -> None:
        self.endpoint = endpoint
        # Scrapers and probes need a handful of connections; a slow one is dropped.
        super().__init__(address, _HealthHandler, max_threads=16, request_timeout_s=10.0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        structlog.get_logger().debug("health.request_failed", client=str(client_address))


class HealthServer:
    """Serve /healthz and /metrics on `address` in a background thread."""

    def __init__(
        self,
        address: str,
        *,
        status: DaemonStatus,
        registry: CollectorRegistry,
        clock: Clock,
        stale_after: timedelta,
    ) -> None:
        self.address = address
        self.status = status
        self.registry = registry
        self._clock = clock
        self._stale_after = stale_after
        self._httpd: _HealthHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("health server not started")
        return int(self._httpd.server_address[1])

    def health(self) -> HealthVerdict:
        return judge_health(
            self.status.view(), now=self._clock.now(), stale_after=self._stale_after
        )

    def start(self) -> "HealthServer":
        """Bind and serve; OSError (port taken, bad host) propagates to start-up checks."""
        self._httpd = _HealthHTTPServer(parse_address(self.address), self)
        self._thread = serve_in_thread(self._httpd, name="leakwatch-health", poll_interval_s=0.2)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        stop_serving(self._httpd, self._thread)
        self._httpd = None
        self._thread = None


__all__ = [
    "DaemonStatus",
    "HealthServer",
    "HealthVerdict",
    "Role",
    "StatusSnapshot",
    "judge_health",
    "parse_address",
]
