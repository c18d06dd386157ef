"""Engines, sessions and migrations. I/O.

`make_engine(url)` builds the engine with the pragmas each backend needs; `upgrade`
brings the schema to the latest migration (Alembic is the only way the schema is
made). `leakwatch.wiring` is what commands call: it does both.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from alembic import command
from leakwatch.errors import StoreError
from leakwatch.files import create_private, make_private_dir

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def store_url(url: str) -> URL:
    """Parse and check a store URL before anything connects; StoreError says what to fix.

    Every message names the URL with its password masked (an unparsable one is not
    shown at all: its password cannot be found to mask), the cause and the fix.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        # Not shown: an unparsable URL may still hold a password.
        raise StoreError(
            "database_url is not a database URL (value not shown); expected "
            "sqlite:///path.db or postgresql+psycopg://user:password@host:port/db, "
            "with special characters in the password percent-encoded (@ as %40, % as %25)"
        ) from exc
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.host or parsed.port:
            # sqlite://lw.db reads "lw.db" as a host, which SQLite has no use for.
            relative = f"{parsed.host or ''}{'/' + parsed.database if parsed.database else ''}"
            raise StoreError(
                f"database_url {shown}: a SQLite URL has no host; write sqlite:///{relative} "
                "(three slashes: relative to the working directory) or "
                "sqlite:////var/lib/leakwatch/leakwatch.db (four: an absolute path)"
            )
        problem = sqlite_file_problem(parsed.database)
        if problem is not None:
            raise StoreError(f"database_url {shown}: {problem}")
    elif backend == "postgresql":
        if parsed.get_driver_name() not in ("psycopg", ""):
            raise StoreError(
                f"database_url {shown} uses driver {parsed.get_driver_name()!r}; "
                "use postgresql+psycopg://…"
            )
        if parsed.get_driver_name() == "":
            parsed = parsed.set(drivername="postgresql+psycopg")
    else:
        raise StoreError(
            f"database_url {shown}: backend {backend!r} is not supported; "
            "use sqlite:///… or postgresql+psycopg://…"
        )
    return parsed


def sqlite_file_problem(database: str | None) -> str | None:
    """Say why a SQLite file cannot be used here (and what to do), or None if it can.

    SQLite in WAL mode writes `-wal` and `-shm` files beside the database, and the
    daemon its lock file: the folder must be writable, even to read. A missing folder
    is made (0700) when the engine is built, so its nearest existing parent must be.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    fix = "point LEAKWATCH_DATABASE_URL (or database_url) at a writable place"
    if path.is_dir():
        return f"{path} is a directory, not a database file; name a file in it"
    folder = path.parent
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a directory; {fix}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"the directory {folder} is not writable by this user (SQLite writes its "
            f"journal and lock files beside the database); make it writable, or {fix}"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        return f"{path} cannot be read and written by this user; fix its permissions, or {fix}"
    return None


def make_engine(url: str) -> Engine:
    """Build an engine for a `sqlite:///…` or `postgresql+psycopg://…` URL."""
    parsed = store_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        # One connection per use: SQLite files are shared between threads and
        # processes (daemon, CLI), and WAL lets readers run beside the writer.
        kwargs["poolclass"] = NullPool
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"cannot load the driver for {parsed.drivername}: {exc}") from exc
    except ArgumentError as exc:
        shown = parsed.render_as_string(hide_password=True)
        raise StoreError(f"database_url {shown}: {str(exc).splitlines()[0]}") from exc
    if parsed.get_backend_name() == "sqlite":
        _create_sqlite_file(parsed.database)
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _create_sqlite_file(database: str | None) -> None:
    """Create a new SQLite file 0600 before SQLite does (it would follow the umask).

    Its -wal and -shm files take the database file's mode, so the store's samples
    and alerts stay readable by their owner only; a missing folder is made 0700. An
    existing file keeps its mode.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.exists():
        try:
            make_private_dir(path.parent)
            create_private(path)
        except OSError as exc:
            raise StoreError(f"cannot create the SQLite file {path}: {exc.strerror}") from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config() -> Config:
    """Alembic's config: the scripts only.

    The connection is handed over in `attributes["connection"]`, never as a URL: a URL
    in Alembic's ini-style config is interpolated (a `%` in a password breaks it) and
    would put the password where error messages quote it.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Apply every pending migration; return (revision before, revision after)."""
    config = alembic_config()
    before = current_revision(engine)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return before, current_revision(engine)


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


SessionFactory = Callable[[], Session]


def session_factory(engine: Engine) -> SessionFactory:
    def make() -> Session:
        return Session(engine, expire_on_commit=False)

    return make


@contextmanager
def transaction(sessions: SessionFactory) -> Iterator[Session]:
    """A session whose work commits together or not at all."""
    session = sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
