"""The shared fake Slack (fake_slack.py) plus the file-upload API that files_upload_v2 uses.

Adds, over the same loopback server and state: `files.getUploadURLExternal` (issues a
file id and an upload URL on this server), the upload URL itself (stores the bytes;
the length must match what was announced), and `files.completeUploadExternal` (shares
the files into a channel and optionally a thread, which must exist). Faults injected
with `inject(..., methods={"files.completeUploadExternal"})` apply as for other methods.
"""

import json
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from tests.fakes.fake_slack import FakeSlack, _make_handler

UPLOAD_PREFIX = "/upload/v1/"
FILE_METHODS = frozenset({"files.getUploadURLExternal", "files.completeUploadExternal"})


@dataclass
class FakeFile:
    id: str
    filename: str
    length: int
    data: bytes | None = None
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    completed: bool = False


class FakeSlackWithFiles(FakeSlack):
    """FakeSlack whose server also speaks the external-upload file API."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, FakeFile] = {}
        self._file_counter = 0
        # Rebuild the server around a handler that knows the file methods.
        self._server.server_close()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _files_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeSlackWithFiles":
        super().__enter__()
        return self

    def next_file_id(self) -> str:
        self._file_counter += 1
        return f"F{self._file_counter:08d}"

    def shared_files(self, thread_ts: str | None = None) -> list[FakeFile]:
        with self.lock:
            return [
                f
                for f in self.files.values()
                if f.completed and (thread_ts is None or f.thread_ts == thread_ts)
            ]


def _files_handler(fake: FakeSlackWithFiles) -> type:
    base: Any = _make_handler(fake)

    class Handler(base):  # type: ignore[misc]
        def do_POST(self) -> None:
            parsed = urlparse(self.path)
            if parsed.path.startswith(UPLOAD_PREFIX):
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                self._upload(parsed.path.removeprefix(UPLOAD_PREFIX), data)
                return
            super().do_POST()

        def _upload(self, file_id: str, data: bytes) -> None:
            with fake.lock:
                entry = fake.files.get(file_id)
                if entry is None:
                    self._reply(404, "no such upload")
                    return
                if len(data) != entry.length:
                    self._reply(400, f"length {len(data)} != announced {entry.length}")
                    return
                entry.data = data
            self._reply(200, "OK - " + str(len(data)))

        def _dispatch(self, path: str, params: dict[str, Any]) -> None:
            method = path.removeprefix("/api/")
            if method not in FILE_METHODS:
                super()._dispatch(path, params)
                return
            fault = self._take_fault(method)
            if fault is not None:
                self._fail(fault)
                return
            if self.headers.get("Authorization") != f"Bearer {fake.state.token}":
                self._reply(200, {"ok": False, "error": "invalid_auth"})
                return
            if method == "files.getUploadURLExternal":
                self._reply(200, self._get_upload_url(params))
            else:
                self._reply(200, self._complete(params))

        def _get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
            filename = params.get("filename")
            length = params.get("length")
            if not filename or length is None:
                return {"ok": False, "error": "invalid_arguments"}
            with fake.lock:
                file_id = fake.next_file_id()
                fake.files[file_id] = FakeFile(file_id, str(filename), int(length))
            return {
                "ok": True,
                "upload_url": f"http://127.0.0.1:{fake.port}{UPLOAD_PREFIX}{file_id}",
                "file_id": file_id,
            }

        def _complete(self, params: dict[str, Any]) -> dict[str, Any]:
            raw_files = params.get("files")
            items = json.loads(raw_files) if isinstance(raw_files, str) else raw_files
            if not items:
                return {"ok": False, "error": "invalid_arguments"}
            with fake.lock:
                channel = params.get("channel_id")
                if channel is not None and channel not in fake.state.channels:
                    return {"ok": False, "error": "channel_not_found"}
                thread_ts = params.get("thread_ts")
                if thread_ts and not any(
                    m.ts == thread_ts and m.channel == channel for m in fake.state.messages
                ):
                    return {"ok": False, "error": "thread_not_found"}
                done = []
                for item in items:
                    entry = fake.files.get(str(item.get("id")))
                    if entry is None or entry.data is None:
                        return {"ok": False, "error": "file_not_found"}
                    entry.title = item.get("title")
                    entry.channel = channel
                    entry.thread_ts = thread_ts or None
                    entry.completed = True
                    done.append({"id": entry.id, "name": entry.filename, "title": entry.title})
            return {"ok": True, "files": done}

    return Handler
