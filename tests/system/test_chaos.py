"""The fault harness: the short preset on both databases, and proof that its checker bites.

The preset runs start both services as real processes, SIGKILL each of them while
clients redeem, use and refund, and must end with nothing pending, no violation and a
clean reconcile. `--self-test` corrupts both systems after a clean run and must be
caught. The checker is also fed hand-made snapshots, one broken invariant at a time.
"""

from __future__ import annotations

import asyncio
import copy
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from chaos.checker import Snapshot, check
from chaos.harness import PRESETS, Plan, parse_options
from chaos.journal import Customer, Journal, Outcome, RedeemCall, RefundCall, UseCall
from chaos.proxy import FaultProxy, FrameScanner, Mode
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from tests.support import ROOT

HARNESS = [sys.executable, "-m", "chaos.harness"]
SUMMARY = re.compile(
    r"^ops=(?P<ops>\d+) kills=cardpoints:(?P<cardpoints>\d+),ecommerce:(?P<ecommerce>\d+) "
    r"pending=(?P<pending>\d+) settled_after_last_kill=(?P<settled>\d+\.\ds|-) "
    r"violations=(?P<violations>\d+) reconcile=(?P<reconcile>\w+) "
    r"events=(?P<events>\d+) seed=(?P<seed>\d+) db=(?P<db>\w+)$",
    re.MULTILINE,
)


