"""Use cases of the e-commerce service against fakes: redemptions.

An in-memory store and a fake cardpoints; the world and its helpers are in world.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from ecommerce.domain import commands, coupon_codes
from ecommerce.domain.errors import DomainError, PointsSystemUnavailable
from ecommerce.domain.model import (
    CouponProduct,
    CouponState,
    RedemptionState,
)
from ecommerce.service_layer import products, recovery, redemptions
from tests.ecommerce.fakes import (
    START,
)
from tests.ecommerce.fakes.repositories import FakeProducts
from tests.ecommerce.world import (
    World,
    add_customer,
    balance,
    redeem,
    refused,
    stored_coupons,
    stored_redemptions,
)

# ---------------------------------------------------------------- redemptions


async def test_redeem_deducts_once_and_issues_exactly_quantity_coupons(shop: World) -> None:
    redemption = await redeem(shop, quantity=3)

    assert redemption.state is RedemptionState.COMPLETED
    assert (redemption.points, redemption.points_per_coupon, redemption.ratio_version) == (
        3000,
        1000,
        1,
    )
    assert balance(shop) == 7000
    [deduction] = shop.points.successful_deductions()
    assert deduction.request_id == f"redemption:{redemption.redemption_id}"
    assert redemption.deduction_id == deduction.deduction_id
    codes = {c.code for c in redemption.coupons}
    assert len(codes) == 3
    assert all(coupon_codes.parse("code", code) == code for code in codes)
    assert {c.code for c in stored_coupons(shop)} == codes
    assert {(c.state, c.expire_time) for c in redemption.coupons} == {
        (CouponState.ISSUED, START + timedelta(days=30))
    }


async def test_refusal_fails_the_redemption_and_a_replay_gets_the_same_refusal(
    shop: World,
) -> None:
    with pytest.raises(DomainError) as first:
        await redeem(shop, quantity=11)
    reason, metadata = refused(first)
    assert reason == "INSUFFICIENT_POINTS"
    [failed] = stored_redemptions(shop)
    assert metadata["redemption_id"] == failed.redemption_id
    assert (failed.state, failed.failure_reason) == (RedemptionState.FAILED, "INSUFFICIENT_POINTS")
    assert stored_coupons(shop) == []
    assert balance(shop) == 10_000

    calls = len(shop.points.calls)
    with pytest.raises(DomainError) as replay:
        await redeem(shop, quantity=11)
    assert refused(replay) == (reason, metadata)
    assert str(replay.value) == str(first.value)
    assert len(shop.points.calls) == calls, "a finished redemption is not sent again"


@pytest.mark.parametrize(("lost", "unreachable"), [(1, 0), (0, 5)])
async def test_unknown_outcome_stays_pending_and_a_retry_completes_exactly_once(
    shop: World, lost: int, unreachable: int
) -> None:
    shop.points.lose_replies = lost
    shop.points.unreachable = unreachable
    with pytest.raises(PointsSystemUnavailable) as excinfo:
        await redeem(shop, "req-9", quantity=2)
    [pending] = stored_redemptions(shop)
    assert pending.state is RedemptionState.PENDING
    assert excinfo.value.metadata == {
        "redemption_id": pending.redemption_id,
        "request_id": "req-9",
    }
    assert stored_coupons(shop) == []

    shop.points.unreachable = 0
    done = await redeem(shop, "req-9", quantity=2)
    again = await redeem(shop, "req-9", quantity=2)
    # Settling the stale PENDING copy again, as a concurrent attempt would, changes nothing.
    settled = await redemptions.settle(shop.steps, shop.points, pending)

    assert done.redemption_id == again.redemption_id == settled.redemption_id
    assert done.state is RedemptionState.COMPLETED
    assert len(shop.points.successful_deductions()) == 1
    assert balance(shop) == 8000
    assert len(stored_coupons(shop)) == 2
    assert {c.code for c in again.coupons} == {c.code for c in done.coupons}


async def test_a_redemption_reads_its_product_once(
    shop: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[str] = []
    get = FakeProducts.get

    def counted(self: FakeProducts, product_id: str) -> CouponProduct | None:
        reads.append(product_id)
        return get(self, product_id)

    monkeypatch.setattr(FakeProducts, "get", counted)
    redemption = await redeem(shop, quantity=2)

    assert redemption.state is RedemptionState.COMPLETED
    assert reads == ["coupon-10"]


async def test_a_stale_pending_copy_of_a_failed_redemption_replays_the_stored_refusal(
    shop: World,
) -> None:
    shop.points.unreachable = 1
    with pytest.raises(PointsSystemUnavailable):
        await redeem(shop, "req-8", quantity=11)
    [pending] = stored_redemptions(shop)
    shop.points.unreachable = 0
    with pytest.raises(DomainError) as first:
        await redeem(shop, "req-8", quantity=11)
    [failed] = stored_redemptions(shop)

    # Settling the stale PENDING copy again, as a concurrent attempt would, changes nothing.
    with pytest.raises(DomainError) as again:
        await redemptions.settle(shop.steps, shop.points, pending)

    assert refused(again) == refused(first)
    assert refused(first)[0] == "INSUFFICIENT_POINTS"
    assert stored_redemptions(shop) == [failed]
    assert failed.state is RedemptionState.FAILED
    assert balance(shop) == 10_000


async def test_the_recovery_sweep_finishes_pending_redemptions(shop: World) -> None:
    """`recover` is what the server's recovery loop runs on every sweep."""
    await add_customer(shop, "bob", balance=100)
    shop.points.unreachable = 2
    for request_id, customer in (("r-a", "alice"), ("r-b", "bob")):
        with pytest.raises(PointsSystemUnavailable):
            await redeem(shop, request_id, customer_id=customer, quantity=1)
    at_once = recovery.RecoveryPolicy(settle_delay=timedelta(0))
    assert (await recovery.recover(shop.steps, shop.points, at_once)).settled == 2
    states = {r.customer_id: (r.state, r.failure_reason) for r in stored_redemptions(shop)}
    assert states == {
        "alice": (RedemptionState.COMPLETED, ""),
        "bob": (RedemptionState.FAILED, "INSUFFICIENT_POINTS"),
    }
    assert (await recovery.recover(shop.steps, shop.points, at_once)).settled == 0


