"""Adapters room: the gRPC client of RedemptionService, the storefront's only way to ecommerce.

Every call carries a deadline, the customer's bearer token and the request id of the page
being served. A refused call becomes a `ServiceRefusal` that says what the status said.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from prometheus_client import Counter, Histogram

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from servicekit.errors import FieldViolation
from servicekit.observability import outgoing_metadata
from servicekit.status import remote_error
from servicekit.tls import ClientTransport

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)

CALLS = Counter(
    "storefront_ecommerce_calls_total",
    "Calls from the storefront to RedemptionService, by method and final status code.",
    ["method", "code"],
)
CALL_LATENCY = Histogram(
    "storefront_ecommerce_call_seconds",
    "Time of a call from the storefront to RedemptionService, by method.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# The largest page RedemptionService serves, and how many pages a product search reads.
PAGE_SIZE = 1000
MAX_PAGES = 20


@dataclass(frozen=True)
class ServiceRefusal(Exception):
    """A call that ecommerce refused or could not answer, as its status said."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    violations: tuple[FieldViolation, ...] = ()

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(v.field for v in self.violations)


def card_linked(quote: pb.Quote) -> bool:
    """Whether the customer has a linked card, as ecommerce says in the quote."""
    return quote.card_linked


def available_points(quote: pb.Quote) -> int | None:
    """The card's balance, when the quote carries one (a linked card, a reachable bank)."""
    return quote.available_points if quote.HasField("available_points") else None


class RedemptionClient:
    """RedemptionService over one grpc.aio channel, for customers signed in with a token."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float, redeem_timeout: float) -> None:
        self._channel = channel
        self._stub = pb_grpc.RedemptionServiceStub(channel)
        self._timeout = timeout
        self._redeem_timeout = redeem_timeout

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        timeout: float,
        redeem_timeout: float,
        transport: ClientTransport | None = None,
    ) -> RedemptionClient:
        """A client whose channel connects lazily, on the first call."""
        channel = (transport or ClientTransport()).channel(address)
        return cls(channel, timeout=timeout, redeem_timeout=redeem_timeout)

    async def close(self) -> None:
        await self._channel.close()

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        token: str,
        name: str,
        deadline: float | None = None,
    ) -> _Response:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await method(
                request,
                timeout=deadline or self._timeout,
                metadata=(*outgoing_metadata(), ("authorization", f"Bearer {token}")),
            )
        except grpc.aio.AioRpcError as error:
            remote = remote_error(error)
            code = remote.code
            raise ServiceRefusal(
                remote.code, remote.reason, remote.message, remote.metadata, remote.violations
            ) from None
        finally:
            CALLS.labels(name, code.name).inc()
            CALL_LATENCY.labels(name).observe(time.perf_counter() - started)

    async def check_token(self, token: str) -> None:
        """Refused (UNAUTHENTICATED) unless ecommerce accepts the token."""
        await self._call(
            self._stub.ListCouponProducts,
            pb.ListCouponProductsRequest(page_size=1),
            token,
            "ListCouponProducts",
        )

    async def list_products(
        self, token: str, *, include_inactive: bool = False
    ) -> list[pb.CouponProduct]:
        """Every product (on offer, or all), in the service's order."""
        products: list[pb.CouponProduct] = []
        page_token = ""
        for _ in range(MAX_PAGES):
            response = await self._call(
                self._stub.ListCouponProducts,
                pb.ListCouponProductsRequest(
                    page_size=PAGE_SIZE, page_token=page_token, include_inactive=include_inactive
                ),
                token,
                "ListCouponProducts",
            )
            products.extend(response.products)
            page_token = response.next_page_token
            if not page_token:
                break
        return products

    async def find_product(self, token: str, product_id: str) -> pb.CouponProduct | None:
        """The product with that id, inactive ones included, or None."""
        for product in await self.list_products(token, include_inactive=True):
            if product.product_id == product_id:
                return product
        return None

    async def quote(self, token: str, customer_id: str, product_id: str, quantity: int) -> pb.Quote:
        response = await self._call(
            self._stub.QuoteRedemption,
            pb.QuoteRedemptionRequest(
                customer_id=customer_id, product_id=product_id, quantity=quantity
            ),
            token,
            "QuoteRedemption",
        )
        return response.quote

    async def redeem(
        self,
        token: str,
        *,
        request_id: str,
        customer_id: str,
        product_id: str,
        quantity: int,
        expected_points: int | None,
    ) -> pb.Redemption:
        request = pb.RedeemPointsRequest(
            request_id=request_id,
            customer_id=customer_id,
            product_id=product_id,
            quantity=quantity,
        )
        if expected_points is not None:
            request.expected_points = expected_points
        # Ecommerce may resend to cardpoints before it answers: a longer deadline.
        response = await self._call(
            self._stub.RedeemPoints, request, token, "RedeemPoints", self._redeem_timeout
        )
        return response.redemption

    async def get_redemption(
        self, token: str, customer_id: str, redemption_id: str
    ) -> pb.Redemption:
        response = await self._call(
            self._stub.GetRedemption,
            pb.GetRedemptionRequest(customer_id=customer_id, redemption_id=redemption_id),
            token,
            "GetRedemption",
        )
        return response.redemption

    async def list_coupons(
        self, token: str, customer_id: str, state: pb.CouponState, page_token: str = ""
    ) -> tuple[list[pb.Coupon], str]:
        """One page of the customer's coupons, newest first, and the next page's token."""
        response = await self._call(
            self._stub.ListCoupons,
            pb.ListCouponsRequest(
                customer_id=customer_id, state=state, page_size=100, page_token=page_token
            ),
            token,
            "ListCoupons",
        )
        return list(response.coupons), response.next_page_token

    async def refund(
        self, token: str, *, request_id: str, customer_id: str, redemption_id: str, codes: list[str]
    ) -> pb.Refund:
        response = await self._call(
            self._stub.RefundCoupons,
            pb.RefundCouponsRequest(
                request_id=request_id,
                customer_id=customer_id,
                redemption_id=redemption_id,
                codes=codes,
            ),
            token,
            "RefundCoupons",
            self._redeem_timeout,
        )
        return response.refund
