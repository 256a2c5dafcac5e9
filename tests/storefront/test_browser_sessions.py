"""The storefront in a real browser: phones, sessions, CSRF, languages, errors.

Debian's Chromium, against the real services on SQLite; fixtures in conftest.py.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import (
    Browser,
    Page,
    expect,
)

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from tests.storefront.browser import (
    DESKTOP,
    PHONE,
    WAIT_MS,
    form_fields,
    horizontal_overflow,
    post_form,
    quoted,
    screenshot,
    sign_in,
)
from tests.storefront.stack import TIMEOUT, Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_the_pages_fit_a_phone(browser: Browser, stack: Stack) -> None:
    product_id = await stack.product(name="A coupon with a rather long name for a small screen")
    _, token = await stack.customer(1_000_000)
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        await sign_in(page, stack, token)
        assert await horizontal_overflow(page) == 0
        await page.goto(f"{stack.url}/redeem/{product_id}")
        await page.get_by_label("How many coupons").fill("12")
        await quoted(page, "12,000")
        assert await horizontal_overflow(page) == 0
        await page.get_by_role("button", name="Redeem points").click()
        await expect(page.locator("#completed")).to_be_visible()
        assert await horizontal_overflow(page) == 0
        await page.goto(f"{stack.url}/coupons")
        assert await horizontal_overflow(page) == 0
    finally:
        await context.close()


async def test_sign_out_ends_the_session(page: Page, stack: Stack) -> None:
    _, token = await stack.customer(1_000)
    await sign_in(page, stack, token)
    [before] = [c for c in await page.context.cookies() if c["name"] == "pb_session"]
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#sign-in-notice")).to_have_text("You have signed out.")
    await page.goto(f"{stack.url}/coupons")
    await expect(page.locator("h1")).to_have_text("Sign in")
    # The old cookie is worth nothing now, wherever it was copied to.
    await page.context.add_cookies(
        [{"name": before["name"], "value": before["value"], "url": stack.url}]
    )
    await page.goto(f"{stack.url}/products")
    await expect(page.locator("h1")).to_have_text("Sign in")


async def test_a_post_without_the_csrf_token_is_refused(page: Page, stack: Stack) -> None:
    product_id = await stack.product()
    customer_id, token = await stack.customer(10_000)
    await sign_in(page, stack, token)
    await page.goto(f"{stack.url}/redeem/{product_id}")
    posted = await form_fields(page, "#redeem-form", action="redeem")
    forged = [(k, v) for k, v in posted if k != "csrf"]
    refused = await post_form(page, f"{stack.url}/redeem/{product_id}", forged)
    assert refused.status == 403
    assert "did not come from this site" in await refused.text()
    wrong = await post_form(page, f"{stack.url}/redeem/{product_id}", [*forged, ("csrf", "0" * 64)])
    assert wrong.status == 403
    sign_out = await post_form(page, f"{stack.url}/sign-out", [])
    assert sign_out.status == 403
    assert await stack.redemptions(customer_id) == []
    assert await stack.balance(customer_id) == 10_000
    await page.goto(f"{stack.url}/products")
    await expect(page.locator("h1")).to_have_text("Coupons to redeem")


async def test_chinese_by_accept_language_and_the_switch(browser: Browser, stack: Stack) -> None:
    product_id = await stack.product()
    _, token = await stack.customer(100_000)
    context = await browser.new_context(viewport=DESKTOP, locale="zh-CN")
    context.set_default_timeout(WAIT_MS)
    try:
        page = await context.new_page()
        await page.goto(f"{stack.url}/dev/sign-in?token={token}")
        await expect(page.locator("h1")).to_have_text("可兑换的电子券")
        await expect(page.locator("#balance")).to_contain_text("100,000")
        card = page.locator(f'[data-product="{product_id}"]')
        await expect(card.locator(".face-value")).to_have_text("¥10.00")
        await page.goto(f"{stack.url}/redeem/{product_id}")
        await page.get_by_label("兑换张数").fill("3")
        await quoted(page, "3,000")
        await expect(page.locator("#quote-face")).to_have_text("¥30.00")
        await screenshot(page, "redeem-zh")
        await page.get_by_role("link", name="English").click()
        await expect(page.get_by_label("How many coupons")).to_be_visible()
        await page.goto(f"{stack.url}/products")
        await expect(card.locator(".face-value")).to_have_text("CNY 10.00")
    finally:
        await context.close()


async def test_no_linked_card_is_said_plainly(page: Page, stack: Stack) -> None:
    product_id = await stack.product()
    _, token = await stack.customer(0, linked=False)
    await sign_in(page, stack, token)
    await expect(page.locator("#no-card")).to_contain_text("No card is linked")
    await page.goto(f"{stack.url}/redeem/{product_id}")
    await page.get_by_role("button", name="Redeem points").click()
    await expect(page.locator("#card-error")).to_contain_text("No card is linked")


async def test_an_unknown_page_shows_the_request_id(page: Page, stack: Stack) -> None:
    _, token = await stack.customer(1_000)
    await sign_in(page, stack, token)
    response = await page.goto(f"{stack.url}/redemptions/rd_nosuchthing")
    assert response is not None and response.status == 404
    request_id = response.headers["x-request-id"]
    await expect(page.locator("main")).to_contain_text(request_id)
    assert "Traceback" not in await page.content()
    await screenshot(page, "error")
    assert re.fullmatch(r"[0-9a-f]{16}", request_id)
    # Another customer's redemption is no page of this customer's either.
    other_id, _ = await stack.customer(5_000)
    product_id = await stack.product()
    await stack.shop.RedeemPoints(
        pb.RedeemPointsRequest(
            request_id=f"other-{other_id}", customer_id=other_id, product_id=product_id, quantity=1
        ),
        timeout=TIMEOUT,
    )
    [theirs] = await stack.redemptions(other_id)
    response = await page.goto(f"{stack.url}/redemptions/{theirs.redemption_id}")
    assert response is not None and response.status == 404
    assert theirs.coupons[0].code not in await page.content()
