"""sampled_event: an index on (stratum, sampled_at)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:00:00

The alert pass counts the follow-up probes of each group per cycle, found by their
stratum among the samples of the rule's window; by `ix_sampled_time` that read every
sample of the window (a day of samples at any table size: 135 ms at 5 M stored, cold),
where the window's probes are a few rows of this index.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sampled_event", schema=None) as batch_op:
        batch_op.create_index("ix_sampled_stratum_time", ["stratum", "sampled_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sampled_event", schema=None) as batch_op:
        batch_op.drop_index("ix_sampled_stratum_time")
