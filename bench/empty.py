"""The baselines: an empty 1-hop service and an empty 2-hop chain, on the services' own plumbing.

Both are built with `servicekit.server.start_server`, so they have the same server
options, health, reflection and per-call duties (a request id, a metric and a JSON
log line per call, one wrapper per method) as cardpoints and ecommerce. By default
they also have the same Authenticator (ES256 bearer tokens, the same rules and rate
limit), so the ratios of the benchmark measure the application's own work:
validation, units of work, SQL and the domain. `--auth false` builds the bare
variant, to price authentication.

    python -m bench.empty leaf  --address 127.0.0.1:0 --token-public-key KEY
    python -m bench.empty chain --address 127.0.0.1:0 --token-public-key KEY \\
        --next 127.0.0.1:PORT --next-token-file TOKEN

`leaf` answers CardPointsService.DeductPoints by echoing the request, with no work.
`chain` answers RedemptionService.RedeemPoints by calling the leaf's DeductPoints once
(the same deadline, metadata and channel options as the real points gateway), then
echoing. Both print "serving on port N" once they listen.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import grpc

from cardpoints.entrypoints.access import RULES as CARDPOINTS_RULES
from ecommerce.entrypoints.access import RULES as ECOMMERCE_RULES
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.auth import Authenticator, RateLimiter, TokenVerifier
from servicekit.clock import utc_now
from servicekit.config import boolean, read_secret
from servicekit.observability import configure_logging, outgoing_metadata
from servicekit.server import Registration, start_server, wait_for_stop_signal
from servicekit.status import rpc
from servicekit.timestamps import to_timestamp
from servicekit.tls import RECONNECT_OPTIONS

log = logging.getLogger("bench.empty")

Context = grpc.aio.ServicerContext[Any, Any]

_STAMP = to_timestamp(utc_now())


class EmptyCardPoints(cp_grpc.CardPointsServiceServicer):
    """DeductPoints that does nothing but answer."""

    @rpc
    async def DeductPoints(
        self, request: cp.DeductPointsRequest, context: Context
    ) -> cp.DeductPointsResponse:
        return cp.DeductPointsResponse(
            deduction=cp.Deduction(
                deduction_id="ded_empty",
                request_id=request.request_id,
                account_id=request.account_id,
                points=request.points,
                state=cp.DEDUCTION_STATE_COMPLETED,
                coupon_quantity=request.coupon_quantity,
                points_per_coupon=request.points_per_coupon,
                merchant_id=request.merchant_id,
                create_time=_STAMP,
                update_time=_STAMP,
            )
        )


class EmptyRedemption(ec_grpc.RedemptionServiceServicer):
    """RedeemPoints that makes one DeductPoints call to the next hop and answers."""

    def __init__(self, channel: grpc.aio.Channel, token: str, timeout: float) -> None:
        self._stub = cp_grpc.CardPointsServiceStub(channel)
        self._credentials = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    @rpc
    async def RedeemPoints(
        self, request: ec.RedeemPointsRequest, context: Context
    ) -> ec.RedeemPointsResponse:
        points = request.quantity * 100
        response = await self._stub.DeductPoints(
            cp.DeductPointsRequest(
                request_id=f"redemption:{request.request_id}",
                account_id=f"card-{request.customer_id}",
                points=points,
                coupon_quantity=request.quantity,
                points_per_coupon=100,
                merchant_id="bench-empty",
            ),
            timeout=self._timeout,
            metadata=(*outgoing_metadata(), *self._credentials),
        )
        return ec.RedeemPointsResponse(
            redemption=ec.Redemption(
                redemption_id="rd_empty",
                request_id=request.request_id,
                customer_id=request.customer_id,
                product_id=request.product_id,
                quantity=request.quantity,
                points=points,
                state=ec.REDEMPTION_STATE_COMPLETED,
                deduction_id=response.deduction.deduction_id,
                create_time=_STAMP,
                update_time=_STAMP,
            )
        )


async def serve(args: argparse.Namespace) -> None:
    auth: Authenticator | None = None
    channel: grpc.aio.Channel | None = None
    if args.role == "leaf":
        servicer_cp = EmptyCardPoints()  # type: ignore[abstract]  # the rest: UNIMPLEMENTED
        registration = Registration(
            cp.DESCRIPTOR.services_by_name["CardPointsService"].full_name,
            lambda server: cp_grpc.add_CardPointsServiceServicer_to_server(servicer_cp, server),
        )
        if args.auth:
            auth = Authenticator(
                TokenVerifier.from_file(args.token_public_key),
                CARDPOINTS_RULES,
                service_identities=frozenset({"ecommerce"}),
            )
    else:
        channel = grpc.aio.insecure_channel(args.next, options=RECONNECT_OPTIONS)
        token = read_secret(args.next_token_file)
        servicer_ec = EmptyRedemption(channel, token, 5.0)  # type: ignore[abstract]
        registration = Registration(
            ec.DESCRIPTOR.services_by_name["RedemptionService"].full_name,
            lambda server: ec_grpc.add_RedemptionServiceServicer_to_server(servicer_ec, server),
        )
        if args.auth:
            auth = Authenticator(
                TokenVerifier.from_file(args.token_public_key),
                ECOMMERCE_RULES,
                rate_limiter=RateLimiter(50.0, 100),
            )
    running = await start_server(args.address, [registration], auth=auth)
    log.info("empty %s serving on port %d", args.role, running.port)
    try:
        await wait_for_stop_signal()
    finally:
        await running.drain(1.0)
        if channel is not None:
            await channel.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["leaf", "chain"])
    parser.add_argument("--address", default="127.0.0.1:0")
    parser.add_argument("--token-public-key", default="")
    parser.add_argument("--auth", type=boolean, default=True, help="the services' Authenticator")
    parser.add_argument("--next", default="", help="chain: host:port of the leaf")
    parser.add_argument("--next-token-file", default="", help="chain: the service token")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(f"empty-{args.role}", args.log_level, "json")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
