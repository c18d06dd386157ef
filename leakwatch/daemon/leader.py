"""Who runs the jobs: one leader among replicas. I/O (Postgres, files).

Postgres: a session-level advisory lock held on a dedicated, long-lived connection
that is not from the SQLAlchemy pool (a pooled connection would hand the lock to
whoever borrows it next, or drop it when recycled). The lock dies with the session,
so a leader that crashes or loses its connection frees it for a follower. Because a
connection can die silently (a network partition), the leader re-checks before each
job that its connection answers and that `pg_locks` still shows the lock as ours, and
steps down on any error. Session-level advisory locks do not survive PgBouncer in
transaction mode: the lock is taken on a server connection the next transaction may
not get. Point leakwatch at Postgres directly (or PgBouncer in session mode).

SQLite: one instance only, enforced with an exclusive `flock` on a lock file next to
the database file. A second instance fails at start-up with a message that says why.
"""

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import psycopg
import structlog
from sqlalchemy.engine import make_url

from leakwatch.errors import LeakwatchError, StoreError, UsageProblem
from leakwatch.files import make_private_dir, open_private

if TYPE_CHECKING:
    from leakwatch.config import Settings

# Keepalives notice a dead peer in about idle + interval × count seconds; the user
# timeout bounds how long unacknowledged writes may hang.
LEADER_CONNECT_OPTIONS: dict[str, Any] = {
    "autocommit": True,
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
    "application_name": "leakwatch-leader",
    "options": "-c statement_timeout=5000",
}


class Leadership(Protocol):
    """The daemon's view of an election: take the lead, check it, give it up."""

    def try_acquire(self) -> bool:
        """Become leader if nobody is; True when we hold the lead afterwards."""

    def acquire_or_fail(self) -> None:
        """Take the lead now or raise AnotherInstanceRunning (or StoreError) saying why."""

    def is_leader(self) -> bool:
        """Check (not assume) that we still hold the lead; False steps down."""

    def release(self) -> None:
        """Give up the lead, if held; safe to call twice."""

    def claim_at_start(self) -> None:
        """What the daemon takes before anything else: the whole store (SQLite, one
        instance) or nothing (Postgres replicas wait to be elected)."""

    def migrating(self) -> contextlib.AbstractContextManager[None]:
        """Held while the schema is migrated, so instances starting together migrate
        one after the other (the second finds nothing to do)."""


