"""SQLAlchemy repositories for the card-points unit of work."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from cardpoints.adapters import events
from cardpoints.adapters.orm import (
    OUTBOX,
    AccountRow,
    DeductionRow,
    IdempotencyRecordRow,
    LedgerEntryRow,
    ReversalRow,
)
from cardpoints.domain.model import (
    Account,
    AccountState,
    Deduction,
    EntryType,
    IdempotencyRecord,
    LedgerEntry,
    Reversal,
)
from servicekit.clock import as_utc
from servicekit.compiled import CompiledStatement, Connector
from servicekit.db import SqlUnitOfWork
from servicekit.outbox import OutboxWriter
from servicekit.validation import INT64_MAX

# The statements of the deduction path are built once, as Core statements on the tables;
# those a deduction runs are compiled once and run on the DBAPI cursor of the session's
# connection (servicekit.compiled): building, caching and executing a statement through
# SQLAlchemy per call costs more CPU than SQLite takes to run it.
_ACCOUNTS = cast(Table, AccountRow.__table__)
_LEDGER = cast(Table, LedgerEntryRow.__table__)
_DEDUCTIONS = cast(Table, DeductionRow.__table__)
_IDEMPOTENCY = cast(Table, IdempotencyRecordRow.__table__)

_ACCOUNT = select(
    _ACCOUNTS.c.account_id,
    _ACCOUNTS.c.holder_name,
    _ACCOUNTS.c.state,
    _ACCOUNTS.c.balance,
    _ACCOUNTS.c.create_time,
    _ACCOUNTS.c.update_time,
)
_GET_ACCOUNT = _ACCOUNT.where(_ACCOUNTS.c.account_id == bindparam("account_id"))
# The guard lives in the WHERE clause: concurrent writers re-check it on the locked
# row, so no interleaving can overdraw (I1).
_DEBIT_STATEMENT = (
    update(_ACCOUNTS)
    .where(
        _ACCOUNTS.c.account_id == bindparam("debited_account"),
        _ACCOUNTS.c.state == AccountState.ACTIVE.value,
        _ACCOUNTS.c.balance >= bindparam("points"),
    )
    .values(balance=_ACCOUNTS.c.balance - bindparam("points"), update_time=bindparam("now"))
    .returning(_ACCOUNTS.c.balance)
)
_DEBIT = CompiledStatement(_DEBIT_STATEMENT)
_ADD_ACCOUNT = insert(_ACCOUNTS)
_ADD_ENTRY = CompiledStatement(insert(_LEDGER))
_ADD_DEDUCTION = CompiledStatement(insert(_DEDUCTIONS))
_ADD_RECORD = CompiledStatement(insert(_IDEMPOTENCY))
_GET_RECORD = CompiledStatement(
    select(_IDEMPOTENCY).where(
        _IDEMPOTENCY.c.operation == bindparam("operation"),
        _IDEMPOTENCY.c.request_id == bindparam("request_id"),
    )
)


def _account(row: Row[Any]) -> Account:
    return Account(
        account_id=row.account_id,
        holder_name=row.holder_name,
        state=AccountState(row.state),
        balance=row.balance,
        create_time=as_utc(row.create_time),
        update_time=as_utc(row.update_time),
    )


class SqlAccountRepository:
    def __init__(self, session: Session, connector: Connector | None = None) -> None:
        self._session = session
        self._connection = connector or Connector(session)

    def get(self, account_id: str) -> Account | None:
        row = self._connection().execute(_GET_ACCOUNT, {"account_id": account_id}).first()
        return None if row is None else _account(row)

    def add(self, account: Account) -> None:
        self._connection().execute(
            _ADD_ACCOUNT,
            {
                "account_id": account.account_id,
                "holder_name": account.holder_name,
                "state": account.state.value,
                "balance": account.balance,
                "create_time": account.create_time,
                "update_time": account.update_time,
            },
        )

    def debit_if_covered(self, account_id: str, points: int, now: datetime) -> int | None:
        result = _DEBIT.first(
            self._connection(),
            {"debited_account": account_id, "points": points, "now": now},
        )
        return None if result is None else int(result[0])

    def credit_within_int64(self, account_id: str, points: int, now: datetime) -> int | None:
        result = self._session.execute(
            update(AccountRow)
            .where(AccountRow.account_id == account_id, AccountRow.balance <= INT64_MAX - points)
            .values(balance=AccountRow.balance + points, update_time=now)
            .returning(AccountRow.balance)
        ).first()
        return None if result is None else int(result[0])

    def set_state(self, account_id: str, state: AccountState, now: datetime) -> None:
        self._session.execute(
            update(AccountRow)
            .where(AccountRow.account_id == account_id)
            .values(state=state.value, update_time=now)
        )

    def list(
        self, state: AccountState | None, after: str | None, limit: int
    ) -> list[tuple[str, Account]]:
        query = _ACCOUNT
        if state is not None:
            query = query.where(_ACCOUNTS.c.state == state.value)
        if after is not None:
            query = query.where(_ACCOUNTS.c.account_id > after)
        rows = self._connection().execute(query.order_by(_ACCOUNTS.c.account_id).limit(limit))
        return [(row.account_id, _account(row)) for row in rows]


def _entry(row: LedgerEntryRow) -> LedgerEntry:
    return LedgerEntry(
        entry_id=row.entry_id,
        account_id=row.account_id,
        type=EntryType(row.type),
        amount=row.amount,
        balance_after=row.balance_after,
        request_id=row.request_id,
        reference_id=row.reference_id,
        reason=row.reason,
        create_time=as_utc(row.create_time),
    )


class SqlLedgerRepository:
    def __init__(self, session: Session, connector: Connector | None = None) -> None:
        self._session = session
        self._connection = connector or Connector(session)

    def add(self, entry: LedgerEntry) -> None:
        _ADD_ENTRY.execute(
            self._connection(),
            {
                "entry_id": entry.entry_id,
                "account_id": entry.account_id,
                "type": entry.type.value,
                "amount": entry.amount,
                "balance_after": entry.balance_after,
                "request_id": entry.request_id,
                "reference_id": entry.reference_id,
                "reason": entry.reason,
                "create_time": entry.create_time,
            },
        )

    def get(self, entry_id: str) -> LedgerEntry | None:
        row = self._session.scalars(
            select(LedgerEntryRow).where(LedgerEntryRow.entry_id == entry_id)
        ).first()
        return None if row is None else _entry(row)

    def list(
        self, account_id: str, before: int | None, limit: int
    ) -> list[tuple[int, LedgerEntry]]:
        query = select(LedgerEntryRow).where(LedgerEntryRow.account_id == account_id)
        if before is not None:
            query = query.where(LedgerEntryRow.seq < before)
        rows = self._session.scalars(query.order_by(LedgerEntryRow.seq.desc()).limit(limit))
        return [(row.seq, _entry(row)) for row in rows]


def _reversal(row: ReversalRow, deduction_request_id: str) -> Reversal:
    return Reversal(
        reversal_id=row.reversal_id,
        request_id=row.request_id,
        deduction_id=row.deduction_id,
        deduction_request_id=deduction_request_id,
        points=row.points,
        balance_after=row.balance_after,
        create_time=as_utc(row.create_time),
    )


class SqlDeductionRepository:
    def __init__(self, session: Session, connector: Connector | None = None) -> None:
        self._session = session
        self._connection = connector or Connector(session)

    def add(self, deduction: Deduction) -> None:
        _ADD_DEDUCTION.execute(
            self._connection(),
            {
                "deduction_id": deduction.deduction_id,
                "request_id": deduction.request_id,
                "account_id": deduction.account_id,
                "points": deduction.points,
                "balance_after": deduction.balance_after,
                "reversed_points": deduction.reversed_points,
                "coupon_quantity": deduction.coupon_quantity,
                "points_per_coupon": deduction.points_per_coupon,
                "merchant_id": deduction.merchant_id,
                "create_time": deduction.create_time,
                "update_time": deduction.update_time,
            },
        )

    def _with_reversals(self, rows: list[DeductionRow]) -> list[Deduction]:
        if not rows:
            return []
        by_id: dict[str, list[Reversal]] = {row.deduction_id: [] for row in rows}
        request_ids = {row.deduction_id: row.request_id for row in rows}
        reversals = self._session.scalars(
            select(ReversalRow).where(ReversalRow.deduction_id.in_(by_id)).order_by(ReversalRow.seq)
        )
        for rev in reversals:
            by_id[rev.deduction_id].append(_reversal(rev, request_ids[rev.deduction_id]))
        return [
            Deduction(
                deduction_id=row.deduction_id,
                request_id=row.request_id,
                account_id=row.account_id,
                points=row.points,
                balance_after=row.balance_after,
                reversed_points=row.reversed_points,
                coupon_quantity=row.coupon_quantity,
                points_per_coupon=row.points_per_coupon,
                merchant_id=row.merchant_id,
                create_time=as_utc(row.create_time),
                update_time=as_utc(row.update_time),
                reversals=tuple(by_id[row.deduction_id]),
            )
            for row in rows
        ]

    def _one(self, *criteria: Any) -> Deduction | None:
        rows = list(
            self._session.scalars(
                select(DeductionRow).where(*criteria).execution_options(populate_existing=True)
            )
        )
        found = self._with_reversals(rows)
        return found[0] if found else None

    def get(self, deduction_id: str) -> Deduction | None:
        return self._one(DeductionRow.deduction_id == deduction_id)

    def get_by_request_id(self, request_id: str) -> Deduction | None:
        return self._one(DeductionRow.request_id == request_id)

    def reverse_within(self, deduction_id: str, points: int, now: datetime) -> bool:
        result = self._session.execute(
            update(DeductionRow)
            .where(
                DeductionRow.deduction_id == deduction_id,
                DeductionRow.reversed_points <= DeductionRow.points - points,
            )
            .values(reversed_points=DeductionRow.reversed_points + points, update_time=now)
            .returning(DeductionRow.reversed_points)
        ).first()
        return result is not None

    def add_reversal(self, reversal: Reversal) -> None:
        self._session.execute(
            insert(ReversalRow).values(
                reversal_id=reversal.reversal_id,
                request_id=reversal.request_id,
                deduction_id=reversal.deduction_id,
                points=reversal.points,
                balance_after=reversal.balance_after,
                create_time=reversal.create_time,
            )
        )

    def get_reversal(self, reversal_id: str) -> Reversal | None:
        row = self._session.execute(
            select(ReversalRow, DeductionRow.request_id)
            .join(DeductionRow, DeductionRow.deduction_id == ReversalRow.deduction_id)
            .where(ReversalRow.reversal_id == reversal_id)
        ).first()
        return None if row is None else _reversal(row[0], row[1])

    def list_window(
        self, start: datetime | None, end: datetime, after: int | None, limit: int
    ) -> list[tuple[int, Deduction]]:
        query = select(DeductionRow).where(DeductionRow.create_time < end)
        if start is not None:
            query = query.where(DeductionRow.create_time >= start)
        if after is not None:
            query = query.where(DeductionRow.seq > after)
        rows = list(self._session.scalars(query.order_by(DeductionRow.seq).limit(limit)))
        return list(zip((row.seq for row in rows), self._with_reversals(rows), strict=True))


class SqlIdempotencyRepository:
    def __init__(self, session: Session, connector: Connector | None = None) -> None:
        self._session = session
        self._connection = connector or Connector(session)

    def get(self, operation: str, request_id: str) -> IdempotencyRecord | None:
        row = _GET_RECORD.first(
            self._connection(), {"operation": operation, "request_id": request_id}
        )
        if row is None:
            return None
        return IdempotencyRecord(
            operation=row.operation,
            request_id=row.request_id,
            fingerprint=row.fingerprint,
            resource_id=row.resource_id,
            refusal_reason=row.refusal_reason,
            refusal_message=row.refusal_message,
            refusal_metadata=json.loads(row.refusal_metadata),
            create_time=as_utc(row.create_time),
        )

    def add(self, record: IdempotencyRecord) -> None:
        _ADD_RECORD.execute(
            self._connection(),
            {
                "operation": record.operation,
                "request_id": record.request_id,
                "fingerprint": record.fingerprint,
                "resource_id": record.resource_id,
                "refusal_reason": record.refusal_reason,
                "refusal_message": record.refusal_message,
                "refusal_metadata": json.dumps(record.refusal_metadata, sort_keys=True),
                "create_time": record.create_time,
            },
        )


class CardpointsUnitOfWork(SqlUnitOfWork):
    outbox = OutboxWriter(OUTBOX, events.SERVICE, events.encode)
    accounts: SqlAccountRepository
    ledger: SqlLedgerRepository
    deductions: SqlDeductionRepository
    idempotency: SqlIdempotencyRepository

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        super().__init__(sessions)

    def _start(self, session: Session) -> None:
        self.accounts = SqlAccountRepository(session, self.connection)
        self.ledger = SqlLedgerRepository(session, self.connection)
        self.deductions = SqlDeductionRepository(session, self.connection)
        self.idempotency = SqlIdempotencyRepository(session, self.connection)
