"""Card-points requests racing through a real server: the database's guards hold on both.

A fake runs one unit of work at a time, so only a real database shows that concurrent
deductions cannot overdraw and concurrent reversals cannot pass the deduction.
"""

from __future__ import annotations

import asyncio

import grpc

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from servicekit.status import remote_error
from tests.cardpoints.bank import Bank, assert_conserved


async def test_concurrent_reversals_cannot_exceed_the_deduction(bank: Bank) -> None:
    await bank.account(points=1000)
    await bank.points.DeductPoints(bank.deduct("r-race", 1000, per=100), timeout=10)
    calls = [
        bank.points.ReverseDeduction(
            pb.ReverseDeductionRequest(
                request_id=f"race-{i}", deduction_request_id="r-race", points=300
            ),
            timeout=30,
        )
        for i in range(8)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok = [r for r in results if isinstance(r, pb.ReverseDeductionResponse)]
    assert len(ok) == 3
    assert (await bank.balance_of()).balance == 900
    await assert_conserved(bank)


async def test_fifty_concurrent_deductions_cannot_overdraw(bank: Bank) -> None:
    await bank.account(points=2000)
    calls = [bank.points.DeductPoints(bank.deduct(f"c-{i}", 100), timeout=60) for i in range(50)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    ok = [r for r in results if isinstance(r, pb.DeductPointsResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 20
    assert len(refused) == 30
    assert {remote_error(e).reason for e in refused} == {"INSUFFICIENT_POINTS"}
    assert (await bank.balance_of()).balance == 0
    balances = sorted(r.deduction.balance_after for r in ok)
    assert balances == list(range(0, 2000, 100))  # every step seen once, none negative
    await assert_conserved(bank)


async def test_concurrent_duplicates_make_one_deduction(bank: Bank) -> None:
    await bank.account(points=2000)
    request = bank.deduct("dup-1", 100)
    results = await asyncio.gather(
        *(bank.points.DeductPoints(request, timeout=60) for _ in range(20))
    )
    assert len({r.deduction.deduction_id for r in results}) == 1
    assert (await bank.balance_of()).balance == 1900
    assert len(await bank.ledger()) == 2
    await assert_conserved(bank)
