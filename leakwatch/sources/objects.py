"""Objects in object storage (s3://, gs://, az://, any fsspec URL) as log files. I/O.

The JSONL source asks a file a few questions — its name, size, modification time and
identity, a stream of its bytes, a read at an offset — and `ObjectPath` answers them
for an object, so the source's draw and tail paths run unchanged on object storage:

- listing: one LIST per cycle (no listing cache: a rotated object appears at once);
  size, ETag and LastModified come with it, so asking them costs nothing more;
- a random read: `RangedReader.pread` is one ranged GET of at least `MIN_FETCH_BYTES`,
  and the few ranges last fetched are kept, so the line found around a random offset
  and the parse of that line cost one GET, not two;
- a stream (a tail, the one-time gzip index build): GETs of `STREAM_BLOCK_BYTES`;
- identity: the ETag, so a `.gz`'s seek index under `state_dir` is keyed by it — an
  object rewritten under the same name is re-indexed, an unchanged one never re-read.

Credentials and the endpoint come from the standard environment of the storage's own
SDK (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, `AWS_ENDPOINT_URL` /
`AWS_ENDPOINT_URL_S3` for S3), with `storage_options` from the source's config passed
to the filesystem as given (e.g. `endpoint_url`, `anon`).
"""

import glob
import hashlib
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

from leakwatch.errors import LeakwatchError

MIN_FETCH_BYTES = 16 << 10
STREAM_BLOCK_BYTES = 8 << 20
# Enough for a batch of draws fetched ahead plus the reads that follow them.
CACHED_RANGES = 96
S3_CONNECTIONS = 32
# Compressed bytes fetched to inflate a `.gz` object's first KiB (its fingerprint).
GZ_HEAD_FETCH_BYTES = 64 << 10


class ObjectStoreError(LeakwatchError, OSError):
    """Object storage could not be listed or read (credentials, endpoint, missing extra).

    An OSError too: a source that cannot be read is reported by the cycle, like a file.
    """


