"""Use cases of the e-commerce service against fakes: an in-memory store and a fake cardpoints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta

import pytest

from ecommerce.domain import commands, coupon_codes
from ecommerce.domain.card_points import AccountState, ReversalOrder
from ecommerce.domain.errors import AccountNotFound, DomainError, PointsSystemUnavailable
from ecommerce.domain.model import (
    Coupon,
    CouponProduct,
    CouponState,
    Redemption,
    RedemptionState,
    RefundState,
    UnsettledKind,
)
from ecommerce.service_layer import coupons, products, recovery, redemptions, refunds
from ecommerce.service_layer.ports import EcommerceSteps
from servicekit.errors import FieldViolation
from tests.ecommerce.fakes import (
    START,
    FakeClock,
    FakeDatabase,
    FakePointsGateway,
    fake_steps,
)


@dataclass
class World:
    steps: EcommerceSteps
    database: FakeDatabase
    points: FakePointsGateway
    clock: FakeClock


@pytest.fixture
def world() -> World:
    database = FakeDatabase()
    clock = FakeClock()
    return World(fake_steps(database, clock), database, FakePointsGateway(), clock)


# ---------------------------------------------------------------- helpers


async def add_product(
    w: World,
    product_id: str = "coupon-10",
    *,
    points_per_coupon: int = 1000,
    face_value_minor: int = 1000,
    validity_days: int = 30,
    max_quantity: int = 20,
) -> CouponProduct:
    return await w.steps.write(
        products.create_coupon_product,
        commands.CreateCouponProduct(
            product_id=product_id,
            display_name="10 CNY off",
            face_value_minor=face_value_minor,
            currency="CNY",
            points_per_coupon=points_per_coupon,
            validity_days=validity_days,
            max_quantity_per_redemption=max_quantity,
        ),
    )


async def add_customer(w: World, customer_id: str = "alice", balance: int = 10_000) -> None:
    w.points.open(f"card-{customer_id}", balance)
    await products.link_card_account(
        w.steps,
        w.points,
        commands.LinkCardAccount(customer_id=customer_id, card_account_id=f"card-{customer_id}"),
    )


async def redeem(
    w: World,
    request_id: str = "req-1",
    *,
    customer_id: str = "alice",
    product_id: str = "coupon-10",
    quantity: int = 3,
    expected_points: int | None = None,
) -> Redemption:
    return await redemptions.redeem_points(
        w.steps,
        w.points,
        commands.RedeemPoints(
            request_id=request_id,
            customer_id=customer_id,
            product_id=product_id,
            quantity=quantity,
            expected_points=expected_points,
        ),
    )


@pytest.fixture
async def shop(world: World) -> World:
    """One product (1000 points a coupon) and alice, linked to a card with 10,000 points."""
    await add_product(world)
    await add_customer(world)
    return world


def stored_redemptions(w: World) -> list[Redemption]:
    return [r for _, r in w.database.state.redemptions.values()]


def stored_coupons(w: World) -> list[Coupon]:
    return [c for _, c, _ in w.database.state.coupons.values()]


def balance(w: World, customer_id: str = "alice") -> int:
    return w.points.accounts[f"card-{customer_id}"].balance


def refused(excinfo: pytest.ExceptionInfo[DomainError]) -> tuple[str, dict[str, str]]:
    return excinfo.value.reason, excinfo.value.metadata


# ---------------------------------------------------------------- parameter management


async def test_product_starts_at_ratio_version_1_and_each_change_adds_a_version(
    world: World,
) -> None:
    product = await add_product(world)
    assert (product.ratio_version, product.points_per_coupon, product.active) == (1, 1000, True)
    world.clock.advance(timedelta(hours=1))
    ratio, changed = await world.steps.write(
        products.set_exchange_ratio,
        commands.SetExchangeRatio(product_id="coupon-10", points_per_coupon=1200),
    )
    assert (ratio.version, ratio.points_per_coupon, ratio.effective_time) == (
        2,
        1200,
        START + timedelta(hours=1),
    )
    assert (changed.ratio_version, changed.points_per_coupon) == (2, 1200)
    await world.steps.write(
        products.set_exchange_ratio,
        commands.SetExchangeRatio(product_id="coupon-10", points_per_coupon=900),
    )

    first = await world.steps.read(
        products.list_exchange_ratios,
        commands.ListExchangeRatios(product_id="coupon-10", page_size=2, page_token=""),
    )
    assert [r.version for r in first.items] == [3, 2]
    rest = await world.steps.read(
        products.list_exchange_ratios,
        commands.ListExchangeRatios(
            product_id="coupon-10", page_size=2, page_token=first.next_page_token
        ),
    )
    assert [(r.version, r.points_per_coupon) for r in rest.items] == [(1, 1000)]
    assert rest.next_page_token == ""


async def test_duplicate_product_is_refused(world: World) -> None:
    await add_product(world)
    with pytest.raises(DomainError) as excinfo:
        await add_product(world, points_per_coupon=5)
    assert excinfo.value.reason == "PRODUCT_ALREADY_EXISTS"
    assert world.database.state.products["coupon-10"][1].points_per_coupon == 1000


async def test_every_bad_product_field_is_named_and_nothing_is_stored(world: World) -> None:
    with pytest.raises(DomainError) as excinfo:
        await world.steps.write(
            products.create_coupon_product,
            commands.CreateCouponProduct(
                product_id="no spaces",
                display_name="",
                face_value_minor=0,
                currency="cny",
                points_per_coupon=-1,
                validity_days=0,
                max_quantity_per_redemption=1001,
            ),
        )
    assert excinfo.value.reason == "INVALID_FIELD"
    assert [v.field for v in excinfo.value.violations] == [
        "product_id",
        "display_name",
        "face_value_minor",
        "currency",
        "points_per_coupon",
        "validity_days",
        "max_quantity_per_redemption",
    ]
    assert world.database.commits == 0


async def test_inactive_products_are_listed_only_on_request(world: World) -> None:
    await add_product(world, "a")
    await add_product(world, "b")
    await add_product(world, "c")
    await world.steps.write(
        products.set_coupon_product_active,
        commands.SetCouponProductActive(product_id="b", active=False),
    )
    active = await world.steps.read(
        products.list_coupon_products,
        commands.ListCouponProducts(page_size=0, page_token="", include_inactive=False),
    )
    assert [p.product_id for p in active.items] == ["a", "c"]
    first = await world.steps.read(
        products.list_coupon_products,
        commands.ListCouponProducts(page_size=2, page_token="", include_inactive=True),
    )
    second = await world.steps.read(
        products.list_coupon_products,
        commands.ListCouponProducts(
            page_size=2, page_token=first.next_page_token, include_inactive=True
        ),
    )
    assert [p.product_id for p in first.items + second.items] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("state", "reason"),
    [(AccountState.FROZEN, "ACCOUNT_FROZEN"), (AccountState.CLOSED, "ACCOUNT_CLOSED")],
)
async def test_link_needs_an_active_account(world: World, state: AccountState, reason: str) -> None:
    world.points.open("card-x", 100, state)
    with pytest.raises(DomainError) as excinfo:
        await products.link_card_account(
            world.steps,
            world.points,
            commands.LinkCardAccount(customer_id="bob", card_account_id="card-x"),
        )
    assert excinfo.value.reason == reason
    with pytest.raises(AccountNotFound):
        await products.link_card_account(
            world.steps,
            world.points,
            commands.LinkCardAccount(customer_id="bob", card_account_id="nope"),
        )
    assert world.database.state.links == {}


async def test_relinking_replaces_the_card(world: World) -> None:
    await add_customer(world, "bob")
    world.points.open("card-new", 5)
    link = await products.link_card_account(
        world.steps,
        world.points,
        commands.LinkCardAccount(customer_id="bob", card_account_id="card-new"),
    )
    assert link.card_account_id == "card-new"
    assert world.database.state.links["bob"].card_account_id == "card-new"


async def test_link_when_cardpoints_is_down_is_unavailable(world: World) -> None:
    world.points.open("card-x", 100)
    world.points.unreachable = 1
    with pytest.raises(PointsSystemUnavailable):
        await products.link_card_account(
            world.steps,
            world.points,
            commands.LinkCardAccount(customer_id="bob", card_account_id="card-x"),
        )


# ---------------------------------------------------------------- quotes


async def test_quote_is_exact_and_shows_the_balance_when_linked(shop: World) -> None:
    quote = await redemptions.quote_redemption(
        shop.steps,
        shop.points,
        commands.QuoteRedemption(customer_id="alice", product_id="coupon-10", quantity=7),
    )
    assert (quote.points_required, quote.face_value_total_minor, quote.available_points) == (
        7000,
        7000,
        10_000,
    )
    assert (quote.points_per_coupon, quote.ratio_version, quote.currency) == (1000, 1, "CNY")
    assert quote.card_linked
    unlinked = await redemptions.quote_redemption(
        shop.steps,
        shop.points,
        commands.QuoteRedemption(customer_id="nobody", product_id="coupon-10", quantity=1),
    )
    # Redeeming would be refused with CARD_NOT_LINKED: the quote says so up front.
    assert (unlinked.available_points, unlinked.card_linked) == (None, False)


async def test_quote_without_cardpoints_leaves_the_balance_out(shop: World) -> None:
    shop.points.unreachable = 1
    quote = await redemptions.quote_redemption(
        shop.steps,
        shop.points,
        commands.QuoteRedemption(customer_id="alice", product_id="coupon-10", quantity=2),
    )
    assert (quote.points_required, quote.available_points, quote.card_linked) == (2000, None, True)


async def test_quote_overflow_is_refused_not_wrapped(world: World) -> None:
    await add_product(world, "huge", points_per_coupon=2**62, max_quantity=10)
    with pytest.raises(DomainError) as excinfo:
        await redemptions.quote_redemption(
            world.steps,
            world.points,
            commands.QuoteRedemption(customer_id="alice", product_id="huge", quantity=2),
        )
    assert excinfo.value.reason == "INVALID_FIELD"
    assert [v.field for v in excinfo.value.violations] == ["quantity"]


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


# ---------------------------------------------------------------- coupons


async def test_a_coupon_is_used_once_and_the_same_order_replays(shop: World) -> None:
    [coupon] = (await redeem(shop, quantity=1)).coupons
    shop.clock.advance(timedelta(minutes=5))
    used = await shop.steps.write(
        coupons.use_coupon,
        commands.UseCoupon(customer_id="alice", code=coupon.code, order_id="order-1"),
    )
    assert (used.state, used.used_order_id, used.use_time) == (
        CouponState.USED,
        "order-1",
        START + timedelta(minutes=5),
    )
    # Typed by a person: lower case and no dashes are forgiven.
    sloppy = coupon.code.replace("-", "").lower()
    assert (
        await shop.steps.write(
            coupons.use_coupon,
            commands.UseCoupon(customer_id="alice", code=sloppy, order_id="order-1"),
        )
        == used
    )
    with pytest.raises(DomainError) as excinfo:
        await shop.steps.write(
            coupons.use_coupon,
            commands.UseCoupon(customer_id="alice", code=coupon.code, order_id="order-2"),
        )
    assert refused(excinfo) == ("COUPON_ALREADY_USED", {"code": coupon.code})


async def test_unknown_foreign_and_mistyped_codes(shop: World) -> None:
    [coupon] = (await redeem(shop, quantity=1)).coupons
    with pytest.raises(DomainError) as foreign:
        await shop.steps.write(
            coupons.use_coupon,
            commands.UseCoupon(customer_id="bob", code=coupon.code, order_id="o"),
        )
    assert foreign.value.reason == "NOT_OWNER"
    with pytest.raises(DomainError) as unknown:
        await shop.steps.write(
            coupons.use_coupon,
            commands.UseCoupon(customer_id="alice", code=coupon_codes.new_code(), order_id="o"),
        )
    assert unknown.value.reason == "COUPON_NOT_FOUND"
    typo = ("2" if coupon.code[0] != "2" else "3") + coupon.code[1:]
    with pytest.raises(DomainError) as mistyped:
        await shop.steps.write(
            coupons.use_coupon, commands.UseCoupon(customer_id="alice", code=typo, order_id="o")
        )
    assert mistyped.value.reason == "INVALID_FIELD"
    assert [v.field for v in mistyped.value.violations] == ["code"]
    assert {c.state for c in stored_coupons(shop)} == {CouponState.ISSUED}


async def test_expired_coupons_read_as_expired_and_cannot_be_used(shop: World) -> None:
    [coupon] = (await redeem(shop, quantity=1)).coupons
    shop.clock.advance(timedelta(days=30))
    listed = await shop.steps.read(
        coupons.list_coupons,
        commands.ListCoupons(customer_id="alice", state="EXPIRED", page_size=0, page_token=""),
    )
    assert [(c.code, c.state) for c in listed.items] == [(coupon.code, CouponState.EXPIRED)]
    issued = await shop.steps.read(
        coupons.list_coupons,
        commands.ListCoupons(customer_id="alice", state="ISSUED", page_size=0, page_token=""),
    )
    assert issued.items == []
    with pytest.raises(DomainError) as excinfo:
        await shop.steps.write(
            coupons.use_coupon,
            commands.UseCoupon(customer_id="alice", code=coupon.code, order_id="o"),
        )
    assert excinfo.value.reason == "COUPON_EXPIRED"
    with pytest.raises(DomainError) as refund:
        await refunds.refund_coupons(
            shop.steps,
            shop.points,
            commands.RefundCoupons(
                request_id="rf",
                customer_id="alice",
                redemption_id=coupon.redemption_id,
                codes=[coupon.code],
            ),
        )
    assert refund.value.reason == "COUPON_EXPIRED"


async def test_coupons_list_newest_first_in_pages(shop: World) -> None:
    first = await redeem(shop, "r-1", quantity=2)
    second = await redeem(shop, "r-2", quantity=1)
    page = await shop.steps.read(
        coupons.list_coupons,
        commands.ListCoupons(customer_id="alice", state="", page_size=2, page_token=""),
    )
    rest = await shop.steps.read(
        coupons.list_coupons,
        commands.ListCoupons(
            customer_id="alice", state="", page_size=2, page_token=page.next_page_token
        ),
    )
    expected = [c.code for c in second.coupons] + [c.code for c in reversed(first.coupons)]
    assert [c.code for c in page.items + rest.items] == expected
    assert rest.next_page_token == ""


async def test_partial_refund_voids_coupons_and_gives_their_points_back(shop: World) -> None:
    redemption = await redeem(shop, quantity=3)
    codes = [c.code for c in redemption.coupons]
    refund = await refunds.refund_coupons(
        shop.steps,
        shop.points,
        commands.RefundCoupons(
            request_id="refund-1",
            customer_id="alice",
            redemption_id=redemption.redemption_id,
            codes=[codes[0].lower(), codes[1]],
        ),
    )
    assert (refund.state, refund.points, refund.codes) == (
        RefundState.COMPLETED,
        2000,
        (codes[0], codes[1]),
    )
    assert balance(shop) == 10_000 - 3000 + 2000
    [(order, reversal)] = shop.points.reversals.values()
    assert order == ReversalOrder(
        f"refund:{refund.refund_id}",
        f"redemption:{redemption.redemption_id}",
        2000,
        order.reason,
    )
    assert refund.reversal_id == reversal.reversal_id
    after = await shop.steps.read(
        redemptions.get_redemption,
        commands.GetRedemption(customer_id="alice", redemption_id=redemption.redemption_id),
    )
    assert after.refunded_points == 2000
    assert [c.state for c in after.coupons] == [
        CouponState.VOID,
        CouponState.VOID,
        CouponState.ISSUED,
    ]

    again = await refunds.refund_coupons(
        shop.steps,
        shop.points,
        commands.RefundCoupons(
            request_id="refund-1",
            customer_id="alice",
            redemption_id=redemption.redemption_id,
            codes=[codes[1], codes[0]],
        ),
    )
    assert again == refund
    assert balance(shop) == 9000

    with pytest.raises(DomainError) as void:
        await shop.steps.write(
            coupons.use_coupon, commands.UseCoupon(customer_id="alice", code=codes[0], order_id="o")
        )
    assert void.value.reason == "COUPON_VOID"
    with pytest.raises(DomainError) as twice:
        await refunds.refund_coupons(
            shop.steps,
            shop.points,
            commands.RefundCoupons(
                request_id="refund-2",
                customer_id="alice",
                redemption_id=redemption.redemption_id,
                codes=[codes[2], codes[0]],
            ),
        )
    assert refused(twice) == ("COUPON_VOID", {"code": codes[0]})
    with pytest.raises(DomainError) as reused:
        await refunds.refund_coupons(
            shop.steps,
            shop.points,
            commands.RefundCoupons(
                request_id="refund-1",
                customer_id="alice",
                redemption_id=redemption.redemption_id,
                codes=[codes[2]],
            ),
        )
    assert reused.value.reason == "REQUEST_ID_REUSED"
    assert stored_coupons(shop)[2].state is CouponState.ISSUED


async def test_refund_refusals(shop: World) -> None:
    redemption = await redeem(shop, quantity=2)
    other = await redeem(shop, "req-2", quantity=1)
    used, unused = (c.code for c in redemption.coupons)
    await shop.steps.write(
        coupons.use_coupon, commands.UseCoupon(customer_id="alice", code=used, order_id="o")
    )

    async def refund(codes: list[str], redemption_id: str = redemption.redemption_id) -> str:
        with pytest.raises(DomainError) as excinfo:
            await refunds.refund_coupons(
                shop.steps,
                shop.points,
                commands.RefundCoupons(
                    request_id="rf", customer_id="alice", redemption_id=redemption_id, codes=codes
                ),
            )
        return excinfo.value.reason

    assert await refund([unused, used]) == "COUPON_ALREADY_USED"
    assert await refund([other.coupons[0].code]) == "COUPON_NOT_FOUND"
    assert await refund([coupon_codes.new_code()]) == "COUPON_NOT_FOUND"
    assert await refund([unused], "rd_missing") == "REDEMPTION_NOT_FOUND"
    assert await refund([]) == "INVALID_FIELD"
    with pytest.raises(DomainError) as excinfo:
        await refunds.refund_coupons(
            shop.steps,
            shop.points,
            commands.RefundCoupons(
                request_id="rf",
                customer_id="alice",
                redemption_id=redemption.redemption_id,
                codes=[unused, "nonsense", unused.replace("-", "")],
            ),
        )
    assert excinfo.value.violations == (
        FieldViolation("codes[1]", "must have 18 symbols, not counting dashes"),
        FieldViolation("codes[2]", "repeats codes[0]"),
    )
    assert shop.database.state.refunds == {}
    assert {c.code: c.state for c in stored_coupons(shop)}[unused] is CouponState.ISSUED
    assert shop.points.reversals == {}


async def test_refund_with_unknown_outcome_stays_pending_and_resumes(shop: World) -> None:
    redemption = await redeem(shop, quantity=2)
    code = redemption.coupons[0].code
    shop.points.lose_replies = 1
    with pytest.raises(PointsSystemUnavailable) as excinfo:
        await refunds.refund_coupons(
            shop.steps,
            shop.points,
            commands.RefundCoupons(
                request_id="rf-1",
                customer_id="alice",
                redemption_id=redemption.redemption_id,
                codes=[code],
            ),
        )
    [pending] = shop.database.state.refunds.values()
    assert pending.state is RefundState.PENDING
    assert excinfo.value.metadata["refund_id"] == pending.refund_id
    assert {c.code: c.state for c in stored_coupons(shop)}[code] is CouponState.VOID

    done = await refunds.refund_coupons(
        shop.steps,
        shop.points,
        commands.RefundCoupons(
            request_id="rf-1",
            customer_id="alice",
            redemption_id=redemption.redemption_id,
            codes=[code],
        ),
    )
    assert done.state is RefundState.COMPLETED
    assert await refunds.settle(shop.steps, shop.points, done.refund_id) == done
    assert len(shop.points.reversals) == 1
    assert balance(shop) == 9000
    assert stored_redemptions(shop)[0].refunded_points == 1000


async def test_a_refused_reversal_undoes_the_refund(shop: World) -> None:
    redemption = await redeem(shop, quantity=1)
    shop.points.accounts["card-alice"].state = AccountState.CLOSED
    with pytest.raises(DomainError) as excinfo:
        await refunds.refund_coupons(
            shop.steps,
            shop.points,
            commands.RefundCoupons(
                request_id="rf-1",
                customer_id="alice",
                redemption_id=redemption.redemption_id,
                codes=[redemption.coupons[0].code],
            ),
        )
    assert excinfo.value.reason == "ACCOUNT_CLOSED"
    assert shop.database.state.refunds == {}
    assert [c.state for c in stored_coupons(shop)] == [CouponState.ISSUED]


# ---------------------------------------------------------------- recovery


POLICY = recovery.RecoveryPolicy(
    settle_delay=timedelta(seconds=5), review_after=timedelta(minutes=15)
)


async def test_recovery_finishes_a_lost_reply_forward_exactly_once(shop: World) -> None:
    shop.points.lose_replies = 1  # the deduction happens; its answer is lost
    with pytest.raises(PointsSystemUnavailable):
        await redeem(shop, "lost-1")
    [pending] = stored_redemptions(shop)
    assert pending.state is RedemptionState.PENDING

    # Too fresh: a first attempt may still be in flight, so the sweep leaves it.
    early = await recovery.recover(shop.steps, shop.points, POLICY)
    assert early.settled == 0
    assert [op.id for op in early.unsettled] == [pending.redemption_id]

    shop.clock.advance(timedelta(seconds=6))
    report = await recovery.recover(shop.steps, shop.points, POLICY)
    assert report.settled == 1
    assert report.unsettled == []
    [done] = stored_redemptions(shop)
    assert done.state is RedemptionState.COMPLETED
    assert len(stored_coupons(shop)) == 3
    assert len(shop.points.deductions) == 1
    assert shop.points.accounts["card-alice"].balance == 7000


async def test_recovery_fails_a_refused_redemption_and_keeps_unknown_ones(shop: World) -> None:
    await add_customer(shop, "bob", balance=500)
    shop.points.unreachable = 1
    with pytest.raises(PointsSystemUnavailable):
        await redeem(shop, "poor-1", customer_id="bob")
    shop.points.unreachable = 1
    with pytest.raises(PointsSystemUnavailable):
        await redeem(shop, "rich-1")
    shop.clock.advance(timedelta(seconds=6))

    shop.points.unreachable = 1  # still down for the first one the sweep tries
    first = await recovery.recover(shop.steps, shop.points, POLICY)
    assert first.settled == 1
    assert len(first.unsettled) == 1
    # The claim was released, so the next sweep retries what is still unknown.
    second = await recovery.recover(shop.steps, shop.points, POLICY)
    assert second.settled == 1
    states = {r.customer_id: r for r in stored_redemptions(shop)}
    assert states["bob"].state is RedemptionState.FAILED
    assert states["bob"].failure_reason == "INSUFFICIENT_POINTS"
    assert states["alice"].state is RedemptionState.COMPLETED
    assert shop.points.accounts["card-bob"].balance == 500


async def test_unsettled_operations_are_flagged_for_review_when_old(shop: World) -> None:
    shop.points.unreachable = 100
    with pytest.raises(PointsSystemUnavailable):
        await redeem(shop, "stuck-1")
    shop.clock.advance(timedelta(minutes=16))
    report = await recovery.recover(shop.steps, shop.points, POLICY)
    assert report.settled == 0
    [op] = report.needs_review
    assert (op.kind, op.request_id, op.points) == (
        UnsettledKind.REDEMPTION,
        "stuck-1",
        3000,
    )


async def test_recovery_settles_a_pending_refund(shop: World) -> None:
    redemption = await redeem(shop, "r-1")
    shop.points.lose_replies = 1
    with pytest.raises(PointsSystemUnavailable):
        await refunds.refund_coupons(
            shop.steps,
            shop.points,
            commands.RefundCoupons(
                request_id="refund-1",
                customer_id="alice",
                redemption_id=redemption.redemption_id,
                codes=[redemption.coupons[0].code],
            ),
        )
    shop.clock.advance(timedelta(seconds=6))
    report = await recovery.recover(shop.steps, shop.points, POLICY)
    assert report.settled == 1
    [refund] = shop.database.state.refunds.values()
    assert refund.state is RefundState.COMPLETED
    assert shop.points.accounts["card-alice"].balance == 8000
    assert len(shop.points.reversals) == 1


async def test_export_lists_redemptions_with_their_refunds(shop: World) -> None:
    first = await redeem(shop, "e-1", quantity=2)
    await redeem(shop, "e-2", quantity=1)
    await refunds.refund_coupons(
        shop.steps,
        shop.points,
        commands.RefundCoupons(
            request_id="refund-e",
            customer_id="alice",
            redemption_id=first.redemption_id,
            codes=[first.coupons[0].code],
        ),
    )
    shop.clock.advance(timedelta(seconds=1))  # the window ends, exclusively, at now
    page = await shop.steps.read(
        recovery.export_redemptions,
        commands.ExportRedemptions(start=None, end=None, page_size=1, page_token=""),
    )
    assert [item.redemption.request_id for item in page.items] == ["e-1"]
    assert [f.points for f in page.items[0].refunds] == [1000]
    assert len(page.items[0].redemption.coupons) == 2
    rest = await shop.steps.read(
        recovery.export_redemptions,
        commands.ExportRedemptions(
            start=None, end=None, page_size=1, page_token=page.next_page_token
        ),
    )
    assert [item.redemption.request_id for item in rest.items] == ["e-2"]
    assert rest.next_page_token == ""


async def test_committed_steps_publish_their_events(world: World) -> None:
    published: list[object] = []
    steps = dataclasses.replace(world.steps, publish=published.extend)
    shop = dataclasses.replace(world, steps=steps)
    await add_product(shop)
    await add_customer(shop)
    await redeem(shop, "ev-1", quantity=2)
    await redeem(shop, "ev-1", quantity=2)  # a replay publishes nothing new
    from ecommerce.domain.events import RedemptionCompleted

    assert [(e.points, e.coupons) for e in published if isinstance(e, RedemptionCompleted)] == [
        (2000, 2)
    ]
