"""The storefront in a real browser (Debian's Chromium) against the real services on SQLite."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from playwright.async_api import (
    APIResponse,
    Browser,
    BrowserContext,
    Page,
    async_playwright,
    expect,
)

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from tests.auth import Callers
from tests.storefront.browser import DESKTOP, PHONE, horizontal_overflow, launch, screenshot
from tests.storefront.stack import TIMEOUT, Stack, start_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

WAIT_MS = 10_000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, auth: Callers) -> AsyncIterator[Stack]:
    running = await start_stack(tmp_path_factory.mktemp("storefront"), auth)
    yield running
    await running.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await launch(playwright)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(viewport=DESKTOP, locale="en-US")
    made.set_default_timeout(WAIT_MS)
    yield made
    await made.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


async def sign_in(page: Page, stack: Stack, token: str) -> None:
    await page.goto(f"{stack.url}/dev/sign-in?token={token}")
    await expect(page.locator("h1")).to_have_text("Coupons to redeem")


async def quoted(page: Page, points: str) -> None:
    await expect(page.locator("#quote-points")).to_have_text(points)


async def form_fields(page: Page, selector: str, **extra: str) -> list[tuple[str, str]]:
    """What the form would post, read from the page (a resubmission sends exactly this)."""
    pairs: list[list[str]] = await page.evaluate(
        "(s) => Array.from(new FormData(document.querySelector(s)).entries())", selector
    )
    return [(k, v) for k, v in pairs] + list(extra.items())


async def post_form(page: Page, url: str, fields: list[tuple[str, str]]) -> APIResponse:
    """POST fields as the browser would, with the page's cookies, not following redirects."""
    return await page.request.post(
        url,
        data=urlencode(fields),
        headers={"content-type": "application/x-www-form-urlencoded"},
        max_redirects=0,
    )


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
