"""The card-points server as real OS processes: replicas on one PostgreSQL, grpcurl, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Callable, Iterator

import grpc
import pytest

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as pb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as pb_grpc
from servicekit.devtools.launch import ServiceProcess
from servicekit.status import remote_error
from tests.auth import Callers
from tests.support import BIN, start_server

SERVER = [str(BIN / "cardpoints-server"), "--address", "127.0.0.1:0"]


@pytest.fixture
def server_on(
    make_db_url: Callable[[str], str], auth: Callers
) -> Iterator[Callable[..., ServiceProcess]]:
    url = make_db_url("cardpoints")
    started: list[ServiceProcess] = []

    def start(*extra: str) -> ServiceProcess:
        process = start_server([*SERVER, *auth.server_flags, "--database-url", url, *extra])
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_two_replicas_on_one_database_cannot_overdraw(
    server_on: Callable[..., ServiceProcess], auth: Callers
) -> None:
    replicas = [server_on(), server_on()]
    channels = [auth.channel(f"127.0.0.1:{r.port}") for r in replicas]
    try:
        admin = pb_grpc.CardPointsAdminServiceStub(channels[0])
        await admin.OpenAccount(
            pb.OpenAccountRequest(account_id="card-1", holder_name="A"), timeout=10
        )
        await admin.CreditPoints(
            pb.CreditPointsRequest(request_id="seed", account_id="card-1", points=2000), timeout=10
        )
        stubs = [pb_grpc.CardPointsServiceStub(c) for c in channels]

        def deduct(i: int) -> pb.DeductPointsRequest:
            return pb.DeductPointsRequest(
                request_id=f"r-{i}",
                account_id="card-1",
                points=100,
                coupon_quantity=1,
                points_per_coupon=100,
                merchant_id="shop",
            )

        # 50 distinct deductions plus a duplicate of each of ten of them, across both replicas.
        calls = [stubs[i % 2].DeductPoints(deduct(i), timeout=60) for i in range(50)]
        calls += [stubs[(i + 1) % 2].DeductPoints(deduct(i), timeout=60) for i in range(10)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        distinct = results[:50]
        ok = [r for r in distinct if isinstance(r, pb.DeductPointsResponse)]
        refused = [r for r in distinct if isinstance(r, grpc.aio.AioRpcError)]
        assert len(ok) == 20
        assert len(refused) == 30
        assert {remote_error(e).reason for e in refused} == {"INSUFFICIENT_POINTS"}
        for first, again in zip(results[:10], results[50:], strict=True):
            if isinstance(first, pb.DeductPointsResponse):
                assert isinstance(again, pb.DeductPointsResponse)
                assert again.deduction.deduction_id == first.deduction.deduction_id
            else:
                assert isinstance(again, grpc.aio.AioRpcError)
                assert remote_error(again).reason == "INSUFFICIENT_POINTS"

        account = (
            await stubs[1].GetAccount(pb.GetAccountRequest(account_id="card-1"), timeout=10)
        ).account
        assert account.balance == 0
        ledger = await stubs[0].ListTransactions(
            pb.ListTransactionsRequest(account_id="card-1", page_size=1000), timeout=10
        )
        assert sum(e.amount for e in ledger.transactions) == 0
        assert min(e.balance_after for e in ledger.transactions) >= 0
        assert len(ledger.transactions) == 21
    finally:
        for channel in channels:
            await channel.close()


def grpcurl(
    token: str, port: int, *args: str, data: dict[str, object] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(BIN / "grpcurl"), "-plaintext", "-max-time", "10"]
    command += ["-H", f"authorization: Bearer {token}"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    return subprocess.run(
        [*command, f"127.0.0.1:{port}", *args], capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize("backend", ["sqlite"])
def test_grpcurl_lists_services_and_moves_points(
    server_on: Callable[..., ServiceProcess], auth: Callers
) -> None:
    port = server_on().port
    listed = grpcurl(auth.superuser, port, "list")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= {
        "pointsbridge.cardpoints.v1.CardPointsService",
        "pointsbridge.cardpoints.v1.CardPointsAdminService",
        "grpc.health.v1.Health",
    }
    described = grpcurl(
        auth.superuser, port, "describe", "pointsbridge.cardpoints.v1.DeductPointsRequest"
    )
    assert "coupon_quantity" in described.stdout

    admin = "pointsbridge.cardpoints.v1.CardPointsAdminService"
    points = "pointsbridge.cardpoints.v1.CardPointsService"
    opened = grpcurl(
        auth.superuser,
        port,
        f"{admin}/OpenAccount",
        data={"accountId": "demo-card", "holderName": "Demo"},
    )
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["account"]["state"] == "ACCOUNT_STATE_ACTIVE"
    credited = grpcurl(
        auth.superuser,
        port,
        f"{admin}/CreditPoints",
        data={"requestId": "c-1", "accountId": "demo-card", "points": "100000"},
    )
    assert credited.returncode == 0, credited.stderr
    assert json.loads(credited.stdout)["account"]["balance"] == "100000"
    deduct = {
        "requestId": "d-1",
        "accountId": "demo-card",
        "points": 3000,
        "couponQuantity": 3,
        "pointsPerCoupon": 1000,
        "merchantId": "shop",
    }
    deducted = grpcurl(auth.superuser, port, f"{points}/DeductPoints", data=deduct)
    assert deducted.returncode == 0, deducted.stderr
    assert json.loads(deducted.stdout)["deduction"]["balance_after"] == "97000"

    # grpcurl resolves the error detail types through reflection and prints them.
    refused = grpcurl(
        auth.superuser, port, f"{points}/DeductPoints", data={**deduct, "points": 2999}
    )
    assert refused.returncode != 0
    assert "InvalidArgument" in refused.stdout + refused.stderr
    assert "POINTS_MISMATCH" in refused.stdout + refused.stderr
    assert "field_violations" in refused.stdout + refused.stderr

    health = grpcurl(auth.superuser, port, "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout)["status"] == "SERVING"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sigterm_drains_then_exits_and_retries_stay_exactly_once(
    server_on: Callable[..., ServiceProcess], auth: Callers
) -> None:
    server = server_on("--grace", "5")

    def credit(i: int) -> pb.CreditPointsRequest:
        return pb.CreditPointsRequest(request_id=f"c-{i}", account_id="card-1", points=1)

    async def in_flight_then_signal() -> list[object]:
        async with auth.channel(f"127.0.0.1:{server.port}") as channel:
            admin = pb_grpc.CardPointsAdminServiceStub(channel)
            await admin.OpenAccount(
                pb.OpenAccountRequest(account_id="card-1", holder_name="A"), timeout=10
            )
            tasks = [
                asyncio.ensure_future(admin.CreditPoints(credit(i), timeout=20)) for i in range(40)
            ]
            await asyncio.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(in_flight_then_signal())
    assert server.process.wait(20) == 0
    assert "draining" in server.log()
    # Calls the server had not taken up are refused, never half-done.
    failed = [i for i, r in enumerate(results) if isinstance(r, grpc.aio.AioRpcError)]
    for i in failed:
        error = results[i]
        assert isinstance(error, grpc.aio.AioRpcError)
        assert error.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)

    async def retry_everything(port: int) -> int:
        async with auth.channel(f"127.0.0.1:{port}") as channel:
            admin = pb_grpc.CardPointsAdminServiceStub(channel)
            for i in range(40):
                await admin.CreditPoints(credit(i), timeout=10)
            points = pb_grpc.CardPointsServiceStub(channel)
            account = await points.GetAccount(pb.GetAccountRequest(account_id="card-1"), timeout=10)
            return account.account.balance

    # A client retrying every call with the same request_id gets each credit exactly once.
    assert asyncio.run(retry_everything(server_on().port)) == 40
