"""Failover between cardpoints replicas: one ecommerce, two cardpoints on one database."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.adapters.points_gateway import GrpcPointsGateway
from ecommerce.domain.errors import AccountNotFound
from ecommerce.entrypoints.server import Settings, start
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cpb_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from servicekit.config import ConfigError
from servicekit.devcerts import write_dev_pki
from servicekit.devtools.launch import ServiceProcess
from servicekit.status import remote_error
from servicekit.targets import grpc_target, tls_name
from servicekit.tls import ClientTransport
from tests.auth import Callers
from tests.ecommerce.seed import seed_over_grpc
from tests.support import start_server

CARDPOINTS = [sys.executable, "-m", "cardpoints.entrypoints.server"]
TIMEOUT = 10.0


def test_addresses_become_grpc_targets_and_host_names_in_a_list_are_refused() -> None:
    assert grpc_target("cardpoints.internal:50051") == "dns:///cardpoints.internal:50051"
    assert grpc_target("127.0.0.1:1, 127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert grpc_target("[::1]:1,[::1]:2") == "ipv6:[::1]:1,[::1]:2"
    assert grpc_target("dns:///cardpoints:50051") == "dns:///cardpoints:50051"
    assert tls_name("dns:///cardpoints.internal:50051") == "cardpoints.internal"
    assert tls_name("[::1]:1,[::1]:2") == "::1"
    for bad in ("a:1,b:2", "127.0.0.1:1,[::1]:2", "127.0.0.1:1,", "", "127.0.0.1:x,127.0.0.1:2"):
        with pytest.raises(ConfigError):
            grpc_target(bad, "--cardpoints-address")


def _deductions_served(replica: ServiceProcess) -> int:
    return sum("DeductPoints OK" in line for line in replica.log().splitlines())


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_redemptions_carry_on_when_one_of_two_cardpoints_replicas_is_killed(
    make_db_url: Callable[[str], str],
    auth: Callers,
) -> None:
    url = make_db_url("cardpoints")
    env = {"POINTSBRIDGE_CARDPOINTS_DATABASE_URL": url}
    args = [*CARDPOINTS, "--address", "127.0.0.1:0", "--log-format", "json", *auth.server_flags]
    # One after the other: the first one migrates the shared database.
    replicas = [start_server(args, env) for _ in range(2)]
    ecommerce = await start(
        Settings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=make_db_url("ecommerce"),
            cardpoints_address=",".join(f"127.0.0.1:{r.port}" for r in replicas),
            recovery_interval=0,
            deduct_timeout=2.0,
        )
    )
    to_shop = auth.channel(f"127.0.0.1:{ecommerce.port}")
    to_bank = auth.channel(f"127.0.0.1:{replicas[1].port}")
    try:
        await seed_over_grpc(to_bank, to_shop, points=1_000_000, points_per_coupon=10)
        shop = pb_grpc.RedemptionServiceStub(to_shop)
        failures: list[str] = []
        done = 0

        async def client(worker: int, stop_at: float, count: int) -> None:
            nonlocal done
            for i in range(count):
                if time.monotonic() > stop_at:
                    return
                request = pb.RedeemPointsRequest(
                    request_id=f"w{worker}-{i}", customer_id="alice", product_id="c10", quantity=1
                )
                try:
                    answer = await shop.RedeemPoints(request, timeout=TIMEOUT)
                except grpc.aio.AioRpcError as error:
                    failure = remote_error(error)
                    failures.append(f"{failure.code.name} {failure.reason} {failure.message}")
                else:
                    assert answer.redemption.state == pb.REDEMPTION_STATE_COMPLETED
                    done += 1

        # Both replicas take calls while both are up.
        await asyncio.gather(*(client(w, time.monotonic() + 30, 10) for w in range(4)))
        assert not failures
        served = [_deductions_served(r) for r in replicas]
        assert all(n > 0 for n in served), served

        # Four clients keep redeeming while one replica is SIGKILLed under them.
        before = done
        clients = [asyncio.create_task(client(w, time.monotonic() + 30, 40)) for w in range(4, 8)]
        await asyncio.sleep(0.3)
        replicas[0].process.kill()
        replicas[0].process.wait(10)
        at_kill = done
        await asyncio.gather(*clients)
        assert not failures, failures[:5]
        assert done - before == 160
        # The kill landed mid-run: calls completed on both sides of it.
        assert before < at_kill < done
        account = await cpb_grpc.CardPointsServiceStub(to_bank).GetAccount(
            cpb.GetAccountRequest(account_id="card-a"), timeout=TIMEOUT
        )
        assert account.account.balance == 1_000_000 - 10 * done
    finally:
        await to_shop.close()
        await to_bank.close()
        await ecommerce.stop(grace=0)
        for replica in replicas:
            replica.stop()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_replica_whose_health_check_says_not_serving_takes_no_calls(
    make_db_url: Callable[[str], str],
    auth: Callers,
) -> None:
    # Two cardpoints over two databases: only the healthy one knows the account, so a
    # call that went to the other would answer ACCOUNT_NOT_FOUND.
    apps = [
        await start_cardpoints(
            CardpointsSettings(
                **auth.server_security, address="127.0.0.1:0", database_url=make_db_url(f"cp{i}")
            )
        )
        for i in range(2)
    ]
    draining, healthy = apps
    for service in (*draining.running.services, ""):
        await draining.running.health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)
    async with auth.channel(f"127.0.0.1:{healthy.port}") as to_healthy:
        await cpb_grpc.CardPointsAdminServiceStub(to_healthy).OpenAccount(
            cpb.OpenAccountRequest(account_id="card-h", holder_name="H"), timeout=TIMEOUT
        )
    gateway = GrpcPointsGateway.connect(
        f"127.0.0.1:{draining.port},127.0.0.1:{healthy.port}", timeout=TIMEOUT, token=auth.service
    )
    try:
        for _ in range(20):
            assert (await gateway.get_account("card-h")).account_id == "card-h"
    finally:
        await gateway.close()
        for app in apps:
            await app.stop(grace=0)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_replicas_listed_by_ip_are_reached_over_mutual_tls(
    make_db_url: Callable[[str], str], tmp_path: Path, auth: Callers
) -> None:
    write_dev_pki(tmp_path)
    url = make_db_url("cardpoints")
    apps = [
        await start_cardpoints(
            CardpointsSettings(
                address="127.0.0.1:0",
                database_url=url,
                tls_cert=str(tmp_path / "cardpoints.pem"),
                tls_key=str(tmp_path / "cardpoints-key.pem"),
                tls_client_ca=str(tmp_path / "ca.pem"),
                token_public_key=str(auth.public_key),
            )
        )
        for _ in range(2)
    ]
    transport = ClientTransport(
        str(tmp_path / "ca.pem"),
        str(tmp_path / "ecommerce.pem"),
        str(tmp_path / "ecommerce-key.pem"),
    )
    listed = ",".join(f"127.0.0.1:{app.port}" for app in apps)
    assert tls_name(listed) == "127.0.0.1"
    gateways = [
        GrpcPointsGateway.connect(listed, timeout=TIMEOUT, transport=transport),
        # A name every replica's certificate carries, as a bank's CA would issue them.
        GrpcPointsGateway.connect(
            listed, timeout=TIMEOUT, transport=transport, server_name="cardpoints"
        ),
    ]
    try:
        for gateway in gateways:
            for _ in range(6):  # round robin: each replica several times
                with pytest.raises(AccountNotFound):
                    await gateway.get_account("no-such-card")
    finally:
        for gateway in gateways:
            await gateway.close()
        for app in apps:
            await app.stop(grace=0)
