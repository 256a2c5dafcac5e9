"""Adapters room: the SQLAlchemy tables of the e-commerce database (the migrations create them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.columns import UtcDateTime
from servicekit.outbox import define_tables

# SQLite only has INTEGER PRIMARY KEY as an auto-incrementing rowid alias.
Sequence64 = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


# The transactional outbox and its per-aggregate sequence counters (servicekit.outbox).
OUTBOX = define_tables(Base.metadata)


class CouponProductRow(Base):
    __tablename__ = "coupon_products"
    __table_args__ = (UniqueConstraint("product_id", name="uq_coupon_products_product_id"),)

    seq: Mapped[int] = mapped_column(Sequence64, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200))
    face_value_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    points_per_coupon: Mapped[int] = mapped_column(BigInteger)
    ratio_version: Mapped[int] = mapped_column(BigInteger)
    validity_days: Mapped[int] = mapped_column(Integer)
    max_quantity_per_redemption: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)
    update_time: Mapped[datetime] = mapped_column(UtcDateTime)


class ExchangeRatioRow(Base):
    __tablename__ = "exchange_ratios"
    __table_args__ = (
        UniqueConstraint("product_id", "version", name="uq_exchange_ratios_product_version"),
    )

    seq: Mapped[int] = mapped_column(Sequence64, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("coupon_products.product_id", name="fk_exchange_ratios_product")
    )
    version: Mapped[int] = mapped_column(BigInteger)
    points_per_coupon: Mapped[int] = mapped_column(BigInteger)
    effective_time: Mapped[datetime] = mapped_column(UtcDateTime)


class CardLinkRow(Base):
    __tablename__ = "card_links"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    card_account_id: Mapped[str] = mapped_column(String(64))
    link_time: Mapped[datetime] = mapped_column(UtcDateTime)


class RedemptionRow(Base):
    __tablename__ = "redemptions"
    __table_args__ = (
        CheckConstraint(
            "refunded_points >= 0 AND refunded_points <= points", name="ck_redemptions_refunded"
        ),
        UniqueConstraint("redemption_id", name="uq_redemptions_redemption_id"),
        UniqueConstraint("request_id", name="uq_redemptions_request_id"),
        Index("ix_redemptions_customer_seq", "customer_id", "seq"),
        Index("ix_redemptions_state", "state"),
        Index("ix_redemptions_create_time", "create_time"),
    )

    seq: Mapped[int] = mapped_column(Sequence64, primary_key=True, autoincrement=True)
    redemption_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger)
    points_per_coupon: Mapped[int] = mapped_column(BigInteger)
    ratio_version: Mapped[int] = mapped_column(BigInteger)
    card_account_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    failure_reason: Mapped[str] = mapped_column(String(64))
    deduction_id: Mapped[str] = mapped_column(String(128))
    refunded_points: Mapped[int] = mapped_column(BigInteger)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)
    update_time: Mapped[datetime] = mapped_column(UtcDateTime)
    # A recovery worker's lease: others leave the row alone until it passes.
    claim_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class CouponRow(Base):
    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("code", name="uq_coupons_code"),
        Index("ix_coupons_customer_seq", "customer_id", "seq"),
        Index("ix_coupons_redemption", "redemption_id"),
    )

    seq: Mapped[int] = mapped_column(Sequence64, primary_key=True, autoincrement=True)
    code: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(64))
    product_id: Mapped[str] = mapped_column(String(64))
    redemption_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("redemptions.redemption_id", name="fk_coupons_redemption")
    )
    face_value_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(16))
    issue_time: Mapped[datetime] = mapped_column(UtcDateTime)
    expire_time: Mapped[datetime] = mapped_column(UtcDateTime)
    used_order_id: Mapped[str] = mapped_column(String(64))
    use_time: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    refund_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class RefundRow(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("refund_id", name="uq_refunds_refund_id"),
        UniqueConstraint("request_id", name="uq_refunds_request_id"),
        Index("ix_refunds_redemption", "redemption_id"),
        Index("ix_refunds_state", "state"),
    )

    seq: Mapped[int] = mapped_column(Sequence64, primary_key=True, autoincrement=True)
    refund_id: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[str] = mapped_column(String(64))
    redemption_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("redemptions.redemption_id", name="fk_refunds_redemption")
    )
    # Space-separated canonical codes, in the order the request gave them.
    codes: Mapped[str] = mapped_column(Text)
    points: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    reversal_id: Mapped[str] = mapped_column(String(128))
    create_time: Mapped[datetime] = mapped_column(UtcDateTime)
    update_time: Mapped[datetime] = mapped_column(UtcDateTime)
    claim_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
