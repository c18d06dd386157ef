"""Alembic environment for leakwatch.

leakwatch passes an open connection in `config.attributes["connection"]`; the Alembic
CLI falls back to LEAKWATCH_DATABASE_URL. SQLite needs batch mode for ALTERs.
"""

import os

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

import leakwatch.store.models  # noqa: F401  (registers the tables on the metadata)

target_metadata = SQLModel.metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    url = os.environ.get("LEAKWATCH_DATABASE_URL", "sqlite:///leakwatch.db")
    engine = create_engine(url)
    with engine.begin() as conn:
        run_with(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("leakwatch migrations run online only: use `leakwatch db upgrade`")
run_online()
