"""Products, cards, quote, redeem, redemptions and coupons through live servers of both sides."""

from __future__ import annotations

import asyncio
import json
import re

from servicekit.devtools.credentials import bearer
from tests.auth import Callers
from tests.cli.conftest import Cli, flat
from tests.support import free_port


async def _customer_with_points(shop: Cli, customer: str, card: str, points: int) -> None:
    await shop.ok("accounts", "open", card, "--holder", customer)
    # Independent calls run side by side: each CLI start costs a few hundred milliseconds.
    await asyncio.gather(
        shop.ok("accounts", "credit", card, str(points), "--request-id", f"{card}-welcome"),
        shop.ok("cards", "link", customer, card),
    )


async def _coffee_product(shop: Cli) -> None:
    await shop.ok(
        "products",
        "create",
        "coffee-10",
        "--name",
        "Coffee voucher",
        "--face-value",
        "1000",
        "--currency",
        "CNY",
        "--points-per-coupon",
        "1000",
        "--max-quantity",
        "5",
    )


async def test_products_and_their_ratio_history(shop: Cli) -> None:
    created = await shop.ok(
        "products",
        "create",
        "tea-5",
        "--name",
        "Tea voucher",
        "--face-value",
        "500",
        "--currency",
        "CNY",
        "--points-per-coupon",
        "400",
    )
    assert "tea-5" in created
    assert "CNY 5.00" in created

    changed = await shop.ok("products", "set-ratio", "tea-5", "450")
    assert "tea-5 now costs 450 points per coupon (ratio version 2)." in changed

    history = await shop.json("products", "ratios", "tea-5")
    assert [(r["version"], r["points_per_coupon"]) for r in history["ratios"]] == [
        ("2", "450"),
        ("1", "400"),
    ]

    await shop.ok("products", "deactivate", "tea-5")
    active = await shop.json("products", "list")
    assert active["products"] == []
    everything = await shop.json("products", "list", "--include-inactive", "--all")
    [tea] = everything["products"]
    assert (tea["product_id"], tea["active"], tea["validity_days"]) == ("tea-5", False, 365)
    assert everything["next_page_token"] == ""
    reactivated = await shop.json("products", "activate", "tea-5")
    assert reactivated["product"]["active"] is True

    duplicate = await shop(
        "products",
        "create",
        "tea-5",
        "--name",
        "Other",
        "--face-value",
        "1",
        "--currency",
        "CNY",
        "--points-per-coupon",
        "1",
    )
    assert duplicate.returncode == 6
    assert duplicate.stderr.strip() == "Coupon product 'tea-5' already exists."


async def test_quote_redeem_use_and_refund(shop: Cli) -> None:
    await asyncio.gather(
        _coffee_product(shop), _customer_with_points(shop, "alice@example", "alice-card", 5000)
    )

    quote = await shop.json("quote", "alice@example", "coffee-10", "2")
    assert quote["quote"]["points_required"] == "2000"
    assert quote["quote"]["available_points"] == "5000"
    assert quote["quote"]["card_linked"] is True
    unlinked = await shop.ok("quote", "nolink@example", "coffee-10", "1")
    assert re.search(r"Available points\s+no linked card: redeeming needs one", unlinked), unlinked
    assert (await shop.json("quote", "nolink@example", "coffee-10", "1"))["quote"][
        "card_linked"
    ] is False

    redeemed = await shop.json(
        "redeem",
        "alice@example",
        "coffee-10",
        "2",
        "--expected-points",
        "2000",
        "--request-id",
        "order-1",
    )
    redemption = redeemed["redemption"]
    assert redemption["state"] == "REDEMPTION_STATE_COMPLETED"
    assert redemption["points"] == "2000"
    codes = [c["code"] for c in redemption["coupons"]]
    assert len(codes) == 2

    # Replaying the request id returns the same redemption and charges nothing more.
    replay = await shop.ok("redeem", "alice@example", "coffee-10", "2", "--request-id", "order-1")
    assert redemption["redemption_id"] in replay
    assert "COMPLETED" in replay
    balance, listed = await asyncio.gather(
        shop.json("accounts", "show", "alice-card"),
        shop.json("coupons", "list", "alice@example", "--state", "issued"),
    )
    assert balance["account"]["balance"] == "3000"
    assert sorted(c["code"] for c in listed["coupons"]) == sorted(codes)

    used = await shop.ok("coupons", "use", "alice@example", codes[0], "order-1001")
    assert re.search(r"State\s+USED", used), used
    assert "order-1001" in used
    again = await shop("coupons", "use", "alice@example", codes[0], "order-1002")
    assert again.returncode == 5
    assert again.stderr.startswith(f"Coupon {codes[0]!r} was already used")

    refund = await shop.json(
        "coupons",
        "refund",
        "alice@example",
        redemption["redemption_id"],
        codes[1],
        "--request-id",
        "refund-1",
    )
    assert refund["refund"]["points"] == "1000"
    assert refund["refund"]["codes"] == [codes[1]]
    balance, shown, history = await asyncio.gather(
        shop.json("accounts", "show", "alice-card"),
        shop.ok("redemptions", "show", "alice@example", redemption["redemption_id"]),
        shop.json("redemptions", "list", "alice@example", "--state", "completed"),
    )
    assert balance["account"]["balance"] == "4000"
    assert re.search(rf"{codes[0]}\s+USED", shown), shown
    assert re.search(rf"{codes[1]}\s+VOID", shown), shown
    assert [r["refunded_points"] for r in history["redemptions"]] == ["1000"]