async def test_rate_changed_between_quote_and_redeem_stores_and_deducts_nothing(
    shop: World,
) -> None:
    quote = await redemptions.quote_redemption(
        shop.steps,
        shop.points,
        commands.QuoteRedemption(customer_id="alice", product_id="coupon-10", quantity=2),
    )
    await shop.steps.write(
        products.set_exchange_ratio,
        commands.SetExchangeRatio(product_id="coupon-10", points_per_coupon=1500),
    )
    with pytest.raises(DomainError) as excinfo:
        await redeem(shop, quantity=2, expected_points=quote.points_required)
    assert refused(excinfo) == (
        "RATE_CHANGED",
        {
            "expected_points": "2000",
            "quoted_ratio_version": "1",
            "points_required": "3000",
            "ratio_version": "2",
        },
    )
    assert excinfo.value.message == (
        "the quote was 2000 points, at ratio version 1; "
        "the ratio has changed since: at ratio version 2 it costs 3000 points"
    )
    assert stored_redemptions(shop) == []
    assert "DeductPoints" not in shop.points.calls
    fresh = await redeem(shop, quantity=2, expected_points=3000)
    assert (fresh.points, fresh.ratio_version) == (3000, 2)


async def test_expected_points_that_no_ratio_ever_quoted_are_a_mismatch_not_a_rate_change(
    shop: World,
) -> None:
    # 999 for one coupon: the ratio did not change, the points were never a quote.
    for expected, quantity in ((999, 1), (1999, 2), (1500, 2)):
        with pytest.raises(DomainError) as excinfo:
            await redeem(shop, f"r-{expected}", quantity=quantity, expected_points=expected)
        assert refused(excinfo) == (
            "POINTS_MISMATCH",
            {
                "expected_points": str(expected),
                "points_required": str(1000 * quantity),
                "ratio_version": "1",
            },
        )
        assert excinfo.value.message == (
            f"expected_points {expected} is not what {quantity} x coupon-10 cost at any ratio "
            f"version; at ratio version 1 it costs {1000 * quantity} points"
        )
        assert [v.field for v in excinfo.value.violations] == ["expected_points"]
    assert stored_redemptions(shop) == []
    assert "DeductPoints" not in shop.points.calls


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"quantity": 21}, "QUANTITY_LIMIT_EXCEEDED"),
        ({"product_id": "missing"}, "PRODUCT_NOT_FOUND"),
        ({"customer_id": "stranger"}, "CARD_NOT_LINKED"),
    ],
)
async def test_refused_before_anything_is_stored(
    shop: World, change: dict[str, object], reason: str
) -> None:
    request = {"request_id": "r", "customer_id": "alice", "product_id": "coupon-10", "quantity": 1}
    request.update(change)
    with pytest.raises(DomainError) as excinfo:
        cmd = commands.RedeemPoints(expected_points=None, **request)  # type: ignore[arg-type]
        await redemptions.redeem_points(shop.steps, shop.points, cmd)
    assert excinfo.value.reason == reason
    assert stored_redemptions(shop) == []
    assert "DeductPoints" not in shop.points.calls


