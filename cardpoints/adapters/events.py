"""Adapters room: card-points domain events as the protobuf events the outbox publishes."""

from __future__ import annotations

from cardpoints.domain.events import (
    AccountOpened,
    AccountStateChanged,
    PointsCredited,
    PointsDeducted,
    PointsReversed,
)
from cardpoints.domain.model import AccountState
from pointsbridge.cardpoints.v1 import cardpoints_pb2
from pointsbridge.events.v1 import cardpoints_events_pb2 as pb
from servicekit.outbox import Outgoing
from servicekit.timestamps import to_timestamp

SERVICE = "cardpoints"
ACCOUNT = "account"


_STATES = {
    AccountState.ACTIVE: cardpoints_pb2.ACCOUNT_STATE_ACTIVE,
    AccountState.FROZEN: cardpoints_pb2.ACCOUNT_STATE_FROZEN,
    AccountState.CLOSED: cardpoints_pb2.ACCOUNT_STATE_CLOSED,
}


def _state(state: AccountState) -> cardpoints_pb2.AccountState:
    return _STATES[state]


def encode(event: object) -> Outgoing | None:
    """The published form of `event`, or None for those only metrics count (refusals)."""
    match event:
        case PointsDeducted(deduction=d):
            return Outgoing(
                ACCOUNT,
                d.account_id,
                "points_deducted",
                pb.PointsDeducted(
                    account_id=d.account_id,
                    deduction_id=d.deduction_id,
                    request_id=d.request_id,
                    points=d.points,
                    balance_after=d.balance_after,
                    coupon_quantity=d.coupon_quantity,
                    points_per_coupon=d.points_per_coupon,
                    merchant_id=d.merchant_id,
                    deduct_time=to_timestamp(d.create_time),
                ),
                d.create_time,
            )
        case PointsReversed(account_id=account_id, reversal=r):
            return Outgoing(
                ACCOUNT,
                account_id,
                "deduction_reversed",
                pb.DeductionReversed(
                    account_id=account_id,
                    reversal_id=r.reversal_id,
                    request_id=r.request_id,
                    deduction_id=r.deduction_id,
                    deduction_request_id=r.deduction_request_id,
                    points=r.points,
                    balance_after=r.balance_after,
                    reverse_time=to_timestamp(r.create_time),
                ),
                r.create_time,
            )
        case PointsCredited(entry=e):
            return Outgoing(
                ACCOUNT,
                e.account_id,
                "points_credited",
                pb.PointsCredited(
                    account_id=e.account_id,
                    entry_id=e.entry_id,
                    request_id=e.request_id,
                    points=e.amount,
                    balance_after=e.balance_after,
                    reason=e.reason,
                    credit_time=to_timestamp(e.create_time),
                ),
                e.create_time,
            )
        case AccountOpened(account=a):
            return Outgoing(
                ACCOUNT,
                a.account_id,
                "account_opened",
                pb.AccountOpened(
                    account_id=a.account_id,
                    state=_state(a.state),
                    open_time=to_timestamp(a.create_time),
                ),
                a.create_time,
            )
        case AccountStateChanged(account=a, previous_state=previous, reason=reason):
            return Outgoing(
                ACCOUNT,
                a.account_id,
                "account_state_changed",
                pb.AccountStateChanged(
                    account_id=a.account_id,
                    previous_state=_state(previous),
                    state=_state(a.state),
                    reason=reason,
                    change_time=to_timestamp(a.update_time),
                ),
                a.update_time,
            )
    return None
