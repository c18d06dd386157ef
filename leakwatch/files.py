"""Files and folders only their owner can read, created without following symlinks. I/O.

What leakwatch writes holds copies of a company's usage records (the `.gz` sidecars
hold a whole log; the store holds samples) or says who leads (the lock file). Each is
created with its mode given here, never left to the process umask: folders 0700,
files 0600 (reports: their configured mode). Nothing is opened through a symlink a
local attacker could plant where a file is expected: new files are made by `mkstemp`
(O_EXCL) and renamed into place, and existing ones are opened with O_NOFOLLOW.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def dir_mode_for(file_mode: int) -> int:
    """The folder mode that lets whoever may read a file of `file_mode` reach it."""
    mode = file_mode | 0o700
    for read_bit, search_bit in ((0o040, 0o010), (0o004, 0o001)):
        if file_mode & read_bit:
            mode |= search_bit
    return mode & 0o777


def make_private_dir(path: Path, mode: int = PRIVATE_DIR_MODE) -> Path:
    """Create `path` and missing parents with `mode` (default 0700); leave an existing one.

    An existing folder keeps its mode: it may be shared on purpose (a mounted volume,
    the user's home), and it is not leakwatch's to loosen or tighten.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            continue
        os.chmod(folder, mode)  # mkdir's mode passes through the umask
    return path


def open_private(path: Path, flags: int = os.O_RDWR, mode: int = PRIVATE_FILE_MODE) -> int:
    """Open `path` as a file descriptor, creating it with `mode`; never through a symlink.

    Raises OSError (ELOOP) when `path` is a symlink.
    """
    return os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def create_private(path: Path, mode: int = PRIVATE_FILE_MODE) -> None:
    """Create an empty file at `path` with `mode` unless one exists (never via a symlink)."""
    os.close(open_private(path, os.O_WRONLY, mode))


@contextmanager
def atomic_writer(path: Path, mode: int = PRIVATE_FILE_MODE) -> Iterator[BinaryIO]:
    """Write `path` through a fresh temporary file in its folder, renamed on success.

    The temporary name is `mkstemp`'s (created O_EXCL, so a planted symlink is never
    followed) and ends in `.tmp`; a reader never sees half a file, and a failure
    leaves the old file in place and no temporary behind.
    """
    make_private_dir(path.parent)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            yield handle
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_private(path: Path, data: bytes, mode: int = PRIVATE_FILE_MODE) -> None:
    """Replace `path` with `data` atomically, with `mode`."""
    with atomic_writer(path, mode) as handle:
        handle.write(data)
