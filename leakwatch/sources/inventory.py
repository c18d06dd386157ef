"""What a source reads, as `leakwatch sources` shows it: its files or objects, their
bytes, the seek indexes, the SQL dialect's sampling. Each source describes itself
(`Source.describe`); file sources share `files_inventory`. I/O (lists files).

For `leakwatch sources`: what a user needs to trust a source, beside what the store
knows (volumes, bad lines, read positions).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from leakwatch.sources.objects import LogPath, ObjectPath, ObjectStoreError

MAX_FILES_LISTED = 50
# A `.gz` file's seek-index state, as `leakwatch sources` shows it.
INDEXED = "indexed"
NOT_INDEXED = "not indexed yet"


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


def files_inventory(
    *,
    name: str,
    kind: str,
    location: str,
    list_files: Callable[[], Sequence[LogPath]],
    sampling: str,
    index_state: Callable[[LogPath], str | None] = lambda path: None,
) -> SourceInventory:
    """A file source's inventory: its files or objects with their sizes and, where a
    file needs one, the state of its seek index ("indexed" / "not indexed yet")."""
    try:
        found = list_files()
    except (ObjectStoreError, OSError) as exc:
        return SourceInventory(name=name, kind=kind, location=location, storage="?", error=str(exc))
    entries = [FileEntry(str(path), path.stat().st_size, index_state(path)) for path in found]
    states = [entry.index for entry in entries]
    storage = "objects" if any(isinstance(p, ObjectPath) for p in found) else "local files"
    return SourceInventory(
        name=name,
        kind=kind,
        location=location,
        storage=storage,
        files=tuple(entries[-MAX_FILES_LISTED:]),
        file_count=len(entries),
        total_bytes=sum(e.bytes for e in entries),
        indexed=states.count(INDEXED),
        not_indexed=states.count(NOT_INDEXED),
        sampling=sampling,
        notes=()
        if len(entries) <= MAX_FILES_LISTED
        else (f"only the last {MAX_FILES_LISTED} of {len(entries)} files listed",),
    )