def advisory_lock_ids(key: int) -> tuple[int, int]:
    """Split a bigint advisory key into the (classid, objid) that `pg_locks` shows."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


def libpq_url(database_url: str) -> str:
    """Turn an SQLAlchemy `postgresql+psycopg://` URL into one libpq accepts."""
    url = make_url(database_url)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresLeader:
    """Leadership by `pg_try_advisory_lock(key)` on a connection of its own.

    Thread-safe: the election loop and the job threads share one instance.
    """

    def __init__(
        self, database_url: str, *, key: int, connect_options: dict[str, Any] | None = None
    ) -> None:
        if not -(2**63) <= key < 2**63:
            raise ValueError("an advisory lock key is a signed 64-bit integer")
        self._conninfo = libpq_url(database_url)
        self._shown = make_url(database_url).render_as_string(hide_password=True)
        self._key = key
        self._options = {**LEADER_CONNECT_OPTIONS, **(connect_options or {})}
        self._conn: psycopg.Connection[Any] | None = None
        self._holding = False
        self._lock = threading.Lock()

    @property
    def key(self) -> int:
        return self._key

    @property
    def backend_pid(self) -> int | None:
        """The server process holding our session (what `pg_locks.pid` shows)."""
        with self._lock:
            return self._conn.info.backend_pid if self._conn is not None else None

    def try_acquire(self) -> bool:
        with self._lock:
            if self._holding:
                return self._check_locked()
            try:
                return self._try_lock()
            except psycopg.Error as exc:
                structlog.get_logger().warning("leader.connect_failed", error=_one_line(exc))
                self._drop_connection()
                return False

    def acquire_or_fail(self) -> None:
        """Take the lock now, or raise: held by another session, or the server unreachable."""
        with self._lock:
            if self._holding:
                return
            try:
                if self._try_lock():
                    return
                row = (
                    self._connection()
                    .execute(
                        "SELECT l.pid, a.application_name FROM pg_locks l"
                        " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
                        " WHERE l.locktype = 'advisory' AND l.granted"
                        " AND l.database = (SELECT oid FROM pg_database"
                        " WHERE datname = current_database())"
                        " AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid",
                        advisory_lock_ids(self._key),
                    )
                    .fetchone()
                )
            except psycopg.Error as exc:
                self._drop_connection()
                raise StoreError(
                    f"cannot reach the database at {self._shown} to take leakwatch's lock: "
                    f"{_one_line(exc)}"
                ) from None
            self._drop_connection()
        who = f"Postgres backend pid {row[0]}, {row[1] or 'no application name'}" if row else "?"
        raise AnotherInstanceRunning(
            f"another leakwatch holds this store's lock ({who}; advisory key {self._key} on "
            f"{self._shown}). " + ONE_AT_A_TIME
        )

    def _try_lock(self) -> bool:
        row = self._connection().execute("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        self._holding = bool(row and row[0])
        return self._holding

    def is_leader(self) -> bool:
        with self._lock:
            return self._holding and self._check_locked()

    def release(self) -> None:
        with self._lock:
            if self._conn is not None and self._holding:
                # Closing the session below frees the lock anyway.
                with contextlib.suppress(psycopg.Error):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
            self._holding = False
            self._drop_connection()

    def claim_at_start(self) -> None:
        """Nothing: replicas start together and one of them is elected."""

    @contextlib.contextmanager
    def migrating(self, timeout_s: float = 120.0) -> Iterator[None]:
        """A blocking advisory lock on the key next to the leader's, on a connection of
        its own, for as long as the migrations take."""
        key = self._key ^ 1
        options = {**self._options, "application_name": "leakwatch-migrate"}
        options["options"] = f"-c statement_timeout={int(timeout_s * 1000)}"
        try:
            conn = psycopg.connect(self._conninfo, **options)
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot reach the database at {self._shown} to migrate it: {_one_line(exc)}"
            ) from None
        with conn:
            try:
                yield
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def _check_locked(self) -> bool:
        """Ask the server whether our session still holds the lock; step down if not."""
        classid, objid = advisory_lock_ids(self._key)
        try:
            assert self._conn is not None
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks"
                " WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1",
                (classid, objid),
            ).fetchone()
            held = bool(row and row[0])
        except (psycopg.Error, AssertionError) as exc:
            structlog.get_logger().warning("leader.check_failed", error=_one_line(exc))
            held = False
        if not held:
            self._holding = False
            self._drop_connection()
        return held

    def _connection(self) -> "psycopg.Connection[Any]":
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, **self._options)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None


class AnotherInstanceRunning(LeakwatchError):
    """Another leakwatch holds the store's lock: a second SQLite daemon, or a `check`
    beside a running daemon or another check."""


# Why `check` refuses to run beside another instance, said the same way everywhere.
ONE_AT_A_TIME = (
    "One leakwatch (the daemon or a check) searches Metronome per store at a time: two "
    "would look the same ids up and spend the budget twice. Wait for it to finish, or "
    "let the daemon do the checking."
)


def store_lock(database_url: str, *, key: int, state_dir: Path) -> Leadership:
    """The one lock per store that whatever searches Metronome holds (daemon and check).

    Postgres: the advisory lock `key` (replicas elect their leader with it). SQLite: an
    exclusive lock file beside the database.
    """
    if make_url(database_url).get_backend_name() == "postgresql":
        return PostgresLeader(database_url, key=key)
    return SqliteLockFile(sqlite_lock_path(database_url, state_dir))


@contextlib.contextmanager
def searching_alone(settings: "Settings") -> Iterator[None]:
    """Hold the store's one lock while searching (the daemon's: advisory or lock file).

    Raises AnotherInstanceRunning at once when the daemon or another check holds it:
    two instances would look the same due ids up and spend the budget twice.
    """
    from leakwatch.wiring import build_leader

    lock = build_leader(settings)
    lock.acquire_or_fail()
    try:
        yield
    finally:
        lock.release()


def sqlite_lock_path(database_url: str, state_dir: Path) -> Path:
    """Where the single-instance lock lives: beside the database file, else in state_dir."""
    database = make_url(database_url).database
    if database and database != ":memory:" and not database.startswith("file::memory:"):
        db_path = Path(database)
        return db_path.with_name(db_path.name + ".lock")
    return state_dir / "leakwatch.lock"


class SqliteLockFile:
    """Leadership by an exclusive `flock`: held for the life of the process, never shared."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def try_acquire(self) -> bool:
        if self._handle is not None:
            return True
        try:
            make_private_dir(self.path.parent)
            handle = os.fdopen(open_private(self.path), "r+", encoding="utf-8")
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise LeakwatchError(
                    f"lock file {self.path} is a symlink; leakwatch does not follow it "
                    "(remove it, or check who planted it)"
                ) from None
            raise UsageProblem(
                f"cannot create leakwatch's lock file {self.path}: {exc.strerror or exc}; "
                "the directory of the SQLite database must be writable by this user (or "
                "point LEAKWATCH_DATABASE_URL at a writable place)"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def acquire_or_fail(self) -> None:
        """Take the lock, or raise with which process holds it and what to do instead."""
        if self.try_acquire():
            return
        holder = self.holder_pid()
        who = f"pid {holder}" if holder is not None else "pid unknown"
        raise AnotherInstanceRunning(
            f"another leakwatch is running against this SQLite store ({who}); SQLite allows "
            f"one instance — use Postgres for replicas (lock file: {self.path}). " + ONE_AT_A_TIME
        )

    def holder_pid(self) -> int | None:
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def is_leader(self) -> bool:
        return self._handle is not None

    def claim_at_start(self) -> None:
        """The lock file, for the life of the process: SQLite allows one instance."""
        self.acquire_or_fail()

    def migrating(self) -> contextlib.AbstractContextManager[None]:
        """Nothing more: the lock file taken at start already keeps others out."""
        return contextlib.nullcontext()

    def release(self) -> None:
        if self._handle is None:
            return
        try:
            self._handle.seek(0)
            self._handle.truncate()
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        finally:
            self._handle.close()
            self._handle = None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = [
    "AnotherInstanceRunning",
    "Leadership",
    "PostgresLeader",
    "SqliteLockFile",
    "advisory_lock_ids",
    "libpq_url",
    "searching_alone",
    "sqlite_lock_path",
    "store_lock",
]