async def test_inactive_product_is_refused(shop: World) -> None:
    await shop.steps.write(
        products.set_coupon_product_active,
        commands.SetCouponProductActive(product_id="coupon-10", active=False),
    )
    with pytest.raises(DomainError) as excinfo:
        await redeem(shop)
    assert excinfo.value.reason == "PRODUCT_INACTIVE"
    assert stored_redemptions(shop) == []


async def test_every_bad_redeem_field_is_named(shop: World) -> None:
    with pytest.raises(DomainError) as excinfo:
        await redemptions.redeem_points(
            shop.steps,
            shop.points,
            commands.RedeemPoints(
                request_id="bad id!",
                customer_id="",
                product_id="x" * 65,
                quantity=0,
                expected_points=-5,
            ),
        )
    assert excinfo.value.reason == "INVALID_FIELD"
    assert [v.field for v in excinfo.value.violations] == [
        "request_id",
        "customer_id",
        "product_id",
        "quantity",
        "expected_points",
    ]
    assert stored_redemptions(shop) == []


async def test_a_replay_uses_the_recorded_ratio_and_other_parameters_are_refused(
    shop: World,
) -> None:
    first = await redeem(shop, quantity=2, expected_points=2000)
    await shop.steps.write(
        products.set_exchange_ratio,
        commands.SetExchangeRatio(product_id="coupon-10", points_per_coupon=5),
    )
    await shop.steps.write(
        products.set_coupon_product_active,
        commands.SetCouponProductActive(product_id="coupon-10", active=False),
    )

    replay = await redeem(shop, quantity=2, expected_points=2000)
    assert replay == first
    assert [c.code for c in replay.coupons] == [c.code for c in first.coupons]
    assert await redeem(shop, quantity=2) == first

    for change in ({"quantity": 3}, {"customer_id": "bob"}, {"expected_points": 10}):
        with pytest.raises(DomainError) as excinfo:
            await redeem(shop, **change)
        assert refused(excinfo) == ("REQUEST_ID_REUSED", {"request_id": "req-1"})
    assert len(shop.points.successful_deductions()) == 1


async def test_redemptions_are_private_paged_newest_first_and_filterable(shop: World) -> None:
    made = [await redeem(shop, f"r-{i}", quantity=1) for i in range(3)]
    with pytest.raises(DomainError):
        await redeem(shop, "r-big", quantity=20)

    got = await shop.steps.read(
        redemptions.get_redemption,
        commands.GetRedemption(customer_id="alice", redemption_id=made[0].redemption_id),
    )
    assert got == made[0]
    assert len(got.coupons) == 1
    with pytest.raises(DomainError) as excinfo:
        await shop.steps.read(
            redemptions.get_redemption,
            commands.GetRedemption(customer_id="bob", redemption_id=made[0].redemption_id),
        )
    assert excinfo.value.reason == "NOT_OWNER"

    first = await shop.steps.read(
        redemptions.list_redemptions,
        commands.ListRedemptions(customer_id="alice", page_size=2, page_token="", state=""),
    )
    second = await shop.steps.read(
        redemptions.list_redemptions,
        commands.ListRedemptions(
            customer_id="alice", page_size=2, page_token=first.next_page_token, state=""
        ),
    )
    assert [r.request_id for r in first.items + second.items] == ["r-big", "r-2", "r-1", "r-0"]
    assert second.next_page_token == ""
    failed = await shop.steps.read(
        redemptions.list_redemptions,
        commands.ListRedemptions(customer_id="alice", page_size=0, page_token="", state="FAILED"),
    )
    assert [r.request_id for r in failed.items] == ["r-big"]

    with pytest.raises(DomainError) as bad:
        await shop.steps.read(
            redemptions.list_redemptions,
            commands.ListRedemptions(
                customer_id="alice", page_size=1001, page_token="junk", state="7"
            ),
        )
    assert [v.field for v in bad.value.violations] == ["state", "page_size", "page_token"]
