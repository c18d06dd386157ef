"""Random access to a log file's content: plain files by pread, `.gz` through a sidecar.

Does I/O. A `.gz` cannot be entered in the middle, and Python's zlib cannot restore an
inflater at an arbitrary bit (no inflatePrime), so an index of inflater states is out of
reach. Instead, the first read of an immutable `.gz` streams it once through isal's
inflater (~2 GB/s) and re-deflates the content in independent 32 KiB chunks (isal level
1 with a full flush per chunk, ~1.3 GB/s) into a sidecar under the state directory.
After that, any byte is one chunk inflate away (~35 µs). Measured on a 2-core box: the
build costs ~0.4× `gzip -dc`, later draws milliseconds; the sidecar takes about as much
disk as the `.gz` itself.
"""

import hashlib
import json
import os
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO, Protocol, cast

from isal import igzip, isal_zlib

from leakwatch.files import atomic_writer, make_private_dir, write_private
from leakwatch.sources.base import ProgressCallback
from leakwatch.sources.objects import LogPath, ObjectPath

GZ_CHUNK_BYTES = 1 << 15
# BFINAL=1, fixed Huffman, end-of-block: the shortest valid final deflate block.
FINAL_EMPTY_BLOCK = b"\x03\x00"
SIDECAR_FORMAT = 2
FINGERPRINT_BYTES = 1024
# A `.gz` is read no further than this many times its own size (real JSONL logs
# compress 5–30×; gzip's ceiling is ~1032×): a gzip bomb is cut short and reported
# instead of filling memory or the disk. Small files may always inflate to the floor.
MAX_INFLATE_RATIO = 200
MIN_INFLATE_LIMIT_BYTES = 64 << 20


class InflateLimitExceeded(ValueError):
    """A `.gz` inflates beyond `inflate_limit` of its size: a gzip bomb or corrupt."""


def inflate_limit(compressed_bytes: int) -> int:
    """The most content bytes a `.gz` of this size may inflate to."""
    return max(MIN_INFLATE_LIMIT_BYTES, MAX_INFLATE_RATIO * compressed_bytes)


def inflate_limit_note(path: "LogPath", compressed_bytes: int, limit: int) -> str:
    """Say that a file was cut short at the inflate limit."""
    return (
        f"{path}: inflates beyond {limit:,} bytes ({compressed_bytes:,} compressed; the limit "
        f"is {MAX_INFLATE_RATIO}× or {MIN_INFLATE_LIMIT_BYTES >> 20} MiB): read no further "
        "(a gzip bomb, or not a log)"
    )


