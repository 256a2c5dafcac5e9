"""gRPC servicers: protobuf in, a use case on a worker thread, protobuf out."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from cardpoints.domain import model
from cardpoints.entrypoints.messages import (
    ACCOUNT_STATES,
    account_pb,
    account_state,
    deduction_pb,
    entry_pb,
    reversal_pb,
)
from cardpoints.service_layer import services
from cardpoints.service_layer.ports import UnitOfWork
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as pb_grpc
from servicekit.states import state_name
from servicekit.status import rpc
from servicekit.steps import Steps
from servicekit.timestamps import optional_time

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class _Base:
    def __init__(self, steps: Steps[UnitOfWork]) -> None:
        self._steps = steps


class CardPointsServicer(_Base, pb_grpc.CardPointsServiceServicer):
    @rpc
    async def GetAccount(
        self, request: pb.GetAccountRequest, context: Context
    ) -> pb.GetAccountResponse:
        account = await self._steps.read(services.get_account, model.GetAccount(request.account_id))
        return pb.GetAccountResponse(account=account_pb(account))

    @rpc
    async def DeductPoints(
        self, request: pb.DeductPointsRequest, context: Context
    ) -> pb.DeductPointsResponse:
        cmd = model.DeductPoints(
            request_id=request.request_id,
            account_id=request.account_id,
            points=request.points,
            coupon_quantity=request.coupon_quantity,
            points_per_coupon=request.points_per_coupon,
            merchant_id=request.merchant_id,
        )
        deduction = await self._steps.write(services.deduct_points, cmd)
        return pb.DeductPointsResponse(deduction=deduction_pb(deduction))

    @rpc
    async def GetDeduction(
        self, request: pb.GetDeductionRequest, context: Context
    ) -> pb.GetDeductionResponse:
        lookup = model.GetDeduction(
            deduction_id=request.deduction_id, request_id=request.request_id
        )
        deduction = await self._steps.read(services.get_deduction, lookup)
        return pb.GetDeductionResponse(deduction=deduction_pb(deduction))

    @rpc
    async def ReverseDeduction(
        self, request: pb.ReverseDeductionRequest, context: Context
    ) -> pb.ReverseDeductionResponse:
        cmd = model.ReverseDeduction(
            request_id=request.request_id,
            deduction_request_id=request.deduction_request_id,
            points=request.points,
            reason=request.reason,
        )
        reversal, deduction = await self._steps.write(services.reverse_deduction, cmd)
        return pb.ReverseDeductionResponse(
            reversal=reversal_pb(reversal), deduction=deduction_pb(deduction)
        )

    @rpc
    async def ListTransactions(
        self, request: pb.ListTransactionsRequest, context: Context
    ) -> pb.ListTransactionsResponse:
        page = await self._steps.read(
            services.list_transactions,
            model.ListTransactions(request.account_id, request.page_size, request.page_token),
        )
        return pb.ListTransactionsResponse(
            transactions=[entry_pb(e) for e in page.items], next_page_token=page.next_page_token
        )

    @rpc
    async def ListDeductions(
        self, request: pb.ListDeductionsRequest, context: Context
    ) -> pb.ListDeductionsResponse:
        cmd = model.ListDeductions(
            start=optional_time(request, "start_time"),
            end=optional_time(request, "end_time"),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        page = await self._steps.read(services.list_deductions, cmd)
        return pb.ListDeductionsResponse(
            deductions=[deduction_pb(d) for d in page.items],
            next_page_token=page.next_page_token,
        )


class CardPointsAdminServicer(_Base, pb_grpc.CardPointsAdminServiceServicer):
    @rpc
    async def OpenAccount(
        self, request: pb.OpenAccountRequest, context: Context
    ) -> pb.OpenAccountResponse:
        cmd = model.OpenAccount(account_id=request.account_id, holder_name=request.holder_name)
        account = await self._steps.write(services.open_account, cmd)
        return pb.OpenAccountResponse(account=account_pb(account))

    @rpc
    async def CreditPoints(
        self, request: pb.CreditPointsRequest, context: Context
    ) -> pb.CreditPointsResponse:
        cmd = model.CreditPoints(
            request_id=request.request_id,
            account_id=request.account_id,
            points=request.points,
            reason=request.reason,
        )
        entry, account = await self._steps.write(services.credit_points, cmd)
        return pb.CreditPointsResponse(entry=entry_pb(entry), account=account_pb(account))

    @rpc
    async def SetAccountState(
        self, request: pb.SetAccountStateRequest, context: Context
    ) -> pb.SetAccountStateResponse:
        cmd = model.SetAccountState(
            account_id=request.account_id,
            state=account_state(request.state),
            reason=request.reason,
        )
        account = await self._steps.write(services.set_account_state, cmd)
        return pb.SetAccountStateResponse(account=account_pb(account))

    @rpc
    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Context
    ) -> pb.ListAccountsResponse:
        page = await self._steps.read(
            services.list_accounts,
            model.ListAccounts(
                state_name(request.state, ACCOUNT_STATES), request.page_size, request.page_token
            ),
        )
        return pb.ListAccountsResponse(
            accounts=[account_pb(a) for a in page.items], next_page_token=page.next_page_token
        )
