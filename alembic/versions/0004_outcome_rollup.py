"""outcome_rollup: sampled outcomes summed per cycle, kept by triggers

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 18:00:00

Metrics, the alert pass and status summed the raw samples of their window after
every cycle, a cost that grew with the samples a day holds (231 ms at 506k stored).
`outcome_rollup` holds the same sums per `sampled_at` (one value per cycle), source,
event type and outcome (see `leakwatch.store.models.OutcomeRollup`).

Triggers keep it, not the store's functions: every statement that writes
`sampled_event` (the cycle's bulk COPY path, the ORM, retention, a manual fix)
changes the roll-up in the same statement and transaction. On Postgres one
statement-level trigger per operation reads the statement's transition tables and
upserts one increment per group (a 500-row draw costs one aggregate, not 500
upserts); an update moves only rows whose counted columns changed, matching old and
new by id, so unchanged rows add no floating-point residue. Upserts add to the
stored row (`samples = samples + excluded.samples`) under its row lock, in key order,
so concurrent writers neither lose counts nor deadlock on each other. SQLite has only
row triggers; the same arithmetic per row. A row whose count reaches zero is deleted
(retention empties old cycles).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel

import leakwatch.store.types
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "sampled_at, source, event_type, outcome"
SUMS = "samples, weight_sum, weight_sq_sum, weighted_quantity_sum"
ADD_EXCLUDED = ", ".join(
    f"{column} = outcome_rollup.{column} + excluded.{column}" for column in SUMS.split(", ")
)
COUNTED = ("sampled_at", "source", "event_type", "outcome", "weight", "quantity")


def _terms(row: str, sign: str) -> str:
    """One sample's contribution to its group's sums (`sign` "" or "-")."""
    return (
        f"{row}.sampled_at, {row}.source, {row}.event_type, {row}.outcome, "
        f"{sign}1, {sign}{row}.weight, {sign}{row}.weight * {row}.weight, "
        f"{sign}{row}.weight * coalesce({row}.quantity, 0)"
    )


def _upsert_grouped(changes: str) -> str:
    """Postgres: add each group's summed `changes` (key and four terms) to the roll-up."""
    return (
        f"INSERT INTO outcome_rollup ({KEY}, {SUMS}) "
        f"SELECT {KEY}, sum(n), sum(w), sum(w2), sum(wq) "
        f"FROM ({changes}) AS c ({KEY}, n, w, w2, wq) "
        f"GROUP BY {KEY} ORDER BY {KEY} "
        f"ON CONFLICT ({KEY}) DO UPDATE SET {ADD_EXCLUDED};"
    )


# Rows emptied by the statement go; only old rows can have taken counts away.
PG_DROP_EMPTIED = (
    "DELETE FROM outcome_rollup AS r "
    f"USING (SELECT DISTINCT {KEY} FROM old_rows) AS o "
    "WHERE r.sampled_at = o.sampled_at AND r.source = o.source "
    "AND r.event_type = o.event_type AND r.outcome = o.outcome AND r.samples = 0;"
)
PG_MOVED = (
    "FROM old_rows AS o JOIN new_rows AS n ON n.id = o.id "
    f"WHERE ({', '.join('o.' + c for c in COUNTED)}) "
    f"IS DISTINCT FROM ({', '.join('n.' + c for c in COUNTED)})"
)
PG_INSERTED = f"SELECT {_terms('n', '')} FROM new_rows AS n"
PG_DELETED = f"SELECT {_terms('o', '-')} FROM old_rows AS o"
PG_UPDATED = f"SELECT {_terms('o', '-')} {PG_MOVED} UNION ALL SELECT {_terms('n', '')} {PG_MOVED}"
PG_FUNCTION = f"""
CREATE FUNCTION lw_outcome_rollup_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        {_upsert_grouped(PG_INSERTED)}
    ELSIF TG_OP = 'DELETE' THEN
        {_upsert_grouped(PG_DELETED)}
        {PG_DROP_EMPTIED}
    ELSE
        {_upsert_grouped(PG_UPDATED)}
        {PG_DROP_EMPTIED}
    END IF;
    RETURN NULL;
END
$$
"""
PG_CLEAR = """
CREATE FUNCTION lw_outcome_rollup_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM outcome_rollup;
    RETURN NULL;
END
$$
"""
PG_TRIGGERS = [
    "CREATE TRIGGER lw_outcome_rollup_insert AFTER INSERT ON sampled_event "
    "REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION lw_outcome_rollup_apply()",
    "CREATE TRIGGER lw_outcome_rollup_update AFTER UPDATE ON sampled_event "
    "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION lw_outcome_rollup_apply()",
    "CREATE TRIGGER lw_outcome_rollup_delete AFTER DELETE ON sampled_event "
    "REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION lw_outcome_rollup_apply()",
    "CREATE TRIGGER lw_outcome_rollup_truncate AFTER TRUNCATE ON sampled_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION lw_outcome_rollup_clear()",
]


