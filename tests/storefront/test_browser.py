"""The storefront in a real browser: signing in, quoting, redeeming, refunding.

Debian's Chromium, against the real services on SQLite; fixtures in conftest.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    Page,
    expect,
)

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from tests.auth import Callers
from tests.storefront.browser import (
    DESKTOP,
    WAIT_MS,
    form_fields,
    post_form,
    quoted,
    screenshot,
    sign_in,
)
from tests.storefront.stack import TIMEOUT, Stack, start_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_sign_in_with_a_token_shows_the_products_and_the_balance(
    page: Page, stack: Stack
) -> None:
    product_id = await stack.product(name="Tea shop 10 CNY coupon")
    _, token = await stack.customer(12_345)
    await page.goto(stack.url)
    await expect(page.locator("h1")).to_have_text("Sign in")
    await page.get_by_label("Sign-in token").fill("not-a-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#token-error")).to_contain_text("not a sign-in token")
    await screenshot(page, "sign-in")

    await page.get_by_label("Sign-in token").fill(token)
    await page.get_by_label("Sign-in token").press("Tab")
    await page.keyboard.press("Enter")  # the sign-in button, from the keyboard
    await expect(page.locator("h1")).to_have_text("Coupons to redeem")
    await expect(page.locator("#balance")).to_contain_text("12,345")
    card = page.locator(f'[data-product="{product_id}"]')
    await expect(card.locator(".face-value")).to_have_text("CNY 10.00")
    await expect(card.locator(".ppc")).to_have_text("1,000")
    cookies = await page.context.cookies()
    [session] = [c for c in cookies if c["name"] == "pb_session"]
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert token not in str(cookies)
    await screenshot(page, "products")


async def test_the_quote_follows_the_quantity(page: Page, stack: Stack) -> None:
    product_id = await stack.product(name="Bookshop 10 CNY coupon")
    _, token = await stack.customer(10_000)
    await sign_in(page, stack, token)
    await page.goto(f"{stack.url}/redeem/{product_id}")
    await quoted(page, "1,000")
    await expect(page.locator("#quote-after")).to_have_text("9,000")
    await page.get_by_label("How many coupons").fill("3")
    await quoted(page, "3,000")
    await expect(page.locator("#quote-face")).to_have_text("CNY 30.00")
    await expect(page.locator("#quote-after")).to_have_text("7,000")
    assert await page.locator("#expected-points").input_value() == "3000"
    await page.locator('.preset[data-quantity="5"]').click()
    await quoted(page, "5,000")
    await expect(page.get_by_label("How many coupons")).to_have_value("5")
    await page.get_by_label("How many coupons").fill("0")
    await expect(page.locator("#quantity-error")).to_contain_text("whole number of coupons")
    await page.get_by_label("How many coupons").fill("25")
    await expect(page.locator("#quantity-error")).to_contain_text("at most 20 coupons")
    await page.get_by_label("How many coupons").fill("4")
    await quoted(page, "4,000")
    await expect(page.locator("#quantity-error")).to_be_hidden()
    await screenshot(page, "redeem")


async def test_the_quote_works_without_javascript(browser: Browser, stack: Stack) -> None:
    product_id = await stack.product()
    customer_id, token = await stack.customer(10_000)
    context = await browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    try:
        page = await context.new_page()
        await sign_in(page, stack, token)
        await page.goto(f"{stack.url}/redeem/{product_id}")
        await page.get_by_label("How many coupons").fill("2")
        await page.get_by_role("button", name="Quote").click()
        await quoted(page, "2,000")
        await page.get_by_role("button", name="Redeem points").click()
        await expect(page.locator("#completed")).to_contain_text("2,000 points")
        assert await stack.balance(customer_id) == 8_000
    finally:
        await context.close()


async def test_redeem_shows_the_codes(page: Page, stack: Stack) -> None:
    product_id = await stack.product()
    customer_id, token = await stack.customer(10_000)
    await sign_in(page, stack, token)
    await page.goto(f"{stack.url}/redeem/{product_id}")
    await page.get_by_label("How many coupons").fill("2")
    await quoted(page, "2,000")
    await page.get_by_role("button", name="Redeem points").click()
    await expect(page.locator("#completed")).to_have_text(
        "Done: 2,000 points were spent on 2 coupons."
    )
    [redemption] = await stack.redemptions(customer_id)
    codes = sorted(c.code for c in redemption.coupons)
    shown = sorted(await page.locator("code.code").all_inner_texts())
    assert shown == codes and len(codes) == 2
    assert await stack.balance(customer_id) == 8_000
    response = await page.reload()
    assert response is not None and response.headers["cache-control"] == "no-store"
    await expect(page.locator("#copy-all")).to_be_visible()
    await screenshot(page, "result")


async def test_double_click_and_resubmit_redeem_once(page: Page, stack: Stack) -> None:
    product_id = await stack.product()
    customer_id, token = await stack.customer(10_000)
    await sign_in(page, stack, token)
    await page.goto(f"{stack.url}/redeem/{product_id}?quantity=3")
    await quoted(page, "3,000")
    posted = await form_fields(page, "#redeem-form", action="redeem")
    await page.get_by_role("button", name="Redeem points").dblclick()
    await expect(page.locator("#completed")).to_be_visible()
    first_page = page.url

    # What a reload that resubmits, or a retry, sends: the same form, the same request id.
    for _ in range(2):
        again = await post_form(page, f"{stack.url}/redeem/{product_id}", posted)
        assert again.status == 303
        assert again.headers["location"] == first_page.removeprefix(stack.url)
    redemptions = await stack.redemptions(customer_id)
    assert len(redemptions) == 1 and len(redemptions[0].coupons) == 3
    assert await stack.balance(customer_id) == 7_000

    # Two submissions of one form at the same moment, as a double click without the
    # script sends them: one redemption, and both answers lead to it.
    await page.goto(f"{stack.url}/redeem/{product_id}?quantity=2")
    await quoted(page, "2,000")
    posted = await form_fields(page, "#redeem-form", action="redeem")
    url = f"{stack.url}/redeem/{product_id}"
    first, second = await asyncio.gather(post_form(page, url, posted), post_form(page, url, posted))
    assert first.status == second.status == 303
    assert first.headers["location"] == second.headers["location"]
    assert len(await stack.redemptions(customer_id)) == 2
    assert await stack.balance(customer_id) == 5_000


async def test_insufficient_points_are_said_next_to_the_quantity(page: Page, stack: Stack) -> None:
    product_id = await stack.product()
    customer_id, token = await stack.customer(1_500)
    await sign_in(page, stack, token)
    await page.goto(f"{stack.url}/redeem/{product_id}")
    await page.get_by_label("How many coupons").fill("2")
    await quoted(page, "2,000")
    await expect(page.locator("#quote-after")).to_have_text("500 points short")
    await page.get_by_role("button", name="Redeem points").click()
    await expect(page.locator("#quantity-error")).to_have_text(
        "You do not have enough points: this needs 2,000 points and you have 1,500."
    )
    await expect(page.get_by_label("How many coupons")).to_have_attribute("aria-invalid", "true")
    assert await stack.balance(customer_id) == 1_500
    assert all(not r.coupons for r in await stack.redemptions(customer_id))
    await screenshot(page, "refusal")


async def test_a_ratio_change_between_quote_and_submit_charges_nothing(
    page: Page, stack: Stack
) -> None:
    product_id = await stack.product()
    customer_id, token = await stack.customer(10_000)
    await sign_in(page, stack, token)
    await page.goto(f"{stack.url}/redeem/{product_id}?quantity=2")
    await quoted(page, "2,000")
    await stack.admin.SetExchangeRatio(
        pb.SetExchangeRatioRequest(product_id=product_id, points_per_coupon=1_500), timeout=TIMEOUT
    )
    await page.get_by_role("button", name="Redeem points").click()
    await expect(page.locator("#form-notice")).to_contain_text("exchange rate changed")
    await quoted(page, "3,000")
    assert await stack.balance(customer_id) == 10_000
    assert await stack.redemptions(customer_id) == []
    await page.get_by_role("button", name="Redeem points").click()
    await expect(page.locator("#completed")).to_contain_text("3,000 points")
    assert await stack.balance(customer_id) == 7_000


async def test_refund_gives_the_points_back(page: Page, stack: Stack) -> None:
    product_id = await stack.product()
    customer_id, token = await stack.customer(10_000)
    await sign_in(page, stack, token)
    await page.goto(f"{stack.url}/redeem/{product_id}?quantity=4")
    await quoted(page, "4,000")
    await page.get_by_role("button", name="Redeem points").click()
    await expect(page.locator("#completed")).to_be_visible()
    [redemption] = await stack.redemptions(customer_id)
    first, second, third, kept = sorted(c.code for c in redemption.coupons)
    # One coupon is spent at checkout while the page is open: refunding it is refused.
    await stack.shop.UseCoupon(
        pb.UseCouponRequest(customer_id=customer_id, code=third, order_id="order-1"),
        timeout=TIMEOUT,
    )
    for code in (first, third):
        await page.locator(f'input[name="codes"][value="{code}"]').check()
    await page.get_by_role("button", name="Refund the selected coupons").click()
    await expect(page.locator(f'[data-code="{third}"] .error')).to_have_text(
        "This coupon was already used, so it cannot be refunded."
    )
    assert await stack.balance(customer_id) == 6_000

    await page.locator(f'input[name="codes"][value="{first}"]').check()
    await page.locator(f'input[name="codes"][value="{second}"]').check()
    posted = await form_fields(page, "form.coupon-group")
    await page.get_by_role("button", name="Refund the selected coupons").click()
    await expect(page.locator("#flash")).to_have_text(
        "Refunded: 2 coupons, 2,000 points back to your card."
    )
    await expect(page.locator(f'[data-code="{first}"] .badge')).to_have_text("Refunded")
    assert await stack.balance(customer_id) == 8_000
    again = await post_form(
        page, f"{stack.url}/redemptions/{redemption.redemption_id}/refund", posted
    )
    assert again.status == 303
    assert await stack.balance(customer_id) == 8_000

    await page.get_by_role("link", name="My coupons").first.click()
    await page.get_by_label("Show").select_option("void")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("li.coupon")).to_have_count(2)
    await page.get_by_label("Show").select_option("all")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator(f'[data-code="{third}"] .badge')).to_have_text("Used")
    await expect(page.locator(f'[data-code="{kept}"] .badge')).to_have_text("Unused")
    await expect(page.locator(f'input[name="codes"][value="{kept}"]')).to_be_enabled()
    await screenshot(page, "coupons")


async def test_a_pending_redemption_is_finished_by_try_again(
    browser: Browser, tmp_path: Path, auth: Callers
) -> None:
    stack = await start_stack(tmp_path, auth)
    context = await browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(WAIT_MS * 2)
    try:
        product_id = await stack.product()
        customer_id, token = await stack.customer(10_000)
        page = await context.new_page()
        await sign_in(page, stack, token)
        await page.goto(f"{stack.url}/redeem/{product_id}?quantity=2")
        await quoted(page, "2,000")
        await stack.stop_cardpoints()
        await page.get_by_role("button", name="Redeem points").click()
        await expect(page.locator("#pending")).to_contain_text("did not answer")
        [pending] = await stack.redemptions(customer_id)
        assert pending.state == pb.REDEMPTION_STATE_PENDING
        await screenshot(page, "pending")

        await stack.restart_cardpoints()
        await stack.until_ecommerce_reaches_cardpoints(customer_id, product_id)
        await page.get_by_role("button", name="Try again").click()
        await expect(page.locator("#completed")).to_contain_text("2,000 points")
        [done] = await stack.redemptions(customer_id)
        assert done.redemption_id == pending.redemption_id
        assert done.state == pb.REDEMPTION_STATE_COMPLETED and len(done.coupons) == 2
        assert await stack.balance(customer_id) == 8_000
    finally:
        await context.close()
        await stack.close()
