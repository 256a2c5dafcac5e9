"""The e-commerce storage contract, part two: redemptions, coupons and refunds."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from ecommerce.domain.errors import CouponExpired
from ecommerce.domain.model import CouponState, RedemptionState, RefundState
from ecommerce.service_layer.ports import UnitOfWork
from tests.contract.conftest import EcommerceStore
from tests.contract.ecommerce_rows import (
    LATER,
    T0,
    coupon,
    redemption,
    refund,
    walk,
    with_redemptions,
)

EXPIRY = T0 + timedelta(days=30)


def settle(
    uow: UnitOfWork, redemption_id: str, now: datetime, *, deduction_id: str = "", reason: str = ""
) -> bool:
    """Store an outcome decided on a PENDING copy of the redemption, as a settle does."""
    found = uow.redemptions.get(redemption_id)
    assert found is not None
    pending = dataclasses.replace(found, state=RedemptionState.PENDING)
    outcome, _ = pending.fail(reason, now) if reason else pending.complete(deduction_id, (), now)
    return uow.redemptions.save_outcome(outcome)


def complete_refund(uow: UnitOfWork, refund_id: str, reversal_id: str, now: datetime) -> bool:
    """Store a completion decided on a PENDING copy of the refund, as a settle does."""
    pending = refund(refund_id)
    completed, _ = pending.complete(reversal_id, now)
    return uow.refunds.save_outcome(completed)


def discard_refund(uow: UnitOfWork, refund_id: str) -> bool:
    """Forget a refund whose PENDING copy decided to be discarded, as a settle does."""
    return uow.refunds.forget(refund(refund_id))


def use(uow: UnitOfWork, code: str, order_id: str, now: datetime) -> bool:
    """Store a coupon spent on `order_id`, as a use does once the coupon has decided."""
    found = uow.coupons.get(code)
    assert found is not None
    spent = dataclasses.replace(found, state=CouponState.USED, used_order_id=order_id, use_time=now)
    return uow.coupons.use(spent)


# --- redemptions ---------------------------------------------------------------


def test_a_redemption_reads_back_by_id_and_by_request_id(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce)
    with ecommerce.uow() as uow:
        assert uow.redemptions.get("red-1") == redemption()
        assert uow.redemptions.get_by_request_id("req-red-1") == redemption()
        assert uow.redemptions.get("none") is None
        assert uow.redemptions.get_by_request_id("none") is None


def test_a_unit_of_work_reads_on_after_it_committed(ecommerce: EcommerceStore) -> None:
    # The repositories keep the transaction's connection; a commit ends it, and what
    # they read next comes from a new one.
    with ecommerce.uow() as uow:
        uow.redemptions.add(redemption())
        uow.commit()
        assert uow.redemptions.get("red-1") == redemption()
        assert uow.coupons.of_redemptions(["red-1"]) == {"red-1": []}
    with ecommerce.uow() as uow:
        assert uow.redemptions.get_by_request_id("req-red-1") == redemption()


def test_a_second_redemption_of_one_request_id_is_refused(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce)
    with pytest.raises(ecommerce.refusal), ecommerce.uow() as uow:
        uow.redemptions.add(redemption("red-2", request_id="req-red-1"))
    with ecommerce.uow() as uow:
        assert uow.redemptions.get("red-2") is None


def test_a_redemption_leaves_pending_once(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce, redemption("red-1"), redemption("red-2"))
    with ecommerce.uow() as uow:
        assert settle(uow, "red-1", LATER, deduction_id="ded-1")
        assert not settle(uow, "red-1", LATER, deduction_id="ded-other")
        assert not settle(uow, "red-1", LATER, reason="INSUFFICIENT_POINTS")
        assert settle(uow, "red-2", LATER, reason="ACCOUNT_FROZEN")
        assert not settle(uow, "red-2", LATER, deduction_id="ded-2")
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.redemptions.get("red-1") == redemption(
            state=RedemptionState.COMPLETED, deduction_id="ded-1", update_time=LATER
        )
        assert uow.redemptions.get("red-2") == redemption(
            "red-2",
            state=RedemptionState.FAILED,
            failure_reason="ACCOUNT_FROZEN",
            update_time=LATER,
        )


def test_refunded_points_add_up_and_never_pass_the_points(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce, redemption(state=RedemptionState.COMPLETED))
    with ecommerce.uow() as uow:
        uow.redemptions.add_refunded_points("red-1", 1000, LATER)
        uow.redemptions.add_refunded_points("red-1", 2000, LATER)
        uow.commit()
    with ecommerce.uow() as uow:
        found = uow.redemptions.get("red-1")
        assert found is not None
        assert found.refunded_points == 3000
    with pytest.raises(ecommerce.refusal), ecommerce.uow() as uow:
        uow.redemptions.add_refunded_points("red-1", 1, LATER)


def test_redemptions_page_newest_first_by_customer_and_state(
    ecommerce: EcommerceStore,
) -> None:
    made = [redemption(f"red-{i}", customer_id="bob" if i % 2 else "alice") for i in range(1, 8)]
    with_redemptions(ecommerce, *made)
    with ecommerce.uow() as uow:
        settle(uow, "red-4", LATER, deduction_id="ded-4")
        settle(uow, "red-6", LATER, deduction_id="ded-6")
        uow.commit()
    with ecommerce.uow() as uow:

        def ids(customer: str | None, state: RedemptionState | None) -> list[list[str]]:
            pages = walk(
                lambda before: uow.redemptions.page(customer, state=state, before=before, limit=2)
            )
            return [[r.redemption_id for r in page] for page in pages]

        assert ids("alice", None) == [["red-6", "red-4"], ["red-2"]]
        assert ids(None, None) == [
            ["red-7", "red-6"],
            ["red-5", "red-4"],
            ["red-3", "red-2"],
            ["red-1"],
        ]
        assert ids("alice", RedemptionState.PENDING) == [["red-2"]]
        assert ids(None, RedemptionState.COMPLETED) == [["red-6", "red-4"]]
        assert ids("carol", None) == [[]]


def test_pending_redemptions_list_oldest_first(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce, *(redemption(f"red-{i}") for i in range(1, 6)))
    with ecommerce.uow() as uow:
        settle(uow, "red-2", LATER, deduction_id="ded-2")
        uow.commit()
    with ecommerce.uow() as uow:
        assert [r.redemption_id for r in uow.redemptions.unsettled(10)] == [
            "red-1",
            "red-3",
            "red-4",
            "red-5",
        ]


def test_recovery_claims_lease_untouched_pending_redemptions(
    ecommerce: EcommerceStore,
) -> None:
    made = [redemption(f"red-{i}", update_time=T0 + timedelta(seconds=i)) for i in range(1, 6)]
    with_redemptions(ecommerce, *made)
    with ecommerce.uow() as uow:
        settle(uow, "red-1", T0, reason="ACCOUNT_FROZEN")
        uow.commit()
    now, lease = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)

    def claim(at: datetime = now, limit: int = 10) -> list[str]:
        with ecommerce.uow() as uow:
            claimed = uow.redemptions.claim_pending(
                now=at,
                untouched_since=T0 + timedelta(seconds=4),
                lease_until=lease,
                limit=limit,
            )
            uow.commit()
            return claimed

    assert claim(limit=2) == ["red-2", "red-3"]  # red-5 was touched too recently
    assert claim() == ["red-4"]  # the others are held
    assert claim() == []
    with ecommerce.uow() as uow:
        uow.redemptions.renew(["red-2", "red-3", "red-1"], lease + timedelta(minutes=5))
        uow.redemptions.release(["red-4"])
        uow.commit()
    assert claim(at=lease + timedelta(seconds=1)) == ["red-4"]  # red-2 and red-3 were renewed
    assert claim(at=lease + timedelta(minutes=6)) == ["red-2", "red-3", "red-4"]


def test_redemptions_list_oldest_first_in_a_half_open_window(
    ecommerce: EcommerceStore,
) -> None:
    made = [redemption(f"red-{i}", create_time=T0 + timedelta(minutes=i)) for i in range(6)]
    with_redemptions(ecommerce, *made)
    start, end = T0 + timedelta(minutes=1), T0 + timedelta(minutes=5)
    with ecommerce.uow() as uow:
        pages = walk(lambda after: uow.redemptions.window(start, end, after=after, limit=3))
        assert [[r.redemption_id for r in page] for page in pages] == [
            ["red-1", "red-2", "red-3"],
            ["red-4"],
        ]
        everything = uow.redemptions.window(None, end, after=None, limit=10).items
        assert [r.redemption_id for r in everything] == [f"red-{i}" for i in range(5)]


# --- coupons ---------------------------------------------------------------


def test_coupons_read_back_by_code_and_by_redemption(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce, redemption("red-1"), redemption("red-2"))
    made = [coupon("C1"), coupon("C2", "red-2"), coupon("C3")]
    with ecommerce.uow() as uow:
        uow.coupons.add_all(made)
        uow.coupons.add_all([])
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.coupons.get("C2") == made[1]
        assert uow.coupons.get("none") is None
        assert uow.coupons.of_redemptions(["red-1", "red-2", "red-9"]) == {
            "red-1": [made[0], made[2]],
            "red-2": [made[1]],
            "red-9": [],
        }
        assert uow.coupons.of_redemptions([]) == {}


def test_a_second_coupon_of_one_code_is_refused(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce)
    with ecommerce.uow() as uow:
        uow.coupons.add_all([coupon("C1")])
        uow.commit()
    with pytest.raises(ecommerce.refusal), ecommerce.uow() as uow:
        uow.coupons.add_all([coupon("C2"), coupon("C1", face_value_minor=1)])
    with ecommerce.uow() as uow:
        assert uow.coupons.get("C2") is None


def test_many_coupons_of_one_redemption_are_stored_together_in_order(
    ecommerce: EcommerceStore,
) -> None:
    # More coupons than one statement carries (servicekit.compiled.CompiledInsert).
    with_redemptions(ecommerce)
    made = [coupon(f"C{i:03}", face_value_minor=i + 1) for i in range(150)]
    with ecommerce.uow() as uow:
        uow.coupons.add_all(made)
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.coupons.of_redemptions(["red-1"]) == {"red-1": made}
        assert uow.coupons.get("C149") == made[149]


@pytest.mark.parametrize("position", [1, 100])
def test_coupons_with_a_code_twice_are_refused_and_none_is_stored(
    ecommerce: EcommerceStore, position: int
) -> None:
    with_redemptions(ecommerce, redemption("red-1"), redemption("red-2"))
    with ecommerce.uow() as uow:
        uow.coupons.add_all([coupon("OLD", "red-2")])
        uow.commit()
    # The duplicate of the row before it, or of a stored code, in the first or a later
    # statement of one add_all: the unit of work fails and keeps none of the rows.
    for duplicate in (coupon(f"C{position - 1:03}"), coupon("OLD")):
        batch = [coupon(f"C{i:03}") for i in range(120)]
        batch[position] = duplicate
        with pytest.raises(ecommerce.refusal), ecommerce.uow() as uow:
            uow.coupons.add_all(batch)
            uow.commit()
        with ecommerce.uow() as uow:
            assert uow.coupons.of_redemptions(["red-1"]) == {"red-1": []}
            assert uow.coupons.get("C000") is None


def test_a_coupon_is_used_once_and_never_once_expired(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce)
    with ecommerce.uow() as uow:
        uow.coupons.add_all([coupon("C1"), coupon("C2")])
        uow.commit()
    with ecommerce.uow() as uow:
        assert use(uow, "C1", "order-1", LATER)
        assert not use(uow, "C1", "order-2", LATER)
        # Expiry is the coupon's rule, decided before anything is stored.
        c2 = uow.coupons.get("C2")
        assert c2 is not None
        with pytest.raises(CouponExpired):
            c2.use("order-3", EXPIRY)  # expires at its expire_time
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.coupons.get("C1") == coupon(
            "C1", state=CouponState.USED, used_order_id="order-1", use_time=LATER
        )
        assert uow.coupons.get("C2") == coupon("C2")


def test_voided_coupons_are_restored_by_their_refund_only(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce)
    with ecommerce.uow() as uow:
        uow.coupons.add_all([coupon("C1"), coupon("C2"), coupon("C3")])
        uow.refunds.add(refund("ref-1", codes=("C1", "C2")))
        uow.refunds.add(refund("ref-2", codes=("C3",)))
        assert uow.coupons.void("C1", "ref-1")
        assert uow.coupons.void("C2", "ref-1")
        assert not uow.coupons.void("C1", "ref-1")
        assert uow.coupons.void("C3", "ref-2")
        assert not use(uow, "C3", "order-1", LATER)
        assert not uow.coupons.void("C3", "ref-1")
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.coupons.get("C1") == coupon("C1", state=CouponState.VOID)
        assert uow.coupons.restore("ref-1") == 2
        assert uow.coupons.restore("ref-1") == 0
        uow.commit()
    with ecommerce.uow() as uow:
        assert [uow.coupons.get(c) for c in ("C1", "C2")] == [coupon("C1"), coupon("C2")]
        assert uow.coupons.get("C3") == coupon("C3", state=CouponState.VOID)
        assert uow.coupons.void("C1", "ref-3")  # a restored coupon may be refunded again
        assert uow.coupons.restore("ref-3") == 1


def test_coupons_page_newest_first_by_state_at_a_moment(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce)
    soon = T0 + timedelta(days=1)
    with ecommerce.uow() as uow:
        uow.coupons.add_all(
            [
                coupon("C1"),
                coupon("C2", expire_time=soon),
                coupon("C3"),
                coupon("C4", customer_id="bob"),
                coupon("C5"),
            ]
        )
        use(uow, "C3", "order-1", LATER)
        uow.commit()
    with ecommerce.uow() as uow:

        def codes(state: CouponState | None, now: datetime = LATER) -> list[list[str]]:
            pages = walk(
                lambda before: uow.coupons.page(
                    "alice",
                    state=state,
                    now=now,
                    before=before,
                    limit=2,
                )
            )
            return [[c.code for c in page] for page in pages]

        assert codes(None) == [["C5", "C3"], ["C2", "C1"]]
        assert codes(CouponState.ISSUED) == [["C5", "C2"], ["C1"]]
        assert codes(CouponState.ISSUED, soon) == [["C5", "C1"]]
        assert codes(CouponState.EXPIRED, soon) == [["C2"]]
        assert codes(CouponState.EXPIRED) == [[]]
        assert codes(CouponState.USED) == [["C3"]]
        assert codes(CouponState.VOID) == [[]]


# --- refunds ---------------------------------------------------------------


def test_a_refund_reads_back_and_its_request_id_is_unique(ecommerce: EcommerceStore) -> None:
    with_redemptions(ecommerce)
    with ecommerce.uow() as uow:
        uow.refunds.add(refund())
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.refunds.get("ref-1") == refund()
        assert uow.refunds.get_by_request_id("req-ref-1") == refund()
        assert uow.refunds.get("none") is None
        assert uow.refunds.get_by_request_id("none") is None
    with pytest.raises(ecommerce.refusal), ecommerce.uow() as uow:
        uow.refunds.add(refund("ref-2", request_id="req-ref-1"))


def test_a_refund_is_completed_or_discarded_once_and_only_while_pending(
    ecommerce: EcommerceStore,
) -> None:
    with_redemptions(ecommerce)
    with ecommerce.uow() as uow:
        uow.refunds.add(refund("ref-1"))
        uow.refunds.add(refund("ref-2"))
        assert complete_refund(uow, "ref-1", "rev-1", LATER)
        assert not complete_refund(uow, "ref-1", "rev-other", LATER)
        assert not discard_refund(uow, "ref-1")
        assert discard_refund(uow, "ref-2")
        assert not discard_refund(uow, "ref-2")
        assert not discard_refund(uow, "none")
        uow.commit()
    with ecommerce.uow() as uow:
        assert uow.refunds.get("ref-1") == refund(
            state=RefundState.COMPLETED, reversal_id="rev-1", update_time=LATER
        )
        assert uow.refunds.get("ref-2") is None


def test_pending_refunds_are_listed_claimed_and_grouped_by_redemption(
    ecommerce: EcommerceStore,
) -> None:
    with_redemptions(ecommerce, redemption("red-1"), redemption("red-2"))
    made = [
        refund("ref-1", update_time=T0 + timedelta(seconds=1)),
        refund("ref-2", "red-2", update_time=T0 + timedelta(seconds=2)),
        refund("ref-3", update_time=T0 + timedelta(seconds=3)),
    ]
    with ecommerce.uow() as uow:
        for one in made:
            uow.refunds.add(one)
        complete_refund(uow, "ref-2", "rev-2", T0)
        uow.commit()
    done = dataclasses.replace(
        made[1], state=RefundState.COMPLETED, reversal_id="rev-2", update_time=T0
    )
    now, lease = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    with ecommerce.uow() as uow:
        assert uow.refunds.unsettled(10) == [made[0], made[2]]
        assert uow.refunds.of_redemptions(["red-1", "red-2", "red-9"]) == {
            "red-1": [made[0], made[2]],
            "red-2": [done],
            "red-9": [],
        }
        claimed = uow.refunds.claim_pending(
            now=now, untouched_since=now, lease_until=lease, limit=10
        )
        assert claimed == ["ref-1", "ref-3"]
        assert (
            uow.refunds.claim_pending(now=now, untouched_since=now, lease_until=lease, limit=10)
            == []
        )
        uow.refunds.renew(["ref-1"], lease + timedelta(minutes=5))
        uow.refunds.release(["ref-3"])
        again = uow.refunds.claim_pending(
            now=lease + timedelta(seconds=1), untouched_since=now, lease_until=lease, limit=10
        )
        assert again == ["ref-3"]
        uow.commit()
