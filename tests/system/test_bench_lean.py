"""The bench's bare-work servers (bench/lean.py, bench/lean_chain.py) as real processes on
SQLite and PostgreSQL: they do the work they stand for, so the reference rows mean it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from bench import verdicts
from bench.lean import SHAPES, SINGLE
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.devtools.launch import ServiceProcess
from tests.support import start_server


@pytest.fixture
def store(backend: str, make_db_url: Callable[[str], str]) -> Callable[[str], list[str]]:
    """The store argument of a bare server: a SQLite file, or a fresh PostgreSQL database."""

    def make(name: str) -> list[str]:
        url = make_db_url(name)
        if backend == "sqlite":
            return ["--database", url.removeprefix("sqlite:///")]
        return ["--postgres", url]

    return make


@pytest.fixture
def bare(store: Callable[[str], list[str]]) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    """The bare-work DeductPoints server and the bare redemption chain in front of it."""
    started: list[ServiceProcess] = []
    try:
        command = [sys.executable, "-m", "bench.lean", "--accounts", "5", *store("lean-deduct")]
        started.append(start_server(command))
        command = [
            sys.executable,
            "-m",
            "bench.lean_chain",
            "--accounts",
            "5",
            "--next",
            f"127.0.0.1:{started[0].port}",
            *store("lean-redeem"),
        ]
        started.append(start_server(command))
        yield started[0], started[1]
    finally:
        for process in reversed(started):
            process.stop()


# The bare DeductPoints server's cases: SQLite has one shape, PostgreSQL each of SHAPES.
DEDUCT_CASES = pytest.mark.parametrize(
    ("backend", "shape"),
    [
        ("sqlite", SINGLE),
        *(pytest.param("postgres", shape, marks=pytest.mark.postgres) for shape in SHAPES),
    ],
)


@pytest.fixture
def lean_deduct(shape: str, store: Callable[[str], list[str]]) -> Iterator[ServiceProcess]:
    """The bare-work DeductPoints server alone, in the case's store and shape."""
    command = [sys.executable, "-m", "bench.lean", "--accounts", "5", "--shape", shape]
    server = start_server([*command, *store("lean-deduct")])
    try:
        yield server
    finally:
        server.stop()


def deduction(
    request_id: str, points: int, account_id: str = "card-0000001"
) -> cp.DeductPointsRequest:
    return cp.DeductPointsRequest(
        request_id=request_id,
        account_id=account_id,
        points=points,
        coupon_quantity=points // 100,
        points_per_coupon=100,
        merchant_id="test",
    )


@DEDUCT_CASES
async def test_bare_deduct_takes_refuses_and_replays(lean_deduct: ServiceProcess) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{lean_deduct.port}") as channel:
        deduct = cp_grpc.CardPointsServiceStub(channel).DeductPoints
        first = await deduct(deduction("d-1", 300), timeout=10)
        assert first.deduction.deduction_id.startswith("ded_")
        assert first.deduction.points == 300

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await deduct(deduction("d-2", 2_000_000), timeout=10)  # more than it holds
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        again = await deduct(deduction("d-1", 300), timeout=10)
        assert again.deduction.deduction_id == first.deduction.deduction_id
        # The balance is what the one deduction left: all of it but 300 can still go.
        rest = await deduct(deduction("d-3", 1_000_000 - 300), timeout=10)
        assert rest.deduction.deduction_id != first.deduction.deduction_id
        with pytest.raises(grpc.aio.AioRpcError) as empty:
            await deduct(deduction("d-4", 100), timeout=10)
        assert empty.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        # A refused request id left no record: once there are points, it is taken.
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await deduct(deduction("d-5", 100, "card-9999999"), timeout=10)
        assert unknown.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        other = await deduct(deduction("d-2", 999_999, "card-0000002"), timeout=10)
        assert other.deduction.deduction_id.startswith("ded_")