def run_harness(*args: str, timeout: float) -> tuple[int, str, dict[str, str]]:
    """Run the harness; its output (without the services' JSON log lines) and summary."""
    done = subprocess.run(
        [*HARNESS, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    output = "\n".join(
        line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("{")
    )
    summaries = list(SUMMARY.finditer(done.stdout))
    assert len(summaries) == 1, output[-8000:]
    assert done.stdout.rstrip().endswith(summaries[0].group(0)), output[-8000:]
    return done.returncode, output, summaries[0].groupdict()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_short_preset_survives_kills_with_every_invariant_intact(
    db: str, tmp_path: Path
) -> None:
    code, output, summary = run_harness(
        "--preset", "short", "--db", db, "--seed", "7", "--workdir", str(tmp_path), timeout=170
    )
    assert code == 0, output[-8000:]
    assert summary["pending"] == "0"
    assert summary["settled"] != "-"  # the time from the last kill to 0 PENDING
    assert summary["violations"] == "0"
    assert summary["reconcile"] == "clean"
    assert int(summary["events"]) > 0  # I8 checked: the streams against both databases
    assert "SIGKILL nats-server" in output and "nats-server back" in output
    if db == "postgres":  # the relays of two processes per service share each database
        assert "cardpoints-standby on" in output and "ecommerce-standby on" in output
    assert (summary["seed"], summary["db"]) == ("7", db)
    kills = PRESETS["short"].kills
    assert int(summary["cardpoints"]) >= kills and int(summary["ecommerce"]) >= kills
    # Every kind of call got through at least once (how many depends on the machine).
    for kind in ("redeem", "use", "refund"):
        done = re.search(rf"\b{kind} ok=(\d+)", output)
        assert done is not None and int(done.group(1)) > 0, output[-8000:]
    assert not re.search(r"^(violation|reconcile mismatch)", output, re.MULTILINE)


@pytest.mark.timeout(90)
def test_self_test_sabotage_is_reported_and_fails_the_run(tmp_path: Path) -> None:
    # No kills: this run is about the checker, not about recovery.
    code, output, summary = run_harness(
        "--duration", "6", "--kills", "0", "--self-test", "--workdir", str(tmp_path), timeout=80
    )
    # Clean before the sabotage, so every violation after it comes from the sabotage.
    assert "self-test: before sabotage violations=0 pending=0 reconcile=clean" in output
    assert "self-test: bogus deduction caught, deleted coupon caught" in output
    assert re.search(r"^violation I3: deduction \S+ \(chaos-selftest-7, ", output, re.MULTILINE)
    assert re.search(r"^violation I4: COMPLETED redemption \S+ has \d+ coupons, not", output, re.M)
    assert re.search(r"^reconcile mismatch: .*deduction_without_redemption", output, re.M)
    assert code == 1
    assert int(summary["violations"]) >= 2
    assert summary["reconcile"] == "mismatch"


def test_the_harness_help_lists_its_options() -> None:
    shown = subprocess.run(
        [*HARNESS, "--help"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    for option in ("--preset", "--db", "--pg-url", "--seed", "--duration", "--clients"):
        assert option in shown
    for option in ("--kills", "--workdir", "--self-test", "--no-proxy"):
        assert option in shown


def test_a_seed_fixes_the_whole_schedule() -> None:
    options = parse_options(["--preset", "long", "--seed", "11"])
    plan = Plan.draw(options)
    assert plan == Plan.draw(options)
    assert plan != Plan.draw(parse_options(["--preset", "long", "--seed", "12"]))
    kills = Counter(k.service for k in plan.kills)
    assert kills == {"cardpoints": options.kills, "ecommerce": options.kills}
    assert all(0 < k.at < options.duration for k in plan.kills)
    assert [k.at for k in plan.kills] == sorted(k.at for k in plan.kills)
    assert len(plan.client_seeds) == options.clients
    assert plan.faults, "the long preset puts the fault proxy to work"


# ---------------------------------------------------------------- the checker, by hand

CUSTOMER = Customer("cust", "card", 1000)
CODES = ("AAAA", "BBBB", "CCCC")


def consistent() -> tuple[Snapshot, Journal]:
    """1000 credited; 3 coupons for 300 points; B used on o1; C refunded for 100."""
    reversal = cp.Reversal(reversal_id="rev1", request_id="refund:rf1", points=100)
    deduction = cp.Deduction(
        deduction_id="ded1",
        request_id="redemption:rd1",
        account_id="card",
        points=300,
        reversed_points=100,
        coupon_quantity=3,
        points_per_coupon=100,
        reversals=[reversal],
    )
    ledger = [
        cp.LedgerEntry(entry_id="e1", type=cp.ENTRY_TYPE_CREDIT, amount=1000, balance_after=1000),
        cp.LedgerEntry(
            entry_id="e2",
            type=cp.ENTRY_TYPE_DEDUCTION,
            amount=-300,
            balance_after=700,
            request_id="redemption:rd1",
        ),
        cp.LedgerEntry(
            entry_id="e3",
            type=cp.ENTRY_TYPE_REVERSAL,
            amount=100,
            balance_after=800,
            request_id="refund:rf1",
        ),
    ]
    coupons = [
        ec.Coupon(
            code="AAAA", redemption_id="rd1", customer_id="cust", state=ec.COUPON_STATE_ISSUED
        ),
        ec.Coupon(
            code="BBBB",
            redemption_id="rd1",
            customer_id="cust",
            state=ec.COUPON_STATE_USED,
            used_order_id="o1",
        ),
        ec.Coupon(code="CCCC", redemption_id="rd1", customer_id="cust", state=ec.COUPON_STATE_VOID),
    ]
    redemption = ec.Redemption(
        redemption_id="rd1",
        request_id="r1",
        customer_id="cust",
        quantity=3,
        points=300,
        points_per_coupon=100,
        card_account_id="card",
        state=ec.REDEMPTION_STATE_COMPLETED,
        deduction_id="ded1",
        refunded_points=100,
        coupons=coupons,
    )
    refund = ec.Refund(
        refund_id="rf1",
        request_id="f1",
        redemption_id="rd1",
        codes=["CCCC"],
        points=100,
        state=ec.REFUND_STATE_COMPLETED,
    )
    snap = Snapshot(
        accounts={"card": cp.Account(account_id="card", balance=800)},
        ledgers={"card": ledger},
        deductions=[deduction],
        redemptions=[redemption],
        coupons={"cust": list(coupons)},
        exported=[ec.ExportedRedemption(redemption=redemption, refunds=[refund])],
    )
    journal = Journal(
        redeems=[
            RedeemCall(
                "r1",
                "cust",
                "p",
                3,
                300,
                Outcome.OK,
                redemption_id="rd1",
                state=ec.REDEMPTION_STATE_COMPLETED,
                codes=CODES,
                points=300,
            )
        ],
        uses=[UseCall("cust", "BBBB", "o1", Outcome.OK)],
        refunds=[
            RefundCall("f1", "cust", "rd1", ("CCCC",), Outcome.OK, refund_id="rf1", points=100)
        ],
    )
    return snap, journal


def test_a_consistent_snapshot_has_no_violation() -> None:
    snap, journal = consistent()
    assert check(snap, [CUSTOMER], journal) == []


def _double_deduction(snap: Snapshot, journal: Journal) -> None:
    twin = copy.deepcopy(snap.deductions[0])
    twin.deduction_id = "ded2"
    twin.ClearField("reversals")
    twin.reversed_points = 0
    snap.deductions.append(twin)


def _negative_balance(snap: Snapshot, journal: Journal) -> None:
    snap.accounts["card"].balance = -5


def _ledger_drift(snap: Snapshot, journal: Journal) -> None:
    snap.ledgers["card"][1].balance_after = 690


def _coupon_lost(snap: Snapshot, journal: Journal) -> None:
    del snap.redemptions[0].coupons[0]


def _used_twice(snap: Snapshot, journal: Journal) -> None:
    journal.uses.append(UseCall("cust", "BBBB", "o2", Outcome.OK))


def _void_used(snap: Snapshot, journal: Journal) -> None:
    snap.redemptions[0].coupons[2].used_order_id = "o9"


def _refused_but_recorded(snap: Snapshot, journal: Journal) -> None:
    journal.redeems.append(RedeemCall("r1", "cust", "p", 3, 301, Outcome.REFUSED, "RATE_CHANGED"))


def _still_pending(snap: Snapshot, journal: Journal) -> None:
    snap.redemptions[0].state = ec.REDEMPTION_STATE_PENDING


def _failed_but_charged(snap: Snapshot, journal: Journal) -> None:
    snap.redemptions[0].state = ec.REDEMPTION_STATE_FAILED
    snap.redemptions[0].failure_reason = "INSUFFICIENT_POINTS"
    del snap.redemptions[0].coupons[:]


@pytest.mark.parametrize(
    ("breakage", "invariant"),
    [
        (_negative_balance, "I1"),
        (_ledger_drift, "I2"),
        (_double_deduction, "I3"),
        (_failed_but_charged, "I3"),
        (_coupon_lost, "I4"),
        (_used_twice, "I5"),
        (_void_used, "I5"),
        (_refused_but_recorded, "I6"),
        (_still_pending, "SETTLED"),
    ],
)
def test_the_checker_names_each_broken_invariant(
    breakage: Callable[[Snapshot, Journal], None], invariant: str
) -> None:
    snap, journal = consistent()
    breakage(snap, journal)
    found = check(snap, [CUSTOMER], journal)
    assert invariant in {v.invariant for v in found}, found


# ---------------------------------------------------------------- the proxy's frame reader


def frame(frame_type: int, stream: int, payload: bytes, flags: int = 0) -> bytes:
    header = (
        len(payload).to_bytes(3, "big") + bytes([frame_type, flags]) + stream.to_bytes(4, "big")
    )
    return header + payload


def test_the_proxy_finds_where_a_response_ends_across_reads() -> None:
    settings_ack = frame(0x4, 0, b"")
    ping_ack = frame(0x6, 0, b"12345678")
    window = frame(0x8, 0, b"\x00\x00\x10\x00")
    headers = frame(0x1, 1, b"hpack")  # response headers: sent early, not the end
    data = frame(0x0, 1, b"\x00\x00\x00\x00\x02hi")
    trailers = frame(0x1, 1, b"grpc-status", flags=0x1)
    stream = settings_ack + ping_ack + window + headers + data + trailers
    start = len(settings_ack + ping_ack + window + headers + data)
    for cut in range(1, len(stream)):
        scanner = FrameScanner()
        first, second = stream[:cut], stream[cut:]
        found = [scanner.first_response_start(first), scanner.first_response_start(second)]
        if cut <= start:
            assert found == [None, start - cut]
        elif cut < start + 9:
            # The trailers' frame header straddles the reads: the cut happens at the second.
            assert found == [None, 0]
        else:
            assert found == [start, None]


async def test_the_proxy_forwards_stalls_cuts_and_refuses() -> None:
    """Against a fake upstream that answers each request with a PING ack, then a response
    (headers, a message and trailers on stream 1): what the caller gets in each mode."""
    ping_ack = frame(0x6, 0, b"12345678")
    before_trailers = frame(0x1, 1, b"hpack") + frame(0x0, 1, b"\x00\x00\x00\x00\x02ok")
    trailers = frame(0x1, 1, b"grpc-status", flags=0x1)
    response = before_trailers + trailers

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1024):
            writer.write(ping_ack + response)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    proxy = await FaultProxy(server.sockets[0].getsockname()[1]).start()

    async def ask() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"request")
        await writer.drain()
        return reader, writer

    async def read_all(reader: asyncio.StreamReader) -> bytes:
        try:
            return await asyncio.wait_for(reader.read(), 5)
        except ConnectionResetError:
            return b"<reset>"

    try:
        reader, writer = await ask()
        assert await reader.readexactly(len(ping_ack + response)) == ping_ack + response
        writer.close()

        proxy.set_mode(Mode.STALL)
        reader, writer = await ask()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(1), 0.3)
        proxy.set_mode(Mode.FORWARD)  # the held answer flows on
        assert await reader.readexactly(len(ping_ack + response)) == ping_ack + response
        writer.close()

        proxy.set_mode(Mode.CUT)
        reader, writer = await ask()
        # The request went through, and what came before the trailers does too; the
        # trailers do not, so no gRPC client takes it for an answer; the connection is gone.
        assert await read_all(reader) in (ping_ack + before_trailers, b"<reset>")
        writer.close()
        assert proxy.stats.cut == 1

        proxy.set_mode(Mode.REFUSE)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await read_all(reader) in (b"", b"<reset>")
        writer.close()
        assert proxy.stats.refused == 1
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()