def _sqlite_add(row: str) -> str:
    return (
        f"INSERT INTO outcome_rollup ({KEY}, {SUMS}) VALUES ({_terms(row, '')}) "
        f"ON CONFLICT ({KEY}) DO UPDATE SET {ADD_EXCLUDED};"
    )


SQLITE_TAKE_OLD = (
    "UPDATE outcome_rollup SET samples = samples - 1, weight_sum = weight_sum - old.weight, "
    "weight_sq_sum = weight_sq_sum - old.weight * old.weight, "
    "weighted_quantity_sum = weighted_quantity_sum - old.weight * coalesce(old.quantity, 0) "
    "WHERE sampled_at = old.sampled_at AND source = old.source "
    "AND event_type = old.event_type AND outcome = old.outcome; "
    "DELETE FROM outcome_rollup WHERE sampled_at = old.sampled_at AND source = old.source "
    "AND event_type = old.event_type AND outcome = old.outcome AND samples = 0;"
)
SQLITE_TRIGGERS = [
    "CREATE TRIGGER lw_outcome_rollup_insert AFTER INSERT ON sampled_event "
    f"BEGIN {_sqlite_add('new')} END",
    f"CREATE TRIGGER lw_outcome_rollup_update AFTER UPDATE OF {', '.join(COUNTED)} "
    "ON sampled_event WHEN "
    + " OR ".join(f"old.{c} IS NOT new.{c}" for c in COUNTED)
    + f" BEGIN {SQLITE_TAKE_OLD} {_sqlite_add('new')} END",
    "CREATE TRIGGER lw_outcome_rollup_delete AFTER DELETE ON sampled_event "
    f"BEGIN {SQLITE_TAKE_OLD} END",
]


def upgrade() -> None:
    op.create_table(
        "outcome_rollup",
        sa.Column("sampled_at", leakwatch.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("weight_sum", sa.Float(), nullable=False),
        sa.Column("weight_sq_sum", sa.Float(), nullable=False),
        sa.Column("weighted_quantity_sum", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sampled_at", "source", "event_type", "outcome"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(PG_CLEAR)
        for trigger in PG_TRIGGERS:
            op.execute(trigger)
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
    # The history already stored, in the same sums the triggers keep from now on.
    op.execute(
        f"INSERT INTO outcome_rollup ({KEY}, {SUMS}) "
        f"SELECT {KEY}, count(*), sum(weight), sum(weight * weight), "
        f"sum(weight * coalesce(quantity, 0)) FROM sampled_event GROUP BY {KEY}"
    )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for trigger in ("insert", "update", "delete", "truncate"):
        on_table = " ON sampled_event" if postgres else ""
        op.execute(f"DROP TRIGGER IF EXISTS lw_outcome_rollup_{trigger}{on_table}")
    if postgres:
        op.execute("DROP FUNCTION lw_outcome_rollup_apply()")
        op.execute("DROP FUNCTION lw_outcome_rollup_clear()")
    op.drop_table("outcome_rollup")
