"""The card-points schema as typed SQLAlchemy models; migrations/ creates the same tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from servicekit.columns import UtcDateTime
from servicekit.outbox import define_tables

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid).
Sequence64 = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


# The transactional outbox and its per-aggregate sequence counters (servicekit.outbox).
OUTBOX = define_tables(Base.metadata)


class AccountRow(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="ck_accounts_balance_nonnegative"),)

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder_name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    balance: Mapped[int] = mapped_column(BigInteger)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(UtcDateTime(timezone=True))


class LedgerEntryRow(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (Index("ix_ledger_entries_account_seq", "account_id", "seq"),)

    seq: Mapped[int] = mapped_column(Sequence64, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(32), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    type: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    request_id: Mapped[str] = mapped_column(String(128))
    reference_id: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime] = mapped_column(UtcDateTime(timezone=True))


class DeductionRow(Base):
    __tablename__ = "deductions"
    __table_args__ = (
        CheckConstraint(
            "reversed_points >= 0 AND reversed_points <= points",
            name="ck_deductions_reversed_within_points",
        ),
        Index("ix_deductions_create_time", "create_time"),
    )

    seq: Mapped[int] = mapped_column(Sequence64, primary_key=True, autoincrement=True)
    deduction_id: Mapped[str] = mapped_column(String(32), unique=True)
    request_id: Mapped[str] = mapped_column(String(128), unique=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.account_id"))
    points: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reversed_points: Mapped[int] = mapped_column(BigInteger)
    coupon_quantity: Mapped[int] = mapped_column(BigInteger)
    points_per_coupon: Mapped[int] = mapped_column(BigInteger)
    merchant_id: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime] = mapped_column(UtcDateTime(timezone=True))
    update_time: Mapped[datetime] = mapped_column(UtcDateTime(timezone=True))


class ReversalRow(Base):
    __tablename__ = "reversals"

    seq: Mapped[int] = mapped_column(Sequence64, primary_key=True, autoincrement=True)
    reversal_id: Mapped[str] = mapped_column(String(32), unique=True)
    request_id: Mapped[str] = mapped_column(String(128), unique=True)
    deduction_id: Mapped[str] = mapped_column(ForeignKey("deductions.deduction_id"), index=True)
    points: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime(timezone=True))


class IdempotencyRecordRow(Base):
    __tablename__ = "idempotency_records"

    operation: Mapped[str] = mapped_column(String(16), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(Text)
    resource_id: Mapped[str | None] = mapped_column(String(32))
    refusal_reason: Mapped[str | None] = mapped_column(String(64))
    refusal_message: Mapped[str] = mapped_column(Text)
    refusal_metadata: Mapped[str] = mapped_column(Text)
    create_time: Mapped[datetime] = mapped_column(UtcDateTime(timezone=True))
