"""Adapters room: the gRPC client of the card-points service, the only code that calls it."""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from ecommerce.domain.card_points import (
    AccountState,
    CardAccount,
    Deduction,
    DeductionOrder,
    Reversal,
    ReversalOrder,
)
from ecommerce.domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    DeductionNotFound,
    DomainError,
    InsufficientPoints,
    InvalidField,
    PointsMismatch,
    PointsSystemCredentialsRejected,
    PointsSystemUnavailable,
    ReversalExceedsDeduction,
)
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as pb_grpc
from servicekit.observability import outgoing_metadata
from servicekit.status import remote_error
from servicekit.targets import balanced_options, grpc_target, tls_name
from servicekit.tls import ClientTransport
from servicekit.token_file import TokenFile

log = logging.getLogger(__name__)

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)

# Definite answers: cardpoints changed nothing and will give the same answer again.
REFUSALS: dict[str, type[DomainError]] = {
    cls.reason: cls
    for cls in (
        AccountNotFound,
        AccountFrozen,
        AccountClosed,
        InsufficientPoints,
        PointsMismatch,
        DeductionNotFound,
        ReversalExceedsDeduction,
        InvalidField,
    )
}

_ACCOUNT_STATES = {
    pb.ACCOUNT_STATE_ACTIVE: AccountState.ACTIVE,
    pb.ACCOUNT_STATE_FROZEN: AccountState.FROZEN,
    pb.ACCOUNT_STATE_CLOSED: AccountState.CLOSED,
}

# Cardpoints refused this service's own credentials: nothing was done there.
_CREDENTIALS_REFUSED = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)

CARDPOINTS_SERVICE = pb.DESCRIPTOR.services_by_name["CardPointsService"].full_name


def _deduction(message: pb.Deduction) -> Deduction:
    return Deduction(
        deduction_id=message.deduction_id,
        request_id=message.request_id,
        account_id=message.account_id,
        points=message.points,
        balance_after=message.balance_after,
        reversed_points=message.reversed_points,
    )


# Who this service is to the card-points system, on every deduction it asks for.
DEFAULT_MERCHANT_ID = "pointsbridge-ecommerce"


class GrpcPointsGateway:
    """PointsGateway over one grpc.aio channel to cardpoints.

    Every call carries a deadline. UNAVAILABLE means the request never reached a
    server that acted on it, so it is resent (same request, same request_id) a
    few times with exponential backoff. Cardpoints' refusals become the domain
    errors with the same reason; everything else (a deadline, UNAVAILABLE to the
    end, an INTERNAL, a reason we do not know) is an unknown outcome, which
    callers resolve by resending the same idempotent request later.

    The token, when there is one, may come from a TokenFile: it is re-read when the
    file changes, and at once when cardpoints refuses it, and a refused call is sent
    again with the new token. Credentials refused to the end are
    PointsSystemCredentialsRejected, not an unknown outcome: nothing was done.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        timeout: float,
        attempts: int = 3,
        backoff: float = 0.05,
        token: str | TokenFile = "",
        merchant_id: str = DEFAULT_MERCHANT_ID,
    ) -> None:
        self.merchant_id = merchant_id
        self._channel = channel
        self._stub = pb_grpc.CardPointsServiceStub(channel)
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._token = token

    def _credentials(self) -> tuple[tuple[str, str], ...]:
        token = self._token.token() if isinstance(self._token, TokenFile) else self._token
        return (("authorization", f"Bearer {token}"),) if token else ()

    def _fresh_token(self) -> bool:
        """After a refusal: whether the token file now holds another token to try."""
        return isinstance(self._token, TokenFile) and self._token.reload()

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        timeout: float,
        attempts: int = 3,
        transport: ClientTransport | None = None,
        token: str | TokenFile = "",
        server_name: str = "",
        merchant_id: str = DEFAULT_MERCHANT_ID,
    ) -> GrpcPointsGateway:
        """A gateway whose channel connects lazily, on the first call.

        `address` is one host:port (every address it resolves to is used), or several
        ip:port separated by commas: calls go round robin to the replicas whose health
        check says SERVING (servicekit.targets). With TLS, the client certificate is
        this service's identity, and each replica's certificate must be valid for
        `server_name` (by default the host of the first address); without TLS, the
        service token is the identity.
        """
        target = grpc_target(address, "--cardpoints-address")
        # Every replica's certificate is checked against one name: `server_name`, or
        # the (first) host of `address`.
        channel = (transport or ClientTransport()).channel(
            target,
            options=balanced_options(CARDPOINTS_SERVICE),
            server_name=server_name or tls_name(address),
        )
        return cls(
            channel, timeout=timeout, attempts=attempts, token=token, merchant_id=merchant_id
        )

    async def close(self) -> None:
        await self._channel.close()

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        what: str,
    ) -> _Response:
        for attempt in range(1, self._attempts + 1):
            try:
                return await method(
                    request,
                    timeout=self._timeout,
                    metadata=(*outgoing_metadata(), *self._credentials()),
                )
            except grpc.aio.AioRpcError as error:
                remote = remote_error(error)
                refusal = REFUSALS.get(remote.reason)
                if refusal is not None:
                    raise refusal(
                        remote.message, metadata=remote.metadata, violations=remote.violations
                    ) from error
                if remote.code in _CREDENTIALS_REFUSED:
                    if attempt < self._attempts and self._fresh_token():
                        continue
                    log.error(
                        "cardpoints refused this service's credentials for %s: %s %s %s; "
                        "check --cardpoints-token-file (or the client certificate)",
                        what,
                        remote.code.name,
                        remote.reason,
                        remote.message,
                        extra={"cardpoints_code": remote.code.name, "reason": remote.reason},
                    )
                    raise PointsSystemCredentialsRejected(
                        f"the card-points system refused this service's credentials for "
                        f"{what} ({remote.code.name} {remote.reason}: {remote.message})"
                    ) from error
                if remote.code is grpc.StatusCode.UNAVAILABLE and attempt < self._attempts:
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
                    continue
                log.warning(
                    "cardpoints %s: outcome unknown after %d attempts: %s %s %s",
                    what,
                    attempt,
                    remote.code.name,
                    remote.reason,
                    remote.message,
                )
                raise PointsSystemUnavailable(
                    f"the card-points system did not answer {what} ({remote.code.name})"
                ) from error
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_account(self, account_id: str) -> CardAccount:
        response = await self._call(
            self._stub.GetAccount, pb.GetAccountRequest(account_id=account_id), "GetAccount"
        )
        state = _ACCOUNT_STATES.get(response.account.state)
        if state is None:
            raise PointsSystemUnavailable(
                f"card account {account_id!r} is in a state this service does not know"
            )
        return CardAccount(response.account.account_id, state, response.account.balance)

    async def deduct_points(self, order: DeductionOrder) -> Deduction:
        request = pb.DeductPointsRequest(
            request_id=order.request_id,
            account_id=order.account_id,
            points=order.points,
            coupon_quantity=order.coupon_quantity,
            points_per_coupon=order.points_per_coupon,
            merchant_id=order.merchant_id,
        )
        response = await self._call(self._stub.DeductPoints, request, "DeductPoints")
        return _deduction(response.deduction)

    async def reverse_deduction(self, order: ReversalOrder) -> Reversal:
        request = pb.ReverseDeductionRequest(
            request_id=order.request_id,
            deduction_request_id=order.deduction_request_id,
            points=order.points,
            reason=order.reason,
        )
        response = await self._call(self._stub.ReverseDeduction, request, "ReverseDeduction")
        reversal = response.reversal
        return Reversal(reversal.reversal_id, reversal.request_id, reversal.points)
