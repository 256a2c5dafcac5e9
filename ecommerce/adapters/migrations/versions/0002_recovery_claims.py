"""Recovery claims: a lease on PENDING redemptions and refunds, and indexes for the sweeps.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from servicekit.columns import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("redemptions") as batch:
        batch.add_column(sa.Column("claim_until", UtcDateTime(), nullable=True))
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("claim_until", UtcDateTime(), nullable=True))
    op.create_index("ix_refunds_state", "refunds", ["state"])
    op.create_index("ix_redemptions_create_time", "redemptions", ["create_time"])


def downgrade() -> None:
    op.drop_index("ix_redemptions_create_time", table_name="redemptions")
    op.drop_index("ix_refunds_state", table_name="refunds")
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("claim_until")
    with op.batch_alter_table("redemptions") as batch:
        batch.drop_column("claim_until")