def is_object_url(path: str) -> bool:
    """Say whether a configured path names object storage rather than a local file."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme not in ("", "file", "local")


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """The parts of `os.stat_result` the sources read, filled from a listing."""

    st_size: int
    st_mtime: float
    st_mtime_ns: int
    st_dev: int
    st_ino: int


def _filesystem(url: str, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    try:
        from fsspec.core import url_to_fs
    except ImportError:  # pragma: no cover - fsspec comes with every storage extra
        raise ObjectStoreError(
            "object storage needs fsspec and the storage's package: "
            "pip install 'leakwatch[s3]' (or [gcs], [azure])"
        ) from None
    options: dict[str, Any] = {"use_listings_cache": False, "skip_instance_cache": True}
    if url.startswith(("s3://", "s3a://")):
        # A batch of draws fetches its ranges at once: allow as many connections.
        options["config_kwargs"] = {"max_pool_connections": S3_CONNECTIONS}
    options.update(storage_options)
    try:
        return cast(tuple[Any, str], url_to_fs(url, **options))
    except (ImportError, ValueError) as exc:
        scheme = url.partition("://")[0]
        extra = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}.get(scheme, "azure")
        raise ObjectStoreError(
            f"{url}: cannot open {scheme}:// storage ({exc}); pip install 'leakwatch[{extra}]'"
        ) from None


def _reason(exc: BaseException) -> str:
    """One line naming the failure (credentials, endpoint, permission), no traceback."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _mtime(info: Mapping[str, Any]) -> float:
    for key in ("LastModified", "mtime", "last_modified", "updated", "timeCreated"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return 0.0


class ObjectPath:
    """One object, answering what the JSONL source asks of a `Path` (see module doc)."""

    def __init__(self, fs: Any, key: str, info: Mapping[str, Any], protocol: str) -> None:
        self._fs = fs
        self.key = key
        self._protocol = protocol
        self.size = int(info.get("size") or 0)
        self.etag = str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "")
        self.etag = self.etag.strip('"')
        self.mtime = _mtime(info)
        self._pure = PurePosixPath(key)

    @property
    def name(self) -> str:
        return self._pure.name

    @property
    def suffix(self) -> str:
        return self._pure.suffix

    def __str__(self) -> str:
        return f"{self._protocol}://{self.key}"

    def __repr__(self) -> str:
        return f"ObjectPath({self!s}, etag={self.etag!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and (str(self), self.etag) == (str(other), other.etag)

    def __hash__(self) -> int:
        return hash((str(self), self.etag))

    def __lt__(self, other: "ObjectPath") -> bool:
        return str(self) < str(other)

    def identity(self) -> str:
        """Name this version of the object: its URL, ETag and size (not its mtime)."""
        raw = f"{self}:{self.etag}:{self.size}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    def stat(self) -> ObjectStat:
        digest = int(self.identity()[:15], 16)
        return ObjectStat(
            st_size=self.size,
            st_mtime=self.mtime,
            st_mtime_ns=int(self.mtime * 1_000_000_000),
            st_dev=0,
            st_ino=digest,
        )

    def is_file(self) -> bool:
        return True

    def open(self, mode: str = "rb", buffering: int = -1) -> BinaryIO:
        """A sequential stream of the object (large ranged GETs, read ahead)."""
        del buffering
        if mode != "rb":
            raise ValueError("objects are read only")
        try:
            handle = self._fs.open(
                self.key, "rb", block_size=STREAM_BLOCK_BYTES, cache_type="readahead"
            )
        except Exception as exc:  # the SDK's own errors (botocore, …) are not OSError
            raise ObjectStoreError(f"{self}: {_reason(exc)}") from None
        return cast(BinaryIO, handle)

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the object: one ranged GET."""
        if end <= start:
            return b""
        try:
            return cast(bytes, self._fs.cat_file(self.key, start=start, end=end))
        except Exception as exc:  # the SDK's own errors (botocore, …) are not OSError
            raise ObjectStoreError(f"{self}: {_reason(exc)}") from None

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Several [start, end) ranges of the object, fetched concurrently."""
        try:
            found = self._fs.cat_ranges(
                [self.key] * len(ranges), [s for s, _ in ranges], [e for _, e in ranges]
            )
        except Exception as exc:  # the SDK's own errors (botocore, …) are not OSError
            raise ObjectStoreError(f"{self}: {_reason(exc)}") from None
        for piece in found:
            if isinstance(piece, BaseException):
                raise ObjectStoreError(f"{self}: {_reason(piece)}")
        return [bytes(piece) for piece in found]

    def read_head(self, length: int) -> bytes:
        """The first `length` bytes of content (inflated for `.gz`) in one small GET."""
        if self.suffix != ".gz":
            return self.read_range(0, min(length, self.size))
        fetched = self.read_range(0, min(self.size, GZ_HEAD_FETCH_BYTES))
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            head = inflater.decompress(fetched, length)
        except zlib.error:
            return b""
        return head[:length]

    def reader(self) -> "RangedReader":
        return RangedReader(self)

    def open_random(self) -> BinaryIO:
        """A seekable handle whose reads are ranged GETs of what is asked (Parquet)."""
        try:
            handle = self._fs.open(self.key, "rb", block_size=MIN_FETCH_BYTES, cache_type="bytes")
        except Exception as exc:  # the SDK's own errors (botocore, …) are not OSError
            raise ObjectStoreError(f"{self}: {_reason(exc)}") from None
        return cast(BinaryIO, handle)


