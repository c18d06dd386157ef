"""A fake Slack Web API and incoming webhook on loopback, for slack-sdk's `base_url`.

Stateful enough to test delivery: channels with ids, messages with ts / thread_ts /
metadata, `chat.update` edits, history and thread reads that honour
`include_all_metadata`, and faults injected per request (429 with Retry-After, 500,
a hang longer than the client's timeout, `ok: false` errors, and "post, then fail the
answer" — the message lands but the caller never hears so).
"""

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

WEBHOOK_PATH = "/services/T000/B000/secretwebhookpath"


@dataclass
class FakeMessage:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    metadata: dict[str, Any] | None = None
    edits: int = 0

    @property
    def marker(self) -> str | None:
        if not self.metadata:
            return None
        return (self.metadata.get("event_payload") or {}).get("marker")


@dataclass
class Fault:
    """One injected failure. `kind`: 429, 500, timeout, error, post_then_500, hold."""

    kind: str
    methods: frozenset[str] | None = None
    retry_after_s: int = 0
    error: str = "internal_error"


@dataclass
class FakeSlackState:
    token: str = "xoxb-test-token"
    channels: dict[str, str] = field(default_factory=lambda: {"C0ALERTS": "billing-alerts"})
    messages: list[FakeMessage] = field(default_factory=list)
    webhook_messages: list[dict[str, Any]] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    down: bool = False
    requests: list[str] = field(default_factory=list)
    # Every POST body as received (path, parameters): what leakwatch sent, field by field.
    payloads: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    hang_s: float = 1.5
    _ts_counter: int = 0
    # Released by the test to let a held request answer (see `hold`).
    hold_reached: threading.Event = field(default_factory=threading.Event)
    hold_release: threading.Event = field(default_factory=threading.Event)

    now_s: Callable[[], float] = time.time

    def next_ts(self) -> str:
        # Slack's ts is its clock in seconds with microseconds, unique per channel.
        self._ts_counter += 1
        return f"{int(self.now_s()):d}.{self._ts_counter:06d}"


class FakeSlack:
    """Run the fake on 127.0.0.1 on an ephemeral port; use as a context manager."""

    def __init__(self, now_s: Callable[[], float] | None = None) -> None:
        self.state = FakeSlackState()
        if now_s is not None:
            self.state.now_s = now_s
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> "FakeSlack":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.hold_release.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    def inject(
        self,
        kind: str,
        *,
        times: int = 1,
        methods: set[str] | None = None,
        retry_after_s: int = 0,
        error: str = "internal_error",
    ) -> None:
        with self.lock:
            for _ in range(times):
                self.state.faults.append(
                    Fault(kind, frozenset(methods) if methods else None, retry_after_s, error)
                )

    def set_down(self, down: bool) -> None:
        with self.lock:
            self.state.down = down

    def roots(self) -> list[FakeMessage]:
        with self.lock:
            return [m for m in self.state.messages if m.thread_ts is None]

    def replies(self, root_ts: str) -> list[FakeMessage]:
        with self.lock:
            return [m for m in self.state.messages if m.thread_ts == root_ts]

    def markers(self) -> list[str | None]:
        with self.lock:
            return [m.marker for m in self.state.messages]


