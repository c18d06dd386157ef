"""The store: SQLModel tables, the engine, migrations, and the queries that answer questions.

All I/O. Postgres in production, SQLite for the embedded default; the schema is made
only by the Alembic migrations in `alembic/`.
"""
