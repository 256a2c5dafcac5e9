"""Entrypoints room: card-points domain objects as protobuf messages, and request states back."""

from __future__ import annotations

from cardpoints.domain import model
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from servicekit.timestamps import to_timestamp

ACCOUNT_STATES = {
    model.AccountState.ACTIVE: pb.ACCOUNT_STATE_ACTIVE,
    model.AccountState.FROZEN: pb.ACCOUNT_STATE_FROZEN,
    model.AccountState.CLOSED: pb.ACCOUNT_STATE_CLOSED,
}
DEDUCTION_STATES = {
    model.DeductionState.COMPLETED: pb.DEDUCTION_STATE_COMPLETED,
    model.DeductionState.PARTIALLY_REVERSED: pb.DEDUCTION_STATE_PARTIALLY_REVERSED,
    model.DeductionState.REVERSED: pb.DEDUCTION_STATE_REVERSED,
}
ENTRY_TYPES = {
    model.EntryType.CREDIT: pb.ENTRY_TYPE_CREDIT,
    model.EntryType.DEDUCTION: pb.ENTRY_TYPE_DEDUCTION,
    model.EntryType.REVERSAL: pb.ENTRY_TYPE_REVERSAL,
}
_ACCOUNT_STATES_IN: dict[int, model.AccountState] = {
    number: state for state, number in ACCOUNT_STATES.items()
}


def account_pb(account: model.Account) -> pb.Account:
    return pb.Account(
        account_id=account.account_id,
        holder_name=account.holder_name,
        state=ACCOUNT_STATES[account.state],
        balance=account.balance,
        create_time=to_timestamp(account.create_time),
        update_time=to_timestamp(account.update_time),
    )


def reversal_pb(reversal: model.Reversal) -> pb.Reversal:
    return pb.Reversal(
        reversal_id=reversal.reversal_id,
        request_id=reversal.request_id,
        deduction_id=reversal.deduction_id,
        deduction_request_id=reversal.deduction_request_id,
        points=reversal.points,
        balance_after=reversal.balance_after,
        create_time=to_timestamp(reversal.create_time),
    )


def deduction_pb(deduction: model.Deduction) -> pb.Deduction:
    return pb.Deduction(
        deduction_id=deduction.deduction_id,
        request_id=deduction.request_id,
        account_id=deduction.account_id,
        points=deduction.points,
        balance_after=deduction.balance_after,
        state=DEDUCTION_STATES[deduction.state],
        reversed_points=deduction.reversed_points,
        coupon_quantity=deduction.coupon_quantity,
        points_per_coupon=deduction.points_per_coupon,
        merchant_id=deduction.merchant_id,
        create_time=to_timestamp(deduction.create_time),
        update_time=to_timestamp(deduction.update_time),
        reversals=[reversal_pb(r) for r in deduction.reversals],
    )


def entry_pb(entry: model.LedgerEntry) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        entry_id=entry.entry_id,
        account_id=entry.account_id,
        type=ENTRY_TYPES[entry.type],
        amount=entry.amount,
        balance_after=entry.balance_after,
        request_id=entry.request_id,
        reference_id=entry.reference_id,
        reason=entry.reason,
        create_time=to_timestamp(entry.create_time),
    )


def account_state(value: int) -> model.AccountState | None:
    """The domain state a request's number names; None for UNSPECIFIED or an unknown one."""
    return _ACCOUNT_STATES_IN.get(value)
