"""--self-test: break two invariants behind the services' backs, and check again."""

from __future__ import annotations

import asyncio
import random

import grpc

from chaos import checker
from chaos.databases import delete_coupon_row
from chaos.snapshot import take_snapshot
from chaos.system import ADMIN_TIMEOUT, Run
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from servicekit.devtools.credentials import bearer


async def sabotage(
    run: Run,
    to_bank: grpc.aio.Channel,
    to_shop: grpc.aio.Channel,
) -> list[checker.Violation]:
    """--self-test: break two invariants behind the services' backs, then check again.

    1. A deduction nobody redeemed: DeductPoints at cardpoints with a fresh request_id
       for a real account (a double charge, as a lost idempotency check would make).
    2. A coupon of a COMPLETED redemption deleted from the ecommerce database.
    """
    rng = random.Random(run.options.seed)
    snap = await take_snapshot(to_bank, to_shop, run.plan.customers)
    rich = max(snap.accounts.values(), key=lambda a: (a.balance, a.account_id))
    product = run.plan.products[0]
    bogus = f"chaos-selftest-{run.options.seed}"
    await cp_grpc.CardPointsServiceStub(to_bank).DeductPoints(
        cp.DeductPointsRequest(
            request_id=bogus,
            account_id=rich.account_id,
            points=product.points_per_coupon,
            coupon_quantity=1,
            points_per_coupon=product.points_per_coupon,
            merchant_id="chaos-selftest",
        ),
        timeout=ADMIN_TIMEOUT,
        metadata=bearer(run.credentials.service_token),
    )
    print(
        f"self-test: injected deduction {bogus} of {product.points_per_coupon} points "
        f"from {rich.account_id}"
    )
    completed = sorted(
        (r for r in snap.redemptions if r.state == ec.REDEMPTION_STATE_COMPLETED),
        key=lambda r: r.request_id,
    )
    if not completed:
        raise RuntimeError("self-test: the run completed no redemption to break")
    victim = rng.choice(completed)
    code = sorted(c.code for c in victim.coupons)[0]
    deleted = await asyncio.to_thread(delete_coupon_row, run.dbs.ecommerce, code)
    print(f"self-test: deleted coupon {code} of redemption {victim.redemption_id} ({deleted} row)")
    after_snap = await take_snapshot(to_bank, to_shop, run.plan.customers)
    after = checker.check(after_snap, run.plan.customers, run.journal)
    caught_deduction = any(bogus in v.message for v in after)
    caught_coupon = any(victim.redemption_id in v.message and v.invariant == "I4" for v in after)
    print(
        f"self-test: bogus deduction {'caught' if caught_deduction else 'MISSED'}, "
        f"deleted coupon {'caught' if caught_coupon else 'MISSED'}"
    )
    return after