async def test_operators_list_every_customers_redemptions(shop: Cli) -> None:
    await asyncio.gather(
        _coffee_product(shop),
        _customer_with_points(shop, "alice@example", "alice-card", 5000),
        _customer_with_points(shop, "bob@example", "bob-card", 5000),
    )
    alice = await shop.json("redeem", "alice@example", "coffee-10", "1")
    bob = await shop.json("redeem", "bob@example", "coffee-10", "2")
    listed = await shop.ok("redemptions", "list")
    for who, redeemed in (("alice@example", alice), ("bob@example", bob)):
        rid = redeemed["redemption"]["redemption_id"]
        assert re.search(rf"{rid}\s+{who}\s+COMPLETED", listed), listed
    every = await shop.json(
        "redemptions", "list", "--state", "completed", "--page-size", "1", "--all"
    )
    assert [r["customer_id"] for r in every["redemptions"]] == ["bob@example", "alice@example"]
    # One customer's, as before.
    mine = await shop.json("redemptions", "list", "alice@example")
    assert [r["customer_id"] for r in mine["redemptions"]] == ["alice@example"]


async def test_redeem_refusals_exit_5_with_the_reason(shop: Cli) -> None:
    await asyncio.gather(
        _coffee_product(shop), _customer_with_points(shop, "bob@example", "bob-card", 1500)
    )
    unlinked, short, too_many = await asyncio.gather(
        shop("redeem", "nolink@example", "coffee-10", "1"),
        shop("redeem", "bob@example", "coffee-10", "2", "--request-id", "bob-1"),
        shop("quote", "bob@example", "coffee-10", "6"),
    )
    assert unlinked.returncode == 5
    assert "Customer 'nolink@example' has no linked card account" in unlinked.stderr
    assert too_many.returncode == 5
    assert too_many.stderr.strip() == (
        "6 coupons is more than coupon product 'coffee-10' allows in one redemption."
    )
    assert short.returncode == 5
    assert short.stderr.strip().endswith("does not have enough points, so nothing was deducted.")
    # A final refusal: the same request id could only repeat it, so none is suggested.
    for final in (
        await shop("redeem", "bob@example", "coffee-10", "2"),
        await shop("redeem", "nolink@example", "coffee-10", "1"),
    ):
        assert final.returncode == 5
        assert "request-id" not in final.stderr and "Request id" not in final.stderr, final.stderr
        assert len(final.stderr.strip().splitlines()) == 1, final.stderr

    # No ratio ever cost 999 points a coupon: the points were never a quote.
    unquoted = await shop("redeem", "bob@example", "coffee-10", "1", "--expected-points", "999")
    assert unquoted.returncode == 3
    assert flat(unquoted.stderr).startswith(
        "999 points is not what 1 coupon of coupon product 'coffee-10' cost, at this or any "
        "earlier exchange ratio: they cost 1000 points (ratio version 1), so nothing was "
        "deducted; quote again and pass those points."
    ), unquoted.stderr
    assert "expected_points: must be 1000, the quote's points" in unquoted.stderr

    await shop.ok("products", "set-ratio", "coffee-10", "1200")
    stale = await shop("redeem", "bob@example", "coffee-10", "1", "--expected-points", "1000")
    assert stale.returncode == 5
    assert stale.stderr.strip() == (
        "The exchange ratio of coupon product 'coffee-10' changed since the quote: the quote "
        "was 1000 points at ratio version 1, and it is now 1200 points at ratio version 2, so "
        "nothing was deducted; quote again and redeem with the new points."
    )

    await shop.ok("accounts", "freeze", "bob-card")
    frozen = await shop("redeem", "bob@example", "coffee-10", "1", "--request-id", "bob-2")
    assert frozen.returncode == 5
    assert "is frozen" in frozen.stderr


