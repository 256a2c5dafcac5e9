"""Initial e-commerce schema: products, ratio history, card links, redemptions, coupons, refunds.

Revision ID: 0001
Revises:
Create Date: 2025-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Auto-incrementing keyset sequence on both backends (SQLite needs INTEGER PRIMARY KEY).
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _seq() -> sa.Column[int]:
    return sa.Column("seq", SEQ, primary_key=True, autoincrement=True)


def upgrade() -> None:
    op.create_table(
        "coupon_products",
        _seq(),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("face_value_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("points_per_coupon", sa.BigInteger(), nullable=False),
        sa.Column("ratio_version", sa.BigInteger(), nullable=False),
        sa.Column("validity_days", sa.Integer(), nullable=False),
        sa.Column("max_quantity_per_redemption", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
        sa.Column("update_time", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("product_id", name="uq_coupon_products_product_id"),
    )
    op.create_table(
        "exchange_ratios",
        _seq(),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("points_per_coupon", sa.BigInteger(), nullable=False),
        sa.Column("effective_time", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"], ["coupon_products.product_id"], name="fk_exchange_ratios_product"
        ),
        sa.UniqueConstraint("product_id", "version", name="uq_exchange_ratios_product_version"),
    )
    op.create_table(
        "card_links",
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("card_account_id", sa.String(64), nullable=False),
        sa.Column("link_time", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "redemptions",
        _seq(),
        sa.Column("redemption_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("points_per_coupon", sa.BigInteger(), nullable=False),
        sa.Column("ratio_version", sa.BigInteger(), nullable=False),
        sa.Column("card_account_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.String(64), nullable=False),
        sa.Column("deduction_id", sa.String(128), nullable=False),
        sa.Column("refunded_points", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
        sa.Column("update_time", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("redemption_id", name="uq_redemptions_redemption_id"),
        sa.UniqueConstraint("request_id", name="uq_redemptions_request_id"),
        sa.CheckConstraint(
            "refunded_points >= 0 AND refunded_points <= points", name="ck_redemptions_refunded"
        ),
    )
    op.create_index("ix_redemptions_customer_seq", "redemptions", ["customer_id", "seq"])
    op.create_index("ix_redemptions_state", "redemptions", ["state"])
    op.create_table(
        "coupons",
        _seq(),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("redemption_id", sa.String(64), nullable=False),
        sa.Column("face_value_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("issue_time", sa.DateTime(), nullable=False),
        sa.Column("expire_time", sa.DateTime(), nullable=False),
        sa.Column("used_order_id", sa.String(64), nullable=False),
        sa.Column("use_time", sa.DateTime(), nullable=True),
        sa.Column("refund_id", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["redemption_id"], ["redemptions.redemption_id"], name="fk_coupons_redemption"
        ),
        sa.UniqueConstraint("code", name="uq_coupons_code"),
    )
    op.create_index("ix_coupons_customer_seq", "coupons", ["customer_id", "seq"])
    op.create_index("ix_coupons_redemption", "coupons", ["redemption_id"])
    op.create_table(
        "refunds",
        _seq(),
        sa.Column("refund_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("redemption_id", sa.String(64), nullable=False),
        sa.Column("codes", sa.Text(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reversal_id", sa.String(128), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
        sa.Column("update_time", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["redemption_id"], ["redemptions.redemption_id"], name="fk_refunds_redemption"
        ),
        sa.UniqueConstraint("refund_id", name="uq_refunds_refund_id"),
        sa.UniqueConstraint("request_id", name="uq_refunds_request_id"),
    )
    op.create_index("ix_refunds_redemption", "refunds", ["redemption_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_refunds_redemption", "refunds"),
        ("ix_coupons_redemption", "coupons"),
        ("ix_coupons_customer_seq", "coupons"),
        ("ix_redemptions_state", "redemptions"),
        ("ix_redemptions_customer_seq", "redemptions"),
    ):
        op.drop_index(index, table_name=table)
    for table in (
        "refunds",
        "coupons",
        "redemptions",
        "card_links",
        "exchange_ratios",
        "coupon_products",
    ):
        op.drop_table(table)
