"""Accounts, the immutable ledger, deductions, reversals and idempotency records.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("holder_name", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
        sa.Column("update_time", _TIME, nullable=False),
        sa.CheckConstraint("balance >= 0", name="ck_accounts_balance_nonnegative"),
    )
    op.create_table(
        "ledger_entries",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(32), nullable=False, unique=True),
        sa.Column(
            "account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False
        ),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("reference_id", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
    )
    op.create_index("ix_ledger_entries_account_seq", "ledger_entries", ["account_id", "seq"])
    op.create_table(
        "deductions",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("deduction_id", sa.String(32), nullable=False, unique=True),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column(
            "account_id", sa.String(64), sa.ForeignKey("accounts.account_id"), nullable=False
        ),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        sa.Column("reversed_points", sa.BigInteger, nullable=False),
        sa.Column("coupon_quantity", sa.BigInteger, nullable=False),
        sa.Column("points_per_coupon", sa.BigInteger, nullable=False),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
        sa.Column("update_time", _TIME, nullable=False),
        sa.CheckConstraint(
            "reversed_points >= 0 AND reversed_points <= points",
            name="ck_deductions_reversed_within_points",
        ),
    )
    op.create_index("ix_deductions_create_time", "deductions", ["create_time"])
    op.create_table(
        "reversals",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("reversal_id", sa.String(32), nullable=False, unique=True),
        sa.Column("request_id", sa.String(128), nullable=False, unique=True),
        sa.Column(
            "deduction_id",
            sa.String(32),
            sa.ForeignKey("deductions.deduction_id"),
            nullable=False,
        ),
        sa.Column("points", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
    )
    op.create_index("ix_reversals_deduction_id", "reversals", ["deduction_id"])
    op.create_table(
        "idempotency_records",
        sa.Column("operation", sa.String(16), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("resource_id", sa.String(32), nullable=True),
        sa.Column("refusal_reason", sa.String(64), nullable=True),
        sa.Column("refusal_message", sa.Text, nullable=False),
        sa.Column("refusal_metadata", sa.Text, nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
    )
    # The ledger is append-only (I2 is read from it): the database itself
    # refuses to change or delete an entry.
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entries_no_{verb.lower()} BEFORE {verb} ON ledger_entries"
                " BEGIN SELECT RAISE(ABORT, 'ledger entries are immutable'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION ledger_entries_immutable() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'ledger entries are immutable'; END $$"
        )
        op.execute(
            "CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries"
            " FOR EACH ROW EXECUTE FUNCTION ledger_entries_immutable()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER ledger_entries_immutable ON ledger_entries")
        op.execute("DROP FUNCTION ledger_entries_immutable()")
    op.drop_table("idempotency_records")
    op.drop_table("reversals")
    op.drop_table("deductions")
    op.drop_table("ledger_entries")
    op.drop_table("accounts")