class RangedReader:
    """Random access to a plain object: each miss one ranged GET, recent ranges kept.

    `prefetch` fetches many ranges at once (concurrent GETs), for a batch of draws
    whose offsets are known before their reads: latency is paid once per batch.
    """

    def __init__(self, path: ObjectPath) -> None:
        self._path = path
        self._size = path.size
        self._ranges: OrderedDict[int, bytes] = OrderedDict()

    @property
    def size(self) -> int:
        return self._size

    def pread(self, offset: int, length: int) -> bytes:
        end = min(offset + length, self._size)
        if offset >= end:
            return b""
        for start, data in self._ranges.items():
            if start <= offset and end <= start + len(data):
                self._ranges.move_to_end(start)
                return data[offset - start : end - start]
        fetch_end = min(self._size, max(end, offset + MIN_FETCH_BYTES))
        data = self._path.read_range(offset, fetch_end)
        self._keep(offset, data)
        return data[: end - offset]

    def _keep(self, offset: int, data: bytes) -> None:
        self._ranges[offset] = data
        if len(self._ranges) > CACHED_RANGES:
            self._ranges.popitem(last=False)

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch [start, end) ranges (each at least MIN_FETCH_BYTES) concurrently."""
        wanted = [
            (start, min(self._size, max(end, start + MIN_FETCH_BYTES)))
            for start, end in ranges
            if start < self._size
        ]
        if not wanted:
            return
        for (start, _), data in zip(wanted, self._path.read_ranges(wanted), strict=True):
            self._keep(start, data)

    def close(self) -> None:
        self._ranges.clear()


def list_objects(url: str, storage_options: Mapping[str, Any]) -> list[ObjectPath]:
    """List the objects a URL names: one object, a prefix ("directory"), or a glob."""
    fs, root = _filesystem(url, storage_options)
    protocol = url.partition("://")[0]
    try:
        if any(ch in root for ch in "*?["):
            found = fs.glob(root, detail=True)
            infos: dict[str, Mapping[str, Any]] = dict(found)
        else:
            info = fs.info(root)
            if info.get("type") == "directory":
                infos = dict(fs.find(root, detail=True))
            else:
                infos = {root: info}
    except FileNotFoundError:
        return []
    except Exception as exc:  # the SDK's own errors (botocore, …) are not OSError
        raise ObjectStoreError(f"{url}: cannot list: {_reason(exc)}") from None
    objects = [
        ObjectPath(fs, str(info.get("name") or key), info, protocol)
        for key, info in infos.items()
        if info.get("type", "file") == "file"
    ]
    return sorted(o for o in objects if not o.name.startswith("."))


# A reader that can fetch ranges ahead of their reads (object storage).
PrefetchingReader = RangedReader

# What a file source reads: a local file or an object.
LogPath = Path | ObjectPath


def list_files(path: str, storage_options: Mapping[str, Any]) -> list[LogPath]:
    """List a source's files in name order: a path, a directory, a glob, or objects.

    Hidden files (a writer's `.tmp`) are left out, locally and in object storage.
    """
    if is_object_url(path):
        return list(list_objects(path, storage_options))
    target = Path(path)
    if target.is_dir():
        candidates = [p for p in target.iterdir() if p.is_file()]
    elif any(ch in path for ch in "*?["):
        candidates = [Path(p) for p in glob.glob(path) if Path(p).is_file()]
    else:
        candidates = [target] if target.is_file() else []
    return sorted(p for p in candidates if not p.name.startswith("."))


def file_problems(pattern: str, files: Callable[[], Sequence[LogPath]]) -> list[str]:
    """What keeps a file source from being read: no listing, no match, unreadable files."""
    try:
        found = files()
    except OSError as exc:
        return [f"cannot list {pattern}: {exc}"]
    if not found:
        return [f"no file matches {pattern!r}; check the path (a file, a glob or a directory)"]
    problems: list[str] = []
    for path in found:
        try:
            if isinstance(path, ObjectPath):
                path.read_range(0, 1)  # one small GET, not a read-ahead block
                continue
            with path.open("rb") as handle:
                handle.read(1)
        except OSError as exc:
            problems.append(f"cannot read {path}: {exc}")
    return problems
