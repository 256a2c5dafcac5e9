"""What an operator sees in a real terminal: the CLI run in a pseudo-terminal of a set size."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time

from rich.cells import cell_len

from tests.cli.conftest import CLI, Cli
from tests.cli.test_ecommerce_commands import _coffee_product, _customer_with_points

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def in_terminal(
    args: list[str], columns: int, token: str, rows: int = 50, exit_code: int = 0
) -> str:
    """Run the CLI with a pseudo-terminal of columns x rows as stdin, stdout and stderr."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    # The size must come from the terminal itself, not from variables that override it.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("POINTSBRIDGE_") and k not in ("COLUMNS", "LINES")
    }
    process = subprocess.Popen(
        [str(CLI), *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**env, "TERM": "xterm-256color", "POINTSBRIDGE_TOKEN": token},
        start_new_session=True,
    )
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=10) == exit_code, output.decode(errors="replace")
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    return _ESCAPES.sub("", output.decode()).replace("\r\n", "\n")


async def terminal(shop: Cli, columns: int, *args: str, exit_code: int = 0) -> str:
    flags = ["--cardpoints", shop.cardpoints, "--ecommerce", shop.ecommerce]
    return await asyncio.to_thread(
        in_terminal, [*flags, *args], columns, shop.token, exit_code=exit_code
    )


def assert_whole(screen: str, columns: int, values: list[str]) -> None:
    """Nothing is wider than the terminal or cut short, and each value is on a line, whole."""
    lines = screen.splitlines()
    assert all(cell_len(line) <= columns for line in lines), screen
    assert "…" not in screen, screen
    for value in values:
        assert any(re.search(rf"(^|\s){re.escape(value)}(\s|$)", line) for line in lines), (
            value,
            screen,
        )


async def test_listings_keep_every_code_id_and_amount_whole_at_80_and_120_columns(
    shop: Cli,
) -> None:
    await asyncio.gather(
        _coffee_product(shop), _customer_with_points(shop, "alice@example", "alice-card", 5000)
    )
    redeemed = await shop.json("redeem", "alice@example", "coffee-10", "3")
    redemption = redeemed["redemption"]
    codes = [c["code"] for c in redemption["coupons"]]
    coupons_seen = [*codes, redemption["redemption_id"], "ISSUED", "CNY 10.00"]
    ledger_seen = ["DEDUCTION", "CREDIT", "-3000", "+5000", "2000", "5000", "alice-card-welcome"]
    ledger_seen.append(f"redemption:{redemption['redemption_id']}")
    redemptions_seen = [redemption["redemption_id"], "COMPLETED", "coffee-10", "3000"]

    for columns in (80, 120):
        coupons = await terminal(shop, columns, "coupons", "list", "alice@example")
        assert_whole(coupons, columns, coupons_seen)
        ledger = await terminal(shop, columns, "accounts", "transactions", "alice-card")
        assert_whole(ledger, columns, ledger_seen)
        history = await terminal(shop, columns, "redemptions", "list", "alice@example")
        assert_whole(history, columns, redemptions_seen)
        products = await terminal(shop, columns, "products", "list")
        assert_whole(products, columns, ["coffee-10", "CNY 10.00", "1000"])
        # Every column is still named: by the table's header, or on each row's lines.
        for name in ("Code", "State", "Face value", "Expires", "Order", "Redemption"):
            assert name in coupons, (columns, name, coupons)
        for name in ("Type", "Points", "Balance after", "Request id"):
            assert name in ledger, (columns, name, ledger)

    # 120 columns hold the coupons as a table, one line per coupon; 80 do not.
    wide = await terminal(shop, 120, "coupons", "list", "alice@example")
    assert re.search(r"^\s*Code\s+State\s+Product\s+Face value", wide, re.MULTILINE), wide
    for code in codes:
        assert re.search(rf"{code}\s+ISSUED\s+coffee-10\s+CNY 10\.00", wide), wide
    narrow = await terminal(shop, 80, "coupons", "list", "alice@example")
    for code in codes:
        assert re.search(rf"^Code\s+{code}\s*$", narrow, re.MULTILINE), narrow
    assert "1 of 3" in narrow and "3 of 3" in narrow


async def test_a_refusal_wraps_between_words_in_a_terminal(shop: Cli) -> None:
    await asyncio.gather(
        _coffee_product(shop), _customer_with_points(shop, "alice@example", "alice-card", 5000)
    )
    args = ("redeem", "alice@example", "coffee-10", "1", "--expected-points", "999")
    screen = await terminal(shop, 80, *args, exit_code=3)
    piped = await shop(*args)
    sentence = piped.stderr.splitlines()[0]
    assert len(sentence) > 80
    lines = screen.strip().splitlines()
    assert all(len(line) <= 80 for line in lines), screen
    # The same words in the same order, each whole on its line.
    assert " ".join(screen.split()).startswith(sentence), screen
    words = set(sentence.split())
    assert all(word in words for line in lines[:3] for word in line.split()), screen
