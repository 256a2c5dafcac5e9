"""The transactional outbox: event rows, per-aggregate sequence counters, the relay's lease.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

from servicekit import outbox

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    outbox.create_tables(op.get_bind())


def downgrade() -> None:
    outbox.drop_tables(op.get_bind())