class ContentReader(Protocol):
    """Uncompressed content of one file, readable at any offset."""

    @property
    def size(self) -> int: ...

    def pread(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class PlainReader:
    """A plain file, its size fixed when opened so appends during a draw are ignored."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self._size = os.fstat(self._fd).st_size

    @property
    def size(self) -> int:
        return self._size

    def pread(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        os.close(self._fd)


class ChunkedGzReader:
    """Content of a `.gz` read back from its chunked sidecar, with a small chunk cache."""

    def __init__(self, data_path: Path, offsets: "array[int]", size: int) -> None:
        self._fd = os.open(data_path, os.O_RDONLY)
        self._offsets = offsets
        self._size = size
        self._cache: OrderedDict[int, bytes] = OrderedDict()

    @property
    def size(self) -> int:
        return self._size

    def _chunk(self, index: int) -> bytes:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        start, end = self._offsets[index], self._offsets[index + 1]
        compressed = os.pread(self._fd, end - start, start)
        # A chunk ends in a full flush, not a final block: close it with an empty
        # final block so one-shot inflate (4× faster than a decompressobj) accepts it.
        data = isal_zlib.decompress(compressed + FINAL_EMPTY_BLOCK, -15)
        self._cache[index] = data
        if len(self._cache) > 16:
            self._cache.popitem(last=False)
        return data

    def pread(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self._size)
        if offset >= end:
            return b""
        parts: list[bytes] = []
        position = offset
        while position < end:
            index = position // GZ_CHUNK_BYTES
            within = position - index * GZ_CHUNK_BYTES
            chunk = self._chunk(index)
            piece = chunk[within : within + (end - position)]
            if not piece:
                break
            parts.append(piece)
            position += len(piece)
        return b"".join(parts)

    def close(self) -> None:
        os.close(self._fd)


def file_identity(path: "LogPath") -> str:
    """Name a file's exact version: device, inode, size and mtime (an object: its ETag)."""
    if isinstance(path, ObjectPath):
        return path.identity()
    st = path.stat()
    raw = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def sidecar_paths(index_dir: Path, path: "LogPath") -> tuple[Path, Path]:
    key = file_identity(path)
    return index_dir / f"{key}.lwz", index_dir / f"{key}.json"


def open_gz(
    path: "LogPath", index_dir: Path, progress: ProgressCallback | None = None
) -> ChunkedGzReader:
    """Open a `.gz` for random access, building its sidecar on first use."""
    data_path, meta_path = sidecar_paths(index_dir, path)
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta.get("format") != SIDECAR_FORMAT or meta.get("chunk_bytes") != GZ_CHUNK_BYTES:
        build_gz_sidecar(path, data_path, meta_path, progress)
        meta = json.loads(meta_path.read_text())
    offsets = array("Q")
    offsets.frombytes(bytes.fromhex(meta["offsets_hex"]))
    return ChunkedGzReader(data_path, offsets, int(meta["size"]))


def build_gz_sidecar(
    path: "LogPath", data_path: Path, meta_path: Path, progress: ProgressCallback | None = None
) -> None:
    """Inflate `path` once and store its content as independently inflatable chunks.

    Written to temporary names and renamed, the metadata last, so a crash never leaves
    a half index that a later run would trust.
    """
    make_private_dir(data_path.parent)
    offsets = array("Q", [0])
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)
    total_compressed = path.stat().st_size
    limit = inflate_limit(total_compressed)
    size = 0
    written = 0
    # The sidecar holds the whole log: private (0600), whatever the log's own mode.
    with (
        path.open("rb") as raw,
        inflate_stream(raw) as inflated,
        atomic_writer(data_path) as out,
    ):
        pending = b""
        while True:
            block = inflated.read(16 * GZ_CHUNK_BYTES)
            if not block and not pending:
                break
            data = pending + block if pending else block
            usable = len(data) - len(data) % GZ_CHUNK_BYTES if block else len(data)
            for start in range(0, usable, GZ_CHUNK_BYTES):
                piece = data[start : start + GZ_CHUNK_BYTES]
                out_bytes = compressor.compress(piece) + compressor.flush(isal_zlib.Z_FULL_FLUSH)
                out.write(out_bytes)
                written += len(out_bytes)
                offsets.append(written)
                size += len(piece)
            pending = data[usable:]
            if size > limit:
                # Raised inside the writer: its temporary is removed, nothing renamed.
                raise InflateLimitExceeded(inflate_limit_note(path, total_compressed, limit))
            if progress is not None:
                progress(raw.tell(), total_compressed)
            if not block:
                break
    write_private(
        meta_path,
        json.dumps(
            {
                "format": SIDECAR_FORMAT,
                "source_file": str(path),
                "size": size,
                "chunk_bytes": GZ_CHUNK_BYTES,
                "offsets_hex": offsets.tobytes().hex(),
            }
        ).encode(),
    )


def prune_sidecars(index_dir: Path, keep: set[Path]) -> None:
    """Delete sidecars of files that are gone or changed (their identity no longer exists)."""
    if not index_dir.is_dir():
        return
    for candidate in index_dir.iterdir():
        if candidate not in keep and candidate.suffix in {".lwz", ".json", ".tmp"}:
            candidate.unlink(missing_ok=True)


def read_head(path: "LogPath", length: int = FINGERPRINT_BYTES) -> bytes:
    """Read the first `length` bytes of content (inflated for `.gz`)."""
    if isinstance(path, ObjectPath):
        return path.read_head(length)
    if path.suffix == ".gz":
        with path.open("rb") as raw, inflate_stream(raw) as handle:
            return handle.read(length)
    with path.open("rb") as handle:
        return handle.read(length)


def fingerprint(head: bytes) -> str:
    """Fingerprint content by its head: "<n>:<sha256 of the first n bytes>"."""
    return f"{len(head)}:{hashlib.sha256(head).hexdigest()[:40]}"


def fingerprint_matches(recorded: str, head: bytes) -> bool:
    """Say whether content starting with `head` is the content a fingerprint recorded."""
    length_text, _, _digest = recorded.partition(":")
    if not length_text.isdigit():
        return False
    length = int(length_text)
    if length == 0 or len(head) < length:
        return False
    return fingerprint(head[:length]) == recorded


def inflate_stream(raw: BinaryIO) -> BinaryIO:
    """Wrap a `.gz` file object in isal's inflater (about 7× the stdlib's speed)."""
    return cast(BinaryIO, igzip.IGzipFile(fileobj=raw, mode="rb"))  # type: ignore[no-untyped-call]
