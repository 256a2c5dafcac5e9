"""Both real servers on 127.0.0.1 port 0, on SQLite and PostgreSQL: concurrent and racing calls."""

from __future__ import annotations

import asyncio
import time

import grpc

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from servicekit.status import remote_error
from tests.ecommerce.grpc_system import TIMEOUT, System, refused


async def test_32_concurrent_redemptions_never_overdraw_and_coupons_match_deductions(
    system: System,
) -> None:
    account = await system.customer("alice", 20_000)
    await system.product()
    quantities = [1 + i % 3 for i in range(32)]  # 63 coupons wanted, 20 affordable

    outcomes = await asyncio.gather(
        *(system.redeem(f"burst-{i}", quantity=q) for i, q in enumerate(quantities)),
        return_exceptions=True,
    )

    completed = [o for o in outcomes if isinstance(o, pb.Redemption)]
    refusals = [remote_error(o) for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(completed) + len(refusals) == 32, outcomes
    assert {r.reason for r in refusals} <= {"INSUFFICIENT_POINTS"}
    assert completed and refusals
    assert all(r.state == pb.REDEMPTION_STATE_COMPLETED for r in completed)

    spent = sum(r.points for r in completed)
    balance = await system.balance(account)
    assert balance == 20_000 - spent >= 0
    deductions = [e for e in await system.ledger(account) if e.type == cpb.ENTRY_TYPE_DEDUCTION]
    assert sorted(e.request_id for e in deductions) == sorted(
        f"redemption:{r.redemption_id}" for r in completed
    )
    assert sum(-e.amount for e in deductions) == spent
    coupons = await system.coupons("alice")
    assert len({c.code for c in coupons}) == len(coupons) == sum(r.quantity for r in completed)
    assert {c.redemption_id for c in coupons} == {r.redemption_id for r in completed}
    failed = await system.redemption.ListRedemptions(
        pb.ListRedemptionsRequest(customer_id="alice", state=pb.REDEMPTION_STATE_FAILED),
        timeout=TIMEOUT,
    )
    assert len(failed.redemptions) == len(refusals)


async def test_racing_replays_of_one_request_id_deduct_once(system: System) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()

    outcomes = await asyncio.gather(*(system.redeem("same", quantity=2) for _ in range(8)))

    assert len({r.redemption_id for r in outcomes}) == 1
    assert {r.state for r in outcomes} == {pb.REDEMPTION_STATE_COMPLETED}
    assert await system.balance(account) == 8000
    assert len(await system.coupons("alice")) == 2
    deductions = [e for e in await system.ledger(account) if e.type == cpb.ENTRY_TYPE_DEDUCTION]
    assert len(deductions) == 1


async def test_racing_resumes_of_a_pending_redemption_issue_coupons_once(system: System) -> None:
    account = await system.customer("alice", 10_000)
    await system.product()
    port = await system.stop_cardpoints()
    down = await refused(system.redeem("r-1", quantity=3))
    assert down.reason == "POINTS_SYSTEM_UNAVAILABLE"
    await system.restart_cardpoints(port)

    deadline = time.monotonic() + 15
    while True:
        outcomes = await asyncio.gather(
            *(system.redeem("r-1", quantity=3) for _ in range(8)), return_exceptions=True
        )
        if all(isinstance(o, pb.Redemption) for o in outcomes):
            break
        assert time.monotonic() < deadline, "cardpoints never came back"
        await asyncio.sleep(0.2)

    assert len({o.redemption_id for o in outcomes if isinstance(o, pb.Redemption)}) == 1
    assert len(await system.coupons("alice")) == 3
    assert await system.balance(account) == 7000
    deductions = [e for e in await system.ledger(account) if e.type == cpb.ENTRY_TYPE_DEDUCTION]
    assert len(deductions) == 1


async def test_racing_uses_of_one_coupon_let_exactly_one_order_win(system: System) -> None:
    await system.customer("alice", 10_000)
    await system.product()
    [coupon] = (await system.redeem("r-1", quantity=1)).coupons

    outcomes = await asyncio.gather(
        *(
            system.redemption.UseCoupon(
                pb.UseCouponRequest(customer_id="alice", code=coupon.code, order_id=f"o-{i}"),
                timeout=TIMEOUT,
            )
            for i in range(8)
        ),
        return_exceptions=True,
    )

    winners = [o.coupon for o in outcomes if isinstance(o, pb.UseCouponResponse)]
    losers = [remote_error(o) for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 7
    assert {e.reason for e in losers} == {"COUPON_ALREADY_USED"}
    [stored] = await system.coupons("alice")
    assert (stored.state, stored.used_order_id) == (pb.COUPON_STATE_USED, winners[0].used_order_id)
