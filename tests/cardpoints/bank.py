"""A client of a real card-points server for the RPC tests, with shorthands for common calls."""

from __future__ import annotations

import grpc

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as pb_grpc


class Bank:
    """Both card-points stubs over one channel, with shorthands for the common calls."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.points = pb_grpc.CardPointsServiceStub(channel)
        self.admin = pb_grpc.CardPointsAdminServiceStub(channel)

    async def account(self, account_id: str = "card-1", points: int = 0) -> pb.Account:
        await self.admin.OpenAccount(
            pb.OpenAccountRequest(account_id=account_id, holder_name="Li Lei"), timeout=10
        )
        if points:
            await self.admin.CreditPoints(
                pb.CreditPointsRequest(
                    request_id=f"seed-{account_id}", account_id=account_id, points=points
                ),
                timeout=10,
            )
        return await self.balance_of(account_id)

    async def balance_of(self, account_id: str = "card-1") -> pb.Account:
        response = await self.points.GetAccount(
            pb.GetAccountRequest(account_id=account_id), timeout=10
        )
        return response.account

    def deduct(
        self, request_id: str, points: int, account_id: str = "card-1", per: int = 0
    ) -> pb.DeductPointsRequest:
        per = per or points
        return pb.DeductPointsRequest(
            request_id=request_id,
            account_id=account_id,
            points=points,
            coupon_quantity=points // per,
            points_per_coupon=per,
            merchant_id="shop-1",
        )

    async def ledger(self, account_id: str = "card-1") -> list[pb.LedgerEntry]:
        entries: list[pb.LedgerEntry] = []
        token = ""
        while True:
            page = await self.points.ListTransactions(
                pb.ListTransactionsRequest(account_id=account_id, page_size=7, page_token=token),
                timeout=10,
            )
            entries += page.transactions
            token = page.next_page_token
            if not token:
                return entries


async def assert_conserved(bank: Bank, account_id: str = "card-1") -> None:
    """I2: credits - deductions + reversals (the signed ledger) equals the balance."""
    account = await bank.balance_of(account_id)
    entries = await bank.ledger(account_id)
    assert sum(e.amount for e in entries) == account.balance
    assert account.balance >= 0
    if entries:
        assert entries[0].balance_after == account.balance
