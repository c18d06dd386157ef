"""Describe what a source reads: its files or objects, their bytes, the seek indexes,
the SQL dialect's sampling. I/O (lists files, asks the database nothing but its name).

For `leakwatch sources`: what a user needs to trust a source, beside what the store
knows (volumes, bad lines, read positions).
"""

from dataclasses import dataclass, field

from leakwatch.sources.jsonl import JsonlSource
from leakwatch.sources.objects import ObjectPath, ObjectStoreError
from leakwatch.sources.parquet import ParquetSource
from leakwatch.sources.readers import sidecar_paths
from leakwatch.sources.sql import SqlSource

MAX_FILES_LISTED = 50


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    bytes: int
    # For a `.gz`: "indexed" (its seek index is in state_dir) or "not indexed yet".
    index: str | None = None


@dataclass(frozen=True, slots=True)
class SourceInventory:
    """What a source is made of right now."""

    name: str
    kind: str  # jsonl | parquet | sql
    location: str  # the path, URL or table
    storage: str  # "local files" | "objects" | the SQL dialect
    files: tuple[FileEntry, ...] = ()
    file_count: int = 0
    total_bytes: int = 0
    indexed: int = 0
    not_indexed: int = 0
    sampling: str = ""
    error: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def describe_source(source: JsonlSource | ParquetSource | SqlSource) -> SourceInventory:
    """List a source's files (with sizes and index state) or name its SQL sampling."""
    if isinstance(source, SqlSource):
        spec = source.spec
        return SourceInventory(
            name=source.name,
            kind="sql",
            location=spec.table or "(query)",
            storage=source.engine.dialect.name,
            sampling=source.sampling.description,
        )
    kind = "jsonl" if isinstance(source, JsonlSource) else "parquet"
    try:
        found = source.files()
    except (ObjectStoreError, OSError) as exc:
        return SourceInventory(
            name=source.name, kind=kind, location=source.spec.path, storage="?", error=str(exc)
        )
    entries: list[FileEntry] = []
    indexed = not_indexed = 0
    for path in found:
        index: str | None = None
        if isinstance(source, JsonlSource) and path.suffix == ".gz":
            _, meta = sidecar_paths(source.index_dir, path)
            if meta.exists():
                index, indexed = "indexed", indexed + 1
            else:
                index, not_indexed = "not indexed yet", not_indexed + 1
        entries.append(FileEntry(str(path), path.stat().st_size, index))
    storage = "objects" if any(isinstance(p, ObjectPath) for p in found) else "local files"
    if kind == "parquet":
        sampling = "row groups and offsets from Parquet metadata"
    else:
        sampling = "random byte offsets, the line holding each (seek index for .gz)"
    return SourceInventory(
        name=source.name,
        kind=kind,
        location=source.spec.path,
        storage=storage,
        files=tuple(entries[-MAX_FILES_LISTED:]),
        file_count=len(entries),
        total_bytes=sum(e.bytes for e in entries),
        indexed=indexed,
        not_indexed=not_indexed,
        sampling=sampling,
        notes=()
        if len(entries) <= MAX_FILES_LISTED
        else (f"only the last {MAX_FILES_LISTED} of {len(entries)} files listed",),
    )