@DEDUCT_CASES
async def test_bare_deduct_takes_a_request_id_sent_at_once_only_once(
    lean_deduct: ServiceProcess,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{lean_deduct.port}") as channel:
        deduct = cp_grpc.CardPointsServiceStub(channel).DeductPoints
        # The same request id many times over at once: one deduction, every answer its id,
        # whether the late ones find the balance still enough (100) or not (600,000).
        for request_id, points in (("small", 100), ("large", 600_000)):
            answers = await asyncio.gather(
                *(deduct(deduction(request_id, points), timeout=10) for _ in range(16))
            )
            assert len({a.deduction.deduction_id for a in answers}) == 1
        # Only 600,100 of the 1,000,000 went: 399,900 more can, 399,901 cannot.
        with pytest.raises(grpc.aio.AioRpcError) as over:
            await deduct(deduction("more", 399_901), timeout=10)
        assert over.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        rest = await deduct(deduction("rest", 399_900), timeout=10)
        assert rest.deduction.points == 399_900


async def test_bare_chain_redeems_into_coupons(
    bare: tuple[ServiceProcess, ServiceProcess],
) -> None:
    _, chain_server = bare
    async with grpc.aio.insecure_channel(f"127.0.0.1:{chain_server.port}") as channel:
        redeem = ec_grpc.RedemptionServiceStub(channel).RedeemPoints
        request = ec.RedeemPointsRequest(
            request_id="r-1",
            customer_id="cust-0000002",
            product_id="bench-coupon-1",
            quantity=3,
            expected_points=300,
        )
        # The token the load generator sends, which the bare chain ignores.
        metadata = (("authorization", "Bearer ignored"),)
        answer = await redeem(request, metadata=metadata, timeout=10)
        redemption = answer.redemption
        assert redemption.state == ec.REDEMPTION_STATE_COMPLETED
        assert redemption.card_account_id == "card-0000002"
        assert redemption.points == 300
        assert redemption.deduction_id.startswith("ded_")
        codes = [coupon.code for coupon in redemption.coupons]
        assert len(codes) == 3 == len(set(codes))

        again = await redeem(request, metadata=metadata, timeout=10)
        assert again.redemption.redemption_id == redemption.redemption_id
        assert again.redemption.deduction_id == redemption.deduction_id
        assert [coupon.code for coupon in again.redemption.coupons] == codes

        with pytest.raises(grpc.aio.AioRpcError) as unlinked:
            await redeem(
                ec.RedeemPointsRequest(
                    request_id="r-3", customer_id="cust-9", product_id="bench-coupon-1", quantity=1
                ),
                timeout=10,
            )
        assert unlinked.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_each_target_is_followed_by_its_bare_work_reference_when_it_ran() -> None:
    def row(scenario: str, db: str, label: str, throughput: float, p99: float) -> dict[str, Any]:
        return {
            "scenario": scenario,
            "db": db,
            "concurrency": verdicts.TARGETS_AT,
            "replicas": 1,
            "label": label,
            "throughput": throughput,
            "p99_ms": p99,
        }

    pair = f"{verdicts.LEAN_PAIR} 1"
    runs = [
        row(verdicts.CHAIN, "sqlite", "", 1000.0, 10.0),
        row("redeem", "sqlite", "", 300.0, 50.0),
        row(verdicts.CHAIN, "sqlite", pair, 1000.0, 10.0),
        row(verdicts.LEAN_REDEEM, "sqlite", pair, 700.0, 20.0),
        row(verdicts.HOP, "postgres", pair, 1000.0, 5.0),
        row(verdicts.LEAN, "postgres", pair, 400.0, 9.0),
    ]
    found = {t["name"]: t for t in verdicts.targets({"runs": runs})}
    names = list(found)
    redeem = next(n for n in names if n.startswith("SQLite RedeemPoints throughput"))
    reference = names[names.index(redeem) + 1]
    assert reference.startswith("Reference, not a target: SQLite bare-work RedeemPoints chain")
    assert found[redeem]["value"] == 0.3 and found[reference]["value"] == 0.7
    p99 = next(n for n in names if "bare-work RedeemPoints chain (no project code) p99" in n)
    assert found[p99]["value"] == 2.0 and found[p99]["met"] is True
    deduct = next(n for n in names if n.startswith("Reference, not a target: PostgreSQL bare-work"))
    assert found[deduct]["value"] == 0.4 and found[deduct]["met"] is False
    # Nothing bare ran for SQLite DeductPoints or PostgreSQL RedeemPoints: no reference.
    assert sum(n.startswith("Reference, not a target") for n in names) == 3