def _make_handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
            self._dispatch(parsed.path, params)

        def do_POST(self) -> None:
            parsed = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode("utf-8") if length else ""
            content_type = self.headers.get("Content-Type") or ""
            params: dict[str, Any]
            if "json" in content_type:
                params = json.loads(raw) if raw else {}
            else:
                params = {k: v[-1] for k, v in parse_qs(raw).items()}
            params.update({k: v[-1] for k, v in parse_qs(parsed.query).items()})
            with fake.lock:
                fake.state.payloads.append((parsed.path, dict(params)))
            self._dispatch(parsed.path, params)

        def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type", "text/plain" if isinstance(body, str) else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _take_fault(self, method: str) -> Fault | None:
            with fake.lock:
                state = fake.state
                state.requests.append(method)
                if state.down:
                    return Fault("500")
                if state.faults and (
                    state.faults[0].methods is None or method in state.faults[0].methods
                ):
                    return state.faults.popleft()
            return None

        def _dispatch(self, path: str, params: dict[str, Any]) -> None:
            if path == WEBHOOK_PATH:
                self._webhook(params)
                return
            if not path.startswith("/api/"):
                self._reply(404, "not found")
                return
            method = path.removeprefix("/api/")
            fault = self._take_fault(method)
            if fault is not None and fault.kind not in {"post_then_500", "hold"}:
                self._fail(fault)
                return
            if self.headers.get("Authorization") != f"Bearer {fake.state.token}":
                self._reply(200, {"ok": False, "error": "invalid_auth"})
                return
            handler = {
                "chat.postMessage": self._post,
                "chat.update": self._update,
                "conversations.history": self._history,
                "conversations.replies": self._replies,
                "conversations.list": self._list,
            }.get(method)
            if handler is None:
                self._reply(200, {"ok": False, "error": "unknown_method"})
                return
            status, body = handler(params)
            if fault is not None and fault.kind == "post_then_500":
                self._reply(500, "upstream connect error")
                return
            if fault is not None and fault.kind == "hold":
                fake.state.hold_reached.set()
                fake.state.hold_release.wait()  # released by the test, or on exit
                # The caller is gone by now (killed); answering may fail, which is fine.
            try:
                self._reply(status, body)
            except OSError:
                return

        def _fail(self, fault: Fault) -> None:
            if fault.kind == "429":
                self._reply(
                    429,
                    {"ok": False, "error": "ratelimited"},
                    {"Retry-After": str(fault.retry_after_s)},
                )
            elif fault.kind == "500":
                self._reply(500, "upstream connect error")
            elif fault.kind == "timeout":
                time.sleep(fake.state.hang_s)
                try:
                    self._reply(500, "too late")
                except OSError:
                    return
            else:
                self._reply(200, {"ok": False, "error": fault.error})

        def _channel_id(self, name_or_id: str) -> str | None:
            if name_or_id in fake.state.channels:
                return name_or_id
            wanted = name_or_id.lstrip("#")
            for cid, name in fake.state.channels.items():
                if name == wanted:
                    return cid
            return None

        def _post(self, params: dict[str, Any]) -> tuple[int, Any]:
            with fake.lock:
                channel = self._channel_id(str(params.get("channel") or ""))
                if channel is None:
                    return 200, {"ok": False, "error": "channel_not_found"}
                if not params.get("text") and not params.get("blocks"):
                    return 200, {"ok": False, "error": "no_text"}
                thread_ts = params.get("thread_ts")
                if thread_ts and not any(
                    m.ts == thread_ts and m.channel == channel for m in fake.state.messages
                ):
                    return 200, {"ok": False, "error": "thread_not_found"}
                metadata = params.get("metadata")
                if isinstance(metadata, str):
                    metadata = json.loads(metadata)
                blocks = params.get("blocks") or []
                if isinstance(blocks, str):
                    blocks = json.loads(blocks)
                if len(blocks) > 50:
                    return 200, {"ok": False, "error": "invalid_blocks"}
                message = FakeMessage(
                    channel=channel,
                    ts=fake.state.next_ts(),
                    text=str(params.get("text") or ""),
                    blocks=blocks,
                    thread_ts=thread_ts,
                    metadata=metadata,
                )
                fake.state.messages.append(message)
                return 200, {
                    "ok": True,
                    "channel": channel,
                    "ts": message.ts,
                    "message": _as_json(message, True),
                }

        def _update(self, params: dict[str, Any]) -> tuple[int, Any]:
            with fake.lock:
                channel = params.get("channel")
                if channel not in fake.state.channels:
                    return 200, {"ok": False, "error": "channel_not_found"}
                for message in fake.state.messages:
                    if message.channel == channel and message.ts == params.get("ts"):
                        message.text = str(params.get("text") or "")
                        blocks = params.get("blocks") or []
                        message.blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
                        message.edits += 1
                        return 200, {"ok": True, "channel": channel, "ts": message.ts}
                return 200, {"ok": False, "error": "message_not_found"}

        def _history(self, params: dict[str, Any]) -> tuple[int, Any]:
            with fake.lock:
                channel = params.get("channel")
                if channel not in fake.state.channels:
                    return 200, {"ok": False, "error": "channel_not_found"}
                oldest = float(params.get("oldest") or 0)
                with_meta = _truthy(params.get("include_all_metadata"))
                found = [
                    _as_json(m, with_meta)
                    for m in reversed(fake.state.messages)
                    if m.channel == channel and m.thread_ts is None and float(m.ts) > oldest
                ]
            return _page(found, params, "messages")

        def _replies(self, params: dict[str, Any]) -> tuple[int, Any]:
            with fake.lock:
                channel = params.get("channel")
                root_ts = params.get("ts")
                with_meta = _truthy(params.get("include_all_metadata"))
                thread = [
                    _as_json(m, with_meta)
                    for m in fake.state.messages
                    if m.channel == channel and (root_ts in (m.ts, m.thread_ts))
                ]
            if not thread:
                return 200, {"ok": False, "error": "thread_not_found"}
            return _page(thread, params, "messages")

        def _list(self, params: dict[str, Any]) -> tuple[int, Any]:
            with fake.lock:
                channels = [{"id": cid, "name": name} for cid, name in fake.state.channels.items()]
            return 200, {"ok": True, "channels": channels, "response_metadata": {"next_cursor": ""}}

        def _webhook(self, params: dict[str, Any]) -> None:
            fault = self._take_fault("webhook")
            if fault is not None and fault.kind not in ("post_then_500", "hold"):
                if fault.kind == "error":
                    self._reply(404, fault.error)
                    return
                self._fail(fault)
                return
            with fake.lock:
                fake.state.webhook_messages.append(params)
            if fault is not None:
                self._reply(500, "upstream connect error")
                return
            self._reply(200, "ok")

    return Handler


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _as_json(message: FakeMessage, with_metadata: bool) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
    if message.thread_ts:
        data["thread_ts"] = message.thread_ts
    if with_metadata and message.metadata:
        data["metadata"] = message.metadata
    return data


def _page(items: list[dict[str, Any]], params: dict[str, Any], key: str) -> tuple[int, Any]:
    # Small pages make the client's pagination run in tests.
    limit = min(int(params.get("limit") or 100), 3)
    start = int(params.get("cursor") or 0)
    chunk = items[start : start + limit]
    next_cursor = str(start + limit) if start + limit < len(items) else ""
    return 200, {
        "ok": True,
        key: chunk,
        "has_more": bool(next_cursor),
        "response_metadata": {"next_cursor": next_cursor},
    }
