"""The fair baselines: a bare grpc.aio echo server (1 hop) and a bare 2-hop echo chain.

Nothing of the project is imported here: only grpc and the generated messages, on the
same event loop as the services (asyncio's default policy; they do not use uvloop).
Every target ratio of the benchmark divides by these, so a ratio says how close a
service gets to what the transport alone does on this machine.

    python -m bench.echo leaf  --address 127.0.0.1:0
    python -m bench.echo chain --address 127.0.0.1:0 --next 127.0.0.1:PORT

`leaf` answers CardPointsService.DeductPoints with a canned response. `chain` answers
RedemptionService.RedeemPoints by making one DeductPoints call to `--next` (with a
deadline, as a real hop has), then a canned response. Both print "serving on port N"
once they listen, and stop on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import grpc

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc

DEDUCTED = cp.DeductPointsResponse(
    deduction=cp.Deduction(
        deduction_id="ded_echo",
        request_id="echo",
        account_id="card-echo",
        points=300,
        state=cp.DEDUCTION_STATE_COMPLETED,
        coupon_quantity=3,
        points_per_coupon=100,
        merchant_id="echo",
    )
)
REDEEMED = ec.RedeemPointsResponse(
    redemption=ec.Redemption(
        redemption_id="rd_echo",
        request_id="echo",
        customer_id="echo",
        product_id="echo",
        quantity=3,
        points=300,
        state=ec.REDEMPTION_STATE_COMPLETED,
        deduction_id="ded_echo",
    )
)
NEXT_REQUEST = cp.DeductPointsRequest(
    request_id="redemption:echo",
    account_id="card-echo",
    points=300,
    coupon_quantity=3,
    points_per_coupon=100,
    merchant_id="echo",
)


class EchoCardPoints(cp_grpc.CardPointsServiceServicer):
    async def DeductPoints(self, request: Any, context: Any) -> cp.DeductPointsResponse:
        return DEDUCTED


class EchoRedemption(ec_grpc.RedemptionServiceServicer):
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._deduct = cp_grpc.CardPointsServiceStub(channel).DeductPoints

    async def RedeemPoints(self, request: Any, context: Any) -> ec.RedeemPointsResponse:
        await self._deduct(NEXT_REQUEST, timeout=5.0)
        return REDEEMED


async def serve(args: argparse.Namespace) -> None:
    server = grpc.aio.server()
    channel = None
    if args.role == "leaf":
        leaf = EchoCardPoints()  # type: ignore[abstract]  # the rest: UNIMPLEMENTED
        cp_grpc.add_CardPointsServiceServicer_to_server(leaf, server)
    else:
        channel = grpc.aio.insecure_channel(args.next)
        servicer = EchoRedemption(channel)  # type: ignore[abstract]  # the rest: UNIMPLEMENTED
        ec_grpc.add_RedemptionServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port(args.address)
    await server.start()
    print(f"echo {args.role} serving on port {port}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1.0)
    if channel is not None:
        await channel.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["leaf", "chain"])
    parser.add_argument("--address", default="127.0.0.1:0")
    parser.add_argument("--next", default="", help="chain: host:port of the leaf")
    args = parser.parse_args(argv)
    if args.role == "chain" and not args.next:
        parser.error("chain needs --next")
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
