"""Refunds the service refuses, through the real storefront, ecommerce and cardpoints over
HTTP: the refusal is said in plain words next to what it concerns, the form it came from
can be used again at once, and nothing changed in either database."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from storefront.entrypoints import i18n
from tests.auth import Callers
from tests.storefront.stack import TIMEOUT, Stack, start_stack

NO_CODES = {"en": i18n._EN["refusal.NO_CODES"], "zh-CN": i18n._ZH["refusal.NO_CODES"]}
ALREADY_USED = i18n._EN["refusal.COUPON_ALREADY_USED"]
ALREADY_REFUNDED = i18n._EN["refusal.COUPON_VOID"]


@pytest.fixture
async def stack(tmp_path: Path, auth: Callers) -> AsyncIterator[Stack]:
    running = await start_stack(tmp_path, auth)
    yield running
    await running.close()


@dataclass(frozen=True)
class Customer:
    customer_id: str
    client: httpx.AsyncClient
    redemption_id: str
    codes: list[str]


@pytest.fixture
async def customer(stack: Stack) -> AsyncIterator[Customer]:
    """A signed-in cardholder with 10,000 points who redeemed 3 coupons (3,000 points)."""
    product_id = await stack.product()
    customer_id, token = await stack.customer(10_000)
    redeemed = await stack.shop.RedeemPoints(
        pb.RedeemPointsRequest(
            request_id=f"rd-{secrets.token_hex(4)}",
            customer_id=customer_id,
            product_id=product_id,
            quantity=3,
        ),
        timeout=TIMEOUT,
    )
    redemption = redeemed.redemption
    assert redemption.state == pb.REDEMPTION_STATE_COMPLETED
    async with httpx.AsyncClient(base_url=stack.url) as client:
        signed_in = await client.get(f"/dev/sign-in?token={token}")
        assert signed_in.status_code == 303
        yield Customer(
            customer_id,
            client,
            redemption.redemption_id,
            sorted(c.code for c in redemption.coupons),
        )


@dataclass(frozen=True)
class RefundForm:
    """One redemption's refund form as a page shows it."""

    hidden: dict[str, str]
    tickable: list[str]  # the codes it offers a box for, sorted
    error: str  # the refusal said under the coupons, if any
    coupon_errors: dict[str, str]  # the refusal said next to a coupon, by code


def refund_form(page: str, redemption_id: str) -> RefundForm:
    found = re.search(
        rf'<form method="post" action="/redemptions/{redemption_id}/refund"[^>]*>(.*?)</form>',
        page,
        re.S,
    )
    assert found, f"no refund form for {redemption_id}"
    body = found[1]
    hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', body))
    tickable = sorted(re.findall(r'<input type="checkbox" name="codes" value="([^"]+)">', body))
    coupon_errors = {}
    items = re.findall(r'<li class="coupon[^"]*" data-code="([^"]+)">(.*?)</li>', body, re.S)
    for code, item in items:
        said = re.search(r'<p class="error" role="alert">([^<]*)</p>', item)
        if said:
            coupon_errors[code] = html.unescape(said[1])
    after_list = body.split("</ul>", 1)[1]
    said = re.search(r'<p class="error" role="alert">([^<]*)</p>', after_list)
    return RefundForm(hidden, tickable, html.unescape(said[1]) if said else "", coupon_errors)


async def held(stack: Stack, customer: Customer) -> tuple[int, int, dict[str, int]]:
    """What the databases hold for the customer: the card balance, the points refunded
    on the redemption, and the state of each of its coupons."""
    got = await stack.shop.GetRedemption(
        pb.GetRedemptionRequest(
            customer_id=customer.customer_id, redemption_id=customer.redemption_id
        ),
        timeout=TIMEOUT,
    )
    states = {c.code: int(c.state) for c in got.redemption.coupons}
    return await stack.balance(customer.customer_id), got.redemption.refunded_points, states


ISSUED = int(pb.COUPON_STATE_ISSUED)


async def refund_one_spent_meanwhile(
    stack: Stack, customer: Customer, form: RefundForm, order_id: str
) -> tuple[httpx.Response, tuple[int, int, dict[str, int]]]:
    """Spend the customer's first coupon at checkout while `form` is open, then ask it to
    refund that one and the second; the page that answers, and what was held before."""
    spent, other, _kept = customer.codes
    await stack.shop.UseCoupon(
        pb.UseCouponRequest(customer_id=customer.customer_id, code=spent, order_id=order_id),
        timeout=TIMEOUT,
    )
    before = await held(stack, customer)
    page = await customer.client.post(
        f"/redemptions/{customer.redemption_id}/refund",
        data={**form.hidden, "codes": [spent, other]},
    )
    return page, before


async def test_a_refund_with_no_coupon_ticked_says_so_under_the_coupons_and_changes_nothing(
    stack: Stack, customer: Customer
) -> None:
    before = await held(stack, customer)
    assert before == (7_000, 0, dict.fromkeys(customer.codes, ISSUED))
    pages = (
        ("en", f"/redemptions/{customer.redemption_id}"),
        ("zh-CN", "/coupons?state=issued"),
    )
    for lang, path in pages:
        shown = await customer.client.get(f"{path}&lang={lang}" if "?" in path else path)
        form = refund_form(shown.text, customer.redemption_id)
        assert form.tickable == customer.codes and not form.error
        # Refund pressed with no box ticked: the form has no `codes` at all.
        page = await customer.client.post(
            f"/redemptions/{customer.redemption_id}/refund?lang={lang}", data=form.hidden
        )
        assert page.status_code == 422, page.text
        again = refund_form(page.text, customer.redemption_id)
        assert again.error == NO_CODES[lang]
        assert again.coupon_errors == {}
        # The same coupons are offered, under a fresh request id.
        assert again.tickable == customer.codes
        assert again.hidden["request_id"] != form.hidden["request_id"]
        assert form.hidden["request_id"] not in page.text
        assert await held(stack, customer) == before
    # The form shown with the refusal works: a box ticked, the refund goes through.
    page = await customer.client.post(
        f"/redemptions/{customer.redemption_id}/refund",
        data={**again.hidden, "codes": customer.codes[0]},
    )
    assert page.status_code == 303
    assert (await held(stack, customer))[:2] == (8_000, 1_000)