async def test_unknown_things_exit_4(shop: Cli) -> None:
    missing_card, missing_product, missing_redemption = await asyncio.gather(
        shop("cards", "link", "carol@example", "ghost-card"),
        shop("products", "set-ratio", "ghost-product", "10"),
        shop("redemptions", "show", "carol@example", "rd_nothing"),
    )
    assert missing_card.returncode == 4
    assert missing_card.stderr.strip() == "Card account 'ghost-card' does not exist."
    assert missing_product.returncode == 4
    assert missing_product.stderr.strip() == "Coupon product 'ghost-product' does not exist."
    assert missing_redemption.returncode == 4
    assert missing_redemption.stderr.strip() == (
        "Redemption 'rd_nothing' does not exist or does not belong to customer 'carol@example'."
    )


async def test_the_ecommerce_address_comes_from_the_environment(shop: Cli) -> None:
    result = await shop(
        "products",
        "list",
        "--json",
        env={"POINTSBRIDGE_CLI_ECOMMERCE": shop.ecommerce},
        addresses=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"products": [], "next_page_token": ""}


async def test_unreachable_ecommerce_exits_7_naming_the_address(cli: Cli) -> None:
    result = await cli("products", "list")
    assert result.returncode == 7
    assert result.stderr.startswith(f"Cannot reach the ecommerce service at {cli.ecommerce};")
    assert "--ecommerce" in result.stderr


async def test_reconcile_is_clean_then_names_a_stray_deduction(shop: Cli, auth: Callers) -> None:
    await _customer_with_points(shop, "rita@example", "rita-card", 10_000)
    await _coffee_product(shop)
    redeemed = await shop.json("redeem", "rita@example", "coffee-10", "3", "--request-id", "r-1")
    codes = [c["code"] for c in redeemed["redemption"]["coupons"]]
    await shop.ok(
        "coupons", "refund", "rita@example", redeemed["redemption"]["redemption_id"], codes[0]
    )

    clean = await shop("reconcile", "--json")
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["clean"] is True
    assert report["counted"] == {"redemptions": 1, "deductions": 1, "refunds": 1, "reversals": 1}
    human = await shop.ok("reconcile")
    assert "clean: both systems agree" in human

    # Points taken at the bank that no redemption accounts for.
    import grpc

    from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
    from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc

    with grpc.insecure_channel(shop.cardpoints) as channel:
        await asyncio.to_thread(
            cp_grpc.CardPointsServiceStub(channel).DeductPoints,
            cp.DeductPointsRequest(
                request_id="stray-1",
                account_id="rita-card",
                points=500,
                coupon_quantity=1,
                points_per_coupon=500,
                merchant_id="elsewhere",
            ),
            timeout=10,
            metadata=bearer(auth.superuser),
        )
    dirty = await shop("reconcile", "--json")
    assert dirty.returncode == 10
    [mismatch] = json.loads(dirty.stdout)["mismatches"]
    assert mismatch["kind"] == "deduction_without_redemption"
    assert "stray-1" in mismatch["detail"]
    text = await shop("reconcile")
    assert text.returncode == 10
    assert "1 mismatches" in text.stdout

    bad = await shop("reconcile", "--since", "yesterday")
    assert bad.returncode == 2


async def test_reconcile_names_the_service_it_cannot_reach(shop: Cli) -> None:
    """A failed page fetch stops the comparison and says which service and address."""
    down = f"127.0.0.1:{free_port()}"
    result = await Cli(cardpoints=down, ecommerce=shop.ecommerce, token=shop.token)(
        "reconcile", "--json"
    )
    assert result.returncode == 7, result.stderr
    assert result.stderr.startswith(f"Cannot reach the cardpoints service at {down};")
    assert result.stdout == ""
