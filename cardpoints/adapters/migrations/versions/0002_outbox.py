"""The transactional outbox: event rows, per-account sequence counters, the relay's lease.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from servicekit import outbox

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    outbox.create_tables(op.get_bind())


def downgrade() -> None:
    outbox.drop_tables(op.get_bind())
