"""sampled_event: an index on sampled_at alone

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:55:00

Metrics, alerts and status aggregate the samples of a window of `sampled_at` across
all sources; `ix_sampled_source_time` leads with the source, so those windows were
read by a scan of the whole table, whose cost grew with the history.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sampled_event", schema=None) as batch_op:
        batch_op.create_index("ix_sampled_time", ["sampled_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sampled_event", schema=None) as batch_op:
        batch_op.drop_index("ix_sampled_time")