async def test_a_refund_of_a_coupon_spent_at_checkout_is_refused_next_to_it(
    stack: Stack, customer: Customer
) -> None:
    shown = await customer.client.get(f"/redemptions/{customer.redemption_id}")
    form = refund_form(shown.text, customer.redemption_id)
    spent, other, _kept = customer.codes
    # Spent at checkout while the page was open.
    page, before = await refund_one_spent_meanwhile(stack, customer, form, "order-1")
    assert page.status_code == 409, page.text
    again = refund_form(page.text, customer.redemption_id)
    assert again.coupon_errors == {spent: ALREADY_USED}
    assert not again.error
    # The spent coupon is not offered any more; the others are, under a fresh request id.
    assert again.tickable == [c for c in customer.codes if c != spent]
    assert again.hidden["request_id"] != form.hidden["request_id"]
    # All or nothing: the other coupon ticked with it was not refunded either.
    assert await held(stack, customer) == before
    assert before[:2] == (7_000, 0) and before[2][other] == ISSUED

    page = await customer.client.post(
        f"/redemptions/{customer.redemption_id}/refund", data={**again.hidden, "codes": other}
    )
    assert page.status_code == 303
    assert page.headers["location"] == f"/redemptions/{customer.redemption_id}"
    assert (await held(stack, customer))[:2] == (8_000, 1_000)


async def test_a_refund_of_a_coupon_already_refunded_is_refused_next_to_it(
    stack: Stack, customer: Customer
) -> None:
    first, second, _kept = customer.codes
    shown = await customer.client.get("/coupons?state=issued")
    stale = refund_form(shown.text, customer.redemption_id)
    # Refunded from another tab, on the redemption's own page.
    page = await customer.client.get(f"/redemptions/{customer.redemption_id}")
    form = refund_form(page.text, customer.redemption_id)
    done = await customer.client.post(
        f"/redemptions/{customer.redemption_id}/refund", data={**form.hidden, "codes": first}
    )
    assert done.status_code == 303
    before = await held(stack, customer)
    assert before[:2] == (8_000, 1_000)

    # The page still open in the first tab offers the coupon; refunding it again is refused.
    page = await customer.client.post(
        f"/redemptions/{customer.redemption_id}/refund",
        data={**stale.hidden, "codes": [first, second]},
    )
    assert page.status_code == 409, page.text
    # Said on the redemption's page, whose form still goes back to the filtered list.
    assert f"<h1>{i18n._EN['result.title']}</h1>" in page.text
    again = refund_form(page.text, customer.redemption_id)
    assert again.coupon_errors == {first: ALREADY_REFUNDED}
    assert first not in again.tickable and second in again.tickable
    assert again.hidden["request_id"] != stale.hidden["request_id"]
    assert (again.hidden["back"], again.hidden["state"]) == ("coupons", "issued")
    assert await held(stack, customer) == before
    # No second reversal reached the card: the points came back once.
    assert await stack.balance(customer.customer_id) == 8_000


async def test_a_refusal_on_a_later_page_of_the_coupons_is_said_next_to_its_coupon(
    stack: Stack, customer: Customer
) -> None:
    # 120 newer coupons: the customer's first redemption is on the second page of the list.
    newer = await stack.product(points_per_coupon=1, max_quantity=20)
    for n in range(6):
        await stack.shop.RedeemPoints(
            pb.RedeemPointsRequest(
                request_id=f"newer-{n}",
                customer_id=customer.customer_id,
                product_id=newer,
                quantity=20,
            ),
            timeout=TIMEOUT,
        )
    first_page = await customer.client.get("/coupons?state=issued")
    assert f"/redemptions/{customer.redemption_id}/refund" not in first_page.text
    more = re.search(r'<a href="(/coupons\?[^"]+)">', first_page.text)
    assert more
    second_page = await customer.client.get(html.unescape(more[1]))
    form = refund_form(second_page.text, customer.redemption_id)
    assert form.tickable == customer.codes
    spent, other, _kept = customer.codes
    page, before = await refund_one_spent_meanwhile(stack, customer, form, "order-2")
    assert page.status_code == 409, page.text
    again = refund_form(page.text, customer.redemption_id)
    assert again.coupon_errors == {spent: ALREADY_USED}
    assert again.tickable == [c for c in customer.codes if c != spent]
    assert await held(stack, customer) == before
    # The form shown with the refusal refunds the other coupon, and goes back to the list.
    page = await customer.client.post(
        f"/redemptions/{customer.redemption_id}/refund", data={**again.hidden, "codes": other}
    )
    assert page.status_code == 303
    assert page.headers["location"].startswith("/coupons?")
    assert (await held(stack, customer))[:2] == (before[0] + 1_000, 1_000)
