"""Reads both systems through their RPCs: `take_snapshot` pages through everything the
run created, card accounts, their ledgers and every deduction (with reversals) at
cardpoints; every redemption (with coupons and refunds), every customer's coupons and
the unsettled operations at ecommerce."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from chaos.journal import Customer
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

PAGE = 1000
READ_TIMEOUT = 10.0
MAX_PAGES = 10_000


@dataclass
class Snapshot:
    accounts: dict[str, cp.Account] = field(default_factory=dict)
    ledgers: dict[str, list[cp.LedgerEntry]] = field(default_factory=dict)  # oldest first
    deductions: list[cp.Deduction] = field(default_factory=list)
    redemptions: list[ec.Redemption] = field(default_factory=list)  # ListRedemptions
    coupons: dict[str, list[ec.Coupon]] = field(default_factory=dict)  # ListCoupons
    exported: list[ec.ExportedRedemption] = field(default_factory=list)
    unsettled: list[ec.UnsettledOperation] = field(default_factory=list)

    @property
    def pending(self) -> int:
        """Unsettled operations, as ListUnsettled and the redemption/refund states say."""
        listed = {op.id for op in self.unsettled}
        pending = ec.REDEMPTION_STATE_PENDING
        states = {r.redemption_id for r in self.redemptions if r.state == pending}
        for item in self.exported:
            states.update(f.refund_id for f in item.refunds if f.state == ec.REFUND_STATE_PENDING)
        return len(listed | states)


async def _read(method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp], request: Req) -> Resp:
    """A read, resent a few times while a service is still coming up."""
    for attempt in range(20):
        try:
            return await method(request, timeout=READ_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            retryable = error.code() in (
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
            if not retryable or attempt == 19:
                raise
        await asyncio.sleep(0.25)
    raise AssertionError("unreachable")


async def _pages(
    method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
    request_for: Callable[[str], Req],
    next_token: Callable[[Resp], str],
) -> list[Resp]:
    """Every page of a listing, following next_page_token (bounded)."""
    pages: list[Resp] = []
    token = ""
    for _ in range(MAX_PAGES):
        page = await _read(method, request_for(token))
        pages.append(page)
        token = next_token(page)
        if not token:
            return pages
    raise RuntimeError(f"more than {MAX_PAGES} pages")


async def list_unsettled(channel: grpc.aio.Channel) -> list[ec.UnsettledOperation]:
    admin = ec_grpc.EcommerceAdminServiceStub(channel)
    answer = await _read(admin.ListUnsettled, ec.ListUnsettledRequest(page_size=PAGE))
    return list(answer.operations)


async def wait_settled(channel: grpc.aio.Channel, within: float) -> list[ec.UnsettledOperation]:
    """Poll ListUnsettled until it is empty or `within` seconds pass; the last answer."""
    deadline = time.monotonic() + within
    while True:
        left = await list_unsettled(channel)
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.5)


async def take_snapshot(
    cardpoints: grpc.aio.Channel, ecommerce: grpc.aio.Channel, customers: Sequence[Customer]
) -> Snapshot:
    bank = cp_grpc.CardPointsServiceStub(cardpoints)
    shop = ec_grpc.RedemptionServiceStub(ecommerce)
    admin = ec_grpc.EcommerceAdminServiceStub(ecommerce)
    snap = Snapshot()
    for customer in customers:
        await _read_customer(snap, bank, shop, customer)
    deductions = await _pages(
        bank.ListDeductions,
        lambda token: cp.ListDeductionsRequest(page_size=PAGE, page_token=token),
        lambda page: page.next_page_token,
    )
    snap.deductions = [d for p in deductions for d in p.deductions]
    exported = await _pages(
        admin.ExportRedemptions,
        lambda token: ec.ExportRedemptionsRequest(page_size=PAGE, page_token=token),
        lambda page: page.next_page_token,
    )
    snap.exported = [r for p in exported for r in p.redemptions]
    snap.unsettled = await list_unsettled(ecommerce)
    return snap


async def _read_customer(
    snap: Snapshot,
    bank: cp_grpc.CardPointsServiceAsyncStub,
    shop: ec_grpc.RedemptionServiceAsyncStub,
    customer: Customer,
) -> None:
    """One customer's card account with its ledger, redemptions and coupons."""
    account_id, customer_id = customer.account_id, customer.customer_id
    got = await _read(bank.GetAccount, cp.GetAccountRequest(account_id=account_id))
    snap.accounts[account_id] = got.account
    ledger = await _pages(
        bank.ListTransactions,
        lambda token: cp.ListTransactionsRequest(
            account_id=account_id, page_size=PAGE, page_token=token
        ),
        lambda page: page.next_page_token,
    )
    snap.ledgers[account_id] = [e for p in ledger for e in p.transactions][::-1]
    redemptions = await _pages(
        shop.ListRedemptions,
        lambda token: ec.ListRedemptionsRequest(
            customer_id=customer_id, page_size=PAGE, page_token=token
        ),
        lambda page: page.next_page_token,
    )
    snap.redemptions.extend(r for p in redemptions for r in p.redemptions)
    coupons = await _pages(
        shop.ListCoupons,
        lambda token: ec.ListCouponsRequest(
            customer_id=customer_id, page_size=PAGE, page_token=token
        ),
        lambda page: page.next_page_token,
    )
    snap.coupons[customer_id] = [c for p in coupons for c in p.coupons]
