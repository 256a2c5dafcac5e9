"""A multi-process grpc.aio load generator: N worker processes, each with its own channels
and its share of the calls in flight, started together on the machine's monotonic clock.

A job runs a warmup, then a measured window; only calls that complete inside the window
count. With `calls` set instead, a job makes exactly that many calls (the soak).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import time
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import grpc

from bench.seed import DIRECT_MERCHANT, POINTS_PER_COUPON, PRODUCTS
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc

REDEEM = "redeem"  # RedemptionService/RedeemPoints, one customer token per customer
DEDUCT = "deduct"  # CardPointsService/DeductPoints, the service token
CALL_TIMEOUT = 30.0


@dataclass(frozen=True)
class Job:
    method: str
    targets: tuple[str, ...]  # round-robin, `connections` channels each
    concurrency: int
    start_at: float  # time.monotonic() of the machine
    warmup: float
    duration: float
    tag: str  # unique per job and worker: request ids are f"{tag}-{n}"
    customers: Sequence[tuple[str, str, str]]  # (customer id, card account id, token)
    service_token: str
    seed: int
    calls: int = 0  # > 0: exactly this many calls, all measured
    # Channels (TCP connections, not shared) per target: more than one lets the kernel
    # spread them over the processes of a server started with --processes.
    connections: int = 1


@dataclass
class Result:
    latencies: array[float] = field(default_factory=lambda: array("d"))
    completed: int = 0  # OK calls that completed inside the window
    calls: int = 0  # every call made, warmup included
    errors: Counter[str] = field(default_factory=Counter)
    first_error: str = ""
    began: float = 0.0
    ended: float = 0.0


def _request_maker(job: Job) -> Callable[[random.Random, int], tuple[Any, Any]]:
    """(request, metadata) for call number n."""
    if job.method == REDEEM:
        customers = [(c, (("authorization", f"Bearer {token}"),)) for c, _a, token in job.customers]

        def redeem(rng: random.Random, n: int) -> tuple[Any, Any]:
            customer, metadata = customers[rng.randrange(len(customers))]
            quantity = rng.randint(1, 5)
            request = ec.RedeemPointsRequest(
                request_id=f"{job.tag}-{n}",
                customer_id=customer,
                product_id=PRODUCTS[rng.randrange(len(PRODUCTS))],
                quantity=quantity,
                expected_points=quantity * POINTS_PER_COUPON,
            )
            return request, metadata

        return redeem
    accounts = [a for _c, a, _t in job.customers]
    service = (("authorization", f"Bearer {job.service_token}"),)

    def deduct(rng: random.Random, n: int) -> tuple[Any, Any]:
        quantity = rng.randint(1, 5)
        request = cp.DeductPointsRequest(
            request_id=f"{job.tag}-{n}",
            account_id=accounts[rng.randrange(len(accounts))],
            points=quantity * POINTS_PER_COUPON,
            coupon_quantity=quantity,
            points_per_coupon=POINTS_PER_COUPON,
            merchant_id=DIRECT_MERCHANT,
        )
        return request, service

    return deduct


async def run_job(job: Job) -> Result:
    options = [("grpc.use_local_subchannel_pool", 1)] if job.connections > 1 else []
    channels = [
        grpc.aio.insecure_channel(target, options=options)
        for target in job.targets
        for _ in range(job.connections)
    ]
    result = Result()
    try:
        if job.method == REDEEM:
            methods: list[Any] = [ec_grpc.RedemptionServiceStub(c).RedeemPoints for c in channels]
        else:
            methods = [cp_grpc.CardPointsServiceStub(c).DeductPoints for c in channels]
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), 20)
        make = _request_maker(job)
        await asyncio.sleep(max(0.0, job.start_at - time.monotonic()))
        window_start = job.start_at if job.calls else job.start_at + job.warmup
        window_end = float("inf") if job.calls else window_start + job.duration
        numbers = iter(range(job.calls or 2**62))
        latencies = result.latencies

        async def loop(k: int) -> None:
            rng = random.Random(job.seed * 100_003 + k)
            for n in numbers:
                if time.monotonic() >= window_end:
                    return
                request, metadata = make(rng, n)
                method = methods[n % len(methods)]
                began = time.monotonic()
                try:
                    await method(request, metadata=metadata, timeout=CALL_TIMEOUT)
                except grpc.aio.AioRpcError as error:
                    result.errors[error.code().name] += 1
                    if not result.first_error:
                        result.first_error = f"{error.code().name}: {error.details()}"
                    continue
                finally:
                    result.calls += 1
                ended = time.monotonic()
                if window_start <= ended <= window_end:
                    latencies.append(ended - began)
                    result.completed += 1

        result.began = time.monotonic()
        await asyncio.gather(*(loop(k) for k in range(job.concurrency)))
        result.ended = time.monotonic()
    finally:
        for channel in channels:
            await channel.close()
    return result


def _worker(conn: Connection) -> None:
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            conn.send(asyncio.run(run_job(job)))
        except Exception as error:  # reported to the parent, which fails the run
            conn.send(error)


class LoadPool:
    """Long-lived worker processes (spawned, not forked: gRPC does not survive a fork)."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for _ in range(workers):
            parent, child = context.Pipe()
            proc = context.Process(target=_worker, args=(child,), daemon=True)
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)

    @property
    def size(self) -> int:
        return len(self._procs)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def submit(self, jobs: Sequence[Job]) -> list[Connection]:
        if len(jobs) > self.size:
            raise ValueError("more jobs than workers")
        for conn, job in zip(self._conns, jobs, strict=False):
            conn.send(job)
        return self._conns[: len(jobs)]

    def collect(
        self, busy: list[Connection], timeout: float, tick: Callable[[], None] | None = None
    ) -> list[Result]:
        """Every result, calling `tick` about once a second while waiting."""
        deadline = time.monotonic() + timeout
        results: dict[int, Result] = {}
        while len(results) < len(busy):
            if time.monotonic() > deadline:
                raise TimeoutError("the load generator did not finish in time")
            for index, conn in enumerate(busy):
                if index not in results and conn.poll(0.2):
                    answer = conn.recv()
                    if isinstance(answer, Exception):
                        raise RuntimeError(f"load worker failed: {answer!r}")
                    results[index] = answer
            if tick is not None:
                tick()
        return [results[i] for i in range(len(busy))]

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


def split(total: int, parts: int) -> list[int]:
    """`total` calls in flight over at most `parts` workers, none empty."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]
