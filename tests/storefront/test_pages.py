"""The storefront without a browser: words, money, sessions, headers, logs and every refusal."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pytest

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from servicekit.auth import TokenIssuer, generate_signing_key
from servicekit.errors import FieldViolation
from servicekit.observability import JsonFormatter
from storefront.adapters.redemption_client import RedemptionClient, ServiceRefusal
from storefront.entrypoints import i18n
from storefront.entrypoints.app import CONTENT_SECURITY_POLICY, create_app
from storefront.entrypoints.sessions import SessionStore, TokenUnreadable, read_token
from storefront.entrypoints.settings import Settings, parse_settings
from tests.auth import Callers
from tests.storefront.stack import Stack, start_stack


def test_money_is_read_from_minor_units_by_currency_and_locale() -> None:
    assert i18n.money(1000, "CNY", "zh-CN") == "¥10.00"
    assert i18n.money(1000, "CNY", "en") == "CNY 10.00"
    assert i18n.money(5, "CNY", "en") == "CNY 0.05"
    assert i18n.money(123_456_789, "USD", "en") == "$1,234,567.89"
    assert i18n.money(1500, "JPY", "zh-CN") == "JP¥1,500"
    assert i18n.money(-250, "EUR", "en") == "-EUR 2.50"
    # Exact at sizes a float would round: 2**62 fen.
    assert i18n.money(2**62, "CNY", "en") == "CNY 46,116,860,184,273,879.04"
    assert i18n.points(100_000) == "100,000"


def test_the_language_comes_from_accept_language() -> None:
    assert i18n.negotiate("zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert i18n.negotiate("en-US,en;q=0.9,zh;q=0.5") == "en"
    assert i18n.negotiate("fr-FR, zh-TW;q=0.4") == "zh-CN"
    assert i18n.negotiate("en;q=0, zh") == "zh-CN"
    assert i18n.negotiate("fr") == "en"
    assert i18n.negotiate("") == "en"
    assert i18n.negotiate("zh;q=abc, en;q=0.1") == "en"


def test_both_languages_have_every_phrase() -> None:
    english, chinese = i18n.CATALOGUE["en"], i18n.CATALOGUE["zh-CN"]
    assert set(english) == set(chinese)
    for key, text in english.items():
        assert re.findall(r"{(\w+)}", text) == re.findall(r"{(\w+)}", chinese[key]), key


def test_a_token_says_who_signs_in_and_until_when(auth: Callers) -> None:
    token = auth.token("alice", "customer", ttl=60)
    customer, expires = read_token(token, now=0)
    assert customer == "alice" and expires > 0
    with pytest.raises(TokenUnreadable) as expired:
        read_token(token, now=expires)
    assert expired.value.reason == "expired"
    with pytest.raises(TokenUnreadable) as operator:
        read_token(auth.token("op", "admin"), now=0)
    assert operator.value.reason == "not_customer"
    with pytest.raises(TokenUnreadable) as garbage:
        read_token("eyJhbGciOi.nonsense", now=0)
    assert garbage.value.reason == "malformed"


def test_a_session_ends_with_its_token() -> None:
    now = [1000.0]
    store = SessionStore(capacity=2, clock=lambda: now[0])
    session = store.start("tok", "alice", expires_at=1060.0)
    assert store.get(session.session_id) == session
    now[0] = 1060.0
    assert store.get(session.session_id) is None
    # At capacity the oldest session goes first.
    first, second, third = (store.start("t", c, 9e9) for c in ("a", "b", "c"))
    assert store.get(first.session_id) is None
    assert store.get(second.session_id) and store.get(third.session_id)
    assert store.csrf_ok(second.session_id, store.csrf_token(second.session_id))
    assert not store.csrf_ok(second.session_id, store.csrf_token(third.session_id))
    assert not store.csrf_ok("", store.csrf_token(""))


def test_settings_come_from_flags_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POINTSBRIDGE_STOREFRONT_ECOMMERCE_ADDRESS", "shop:1")
    monkeypatch.setenv("POINTSBRIDGE_STOREFRONT_DEV_SIGN_IN", "true")
    settings = parse_settings(["--address", "127.0.0.1:9999"])
    assert settings.address == "127.0.0.1:9999"
    assert settings.ecommerce_address == "shop:1"
    assert settings.dev_sign_in is True
    assert Settings().dev_sign_in is False and Settings().address == "127.0.0.1:8080"


# ---------------------------------------------------------------- every refusal, through a fake


PRODUCT = pb.CouponProduct(
    product_id="c10",
    display_name="10 CNY e-coupon",
    face_value_minor=1000,
    currency="CNY",
    points_per_coupon=1000,
    ratio_version=1,
    max_quantity_per_redemption=20,
    active=True,
)


class FakeShop:
    """RedemptionService as the storefront sees it, refusing RedeemPoints as told."""

    def __init__(self) -> None:
        self.refusal: ServiceRefusal | None = None
        self.broken = False
        self.redeemed: list[str] = []
        self.refunded: list[str] = []

    async def check_token(self, token: str) -> None:
        return None

    async def list_products(self, token: str, *, include_inactive: bool = False) -> list[Any]:
        if self.broken:
            raise RuntimeError("database password is hunter2")
        return [PRODUCT]

    async def find_product(self, token: str, product_id: str) -> Any:
        return PRODUCT if product_id == "c10" else None

    async def quote(self, token: str, customer_id: str, product_id: str, quantity: int) -> Any:
        return pb.Quote(
            product_id=product_id,
            quantity=quantity,
            points_required=quantity * 1000,
            points_per_coupon=1000,
            ratio_version=1,
            face_value_total_minor=quantity * 1000,
            currency="CNY",
            available_points=1500,
            card_linked=True,
        )

    async def redeem(self, token: str, **request: Any) -> Any:
        if self.refusal is not None:
            raise self.refusal
        self.redeemed.append(request["request_id"])
        return pb.Redemption(redemption_id="rd_1", state=pb.REDEMPTION_STATE_COMPLETED)

    async def refund(self, token: str, **request: Any) -> Any:
        self.refunded.append(request["request_id"])
        if self.refusal is not None:
            raise self.refusal
        return pb.Refund(codes=request["codes"], points=1000, state=pb.REFUND_STATE_COMPLETED)

    async def close(self) -> None:
        return None


@pytest.fixture
def shop() -> FakeShop:
    return FakeShop()


def in_process(shop: FakeShop, base_url: str = "http://testserver", **settings: Any) -> Any:
    """An HTTP client of a storefront app in this process, over the fake shop."""
    app = create_app(Settings(**settings), client=cast(RedemptionClient, shop))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def browser(shop: FakeShop, auth: Callers) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(shop, dev_sign_in=True) as client:
        token = auth.token("alice", "customer")
        assert (await client.get(f"/dev/sign-in?token={token}")).status_code == 303
        yield client


async def redeem_form(client: httpx.AsyncClient, quantity: int = 2) -> dict[str, str]:
    page = (await client.get(f"/redeem/c10?quantity={quantity}")).text
    fields = dict(
        re.findall(
            r'name="(csrf|request_id|expected_points|quoted_quantity)" '
            r'(?:id="[^"]*" )?value="([^"]*)"',
            page,
        )
    )
    return {**fields, "quantity": str(quantity), "action": "redeem"}


def said(page: str, element: str) -> str:
    found = re.search(rf'id="{element}"[^>]*>([^<]*)<', page)
    return found[1].strip() if found else ""


REFUSALS = [
    ("FAILED_PRECONDITION", "INSUFFICIENT_POINTS", "quantity-error",
     "You do not have enough points: this needs 2,000 points and you have 1,500.",
     "积分不足：需要 2,000 积分，您现有 1,500 积分。"),
    ("FAILED_PRECONDITION", "QUANTITY_LIMIT_EXCEEDED", "quantity-error",
     "You can redeem at most 20 coupons at a time.", "每次最多兑换 20 张电子券。"),
    ("INVALID_ARGUMENT", "INVALID_FIELD", "quantity-error",
     "Enter a whole number of coupons, from 1 to 20.", "请输入 1 到 20 之间的整数张数。"),
    ("FAILED_PRECONDITION", "PRODUCT_INACTIVE", "product-error",
     "This coupon is not offered any more.", "此电子券已停止兑换。"),
    ("FAILED_PRECONDITION", "CARD_NOT_LINKED", "card-error",
     "No card is linked to your account, so there are no points to redeem.",
     "您的账户尚未绑定信用卡，没有可兑换的积分。"),
    ("FAILED_PRECONDITION", "ACCOUNT_FROZEN", "card-error",
     "Your card account is frozen; contact your card issuer.",
     "您的信用卡账户已冻结，请联系发卡机构。"),
    ("FAILED_PRECONDITION", "RATE_CHANGED", "form-notice",
     "The exchange rate changed since your quote. Here is the new quote; nothing was charged.",
     "自您查看报价后兑换比例已变更。以下是新的报价，未扣除任何积分。"),
    ("INVALID_ARGUMENT", "POINTS_MISMATCH", "form-notice",
     "The points did not match the quote. Here is the current quote; nothing was charged.",
     "所需积分与报价不符。以下是当前的报价，未扣除任何积分。"),
    ("RESOURCE_EXHAUSTED", "RATE_LIMITED", "form-notice",
     "Too many requests in a short time. Wait a few seconds, then try again; nothing was charged.",
     "请求过于频繁。请等几秒后重试，未扣除任何积分。"),
    ("ALREADY_EXISTS", "REQUEST_ID_REUSED", "form-notice",
     "This form was already used for something else, so nothing was done. Here is a fresh one.",
     "此表单已用于其他请求，因此未执行任何操作。这是新的表单。"),
]  # fmt: skip


@pytest.mark.parametrize(("code", "reason", "element", "english", "chinese"), REFUSALS)
async def test_every_redeem_refusal_is_said_next_to_its_field_in_both_languages(
    browser: httpx.AsyncClient,
    shop: FakeShop,
    code: str,
    reason: str,
    element: str,
    english: str,
    chinese: str,
) -> None:
    violations = (FieldViolation("quantity", "must be 1-20"),) if reason == "INVALID_FIELD" else ()
    shop.refusal = ServiceRefusal(grpc.StatusCode[code], reason, "refused", {}, violations)
    for lang, words in (("en", english), ("zh-CN", chinese)):
        form = await redeem_form(browser)
        page = await browser.post(f"/redeem/c10?lang={lang}", data=form)
        assert page.status_code in (409, 422, 429)
        assert said(page.text, element) == words
        # A fresh request id for the next try; the refused one is never offered again.
        assert form["request_id"] not in page.text
    assert shop.redeemed == []


async def test_a_quantity_changed_after_the_quote_or_a_bad_request_id_redeems_nothing(
    browser: httpx.AsyncClient, shop: FakeShop
) -> None:
    form = await redeem_form(browser, quantity=2)
    page = await browser.post("/redeem/c10", data={**form, "quantity": "3"})
    assert page.status_code == 409
    assert said(page.text, "form-notice") == i18n._EN["refusal.QUANTITY_CHANGED"]
    form = await redeem_form(browser)
    page = await browser.post("/redeem/c10", data={**form, "request_id": "not one!"})
    assert page.status_code == 400
    assert shop.redeemed == []


async def test_a_refund_the_points_system_cannot_answer_yet_goes_back_to_its_redemption(
    browser: httpx.AsyncClient, shop: FakeShop
) -> None:
    form = await redeem_form(browser)
    refund = {"csrf": form["csrf"], "request_id": "rf-1", "codes": "CODE-1"}
    page = await browser.post("/redemptions/rd_1/refund", data={**refund, "request_id": "no!"})
    assert page.status_code == 400
    assert shop.refunded == []
    shop.refusal = ServiceRefusal(
        grpc.StatusCode.UNAVAILABLE, "POINTS_SYSTEM_UNAVAILABLE", "later", {}, ()
    )
    page = await browser.post("/redemptions/rd_1/refund", data=refund)
    assert (page.status_code, page.headers["location"]) == (303, "/redemptions/rd_1")
    assert shop.refunded == ["rf-1"]


async def test_an_unexpected_error_shows_the_request_id_and_nothing_else(
    browser: httpx.AsyncClient, shop: FakeShop
) -> None:
    shop.broken = True
    page = await browser.get("/products", headers={"x-request-id": "trace-42"})
    assert page.status_code == 500
    assert "trace-42" in page.text
    assert "hunter2" not in page.text and "Traceback" not in page.text


async def test_pages_carry_the_security_headers(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/redeem/c10")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    assert "<script>" not in page.text and " style=" not in page.text
    script = await browser.get("/static/storefront.js")
    assert script.status_code == 200 and "no-store" not in script.headers.get("cache-control", "")


async def test_the_session_cookie_is_secure_over_https(shop: FakeShop, auth: Callers) -> None:
    async with in_process(shop, "https://shop.example", dev_sign_in=True) as client:
        signed_in = await client.get(f"/dev/sign-in?token={auth.token('alice', 'customer')}")
    cookie = signed_in.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie


async def test_without_the_flag_there_is_no_dev_sign_in(shop: FakeShop, auth: Callers) -> None:
    async with in_process(shop) as client:
        page = await client.get(f"/dev/sign-in?token={auth.token('a', 'customer')}")
        assert page.status_code == 404


# ---------------------------------------------------------------- against the real services


@pytest.fixture
async def stack(tmp_path: Path, auth: Callers) -> AsyncIterator[Stack]:
    running = await start_stack(tmp_path, auth)
    yield running
    await running.close()


async def sign_in(client: httpx.AsyncClient, token: str) -> httpx.Response:
    page = await client.get("/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    return await client.post("/sign-in", data={"csrf": csrf[1], "token": token})


async def test_a_token_ecommerce_refuses_does_not_sign_in(stack: Stack) -> None:
    forged = TokenIssuer(generate_signing_key()[0]).issue("mallory", ["customer"], 3600)
    async with httpx.AsyncClient(base_url=stack.url) as client:
        refused = await sign_in(client, forged)
        assert refused.status_code == 422
        assert "The shop did not accept this token" in refused.text
        assert (await client.get("/products")).headers["location"] == "/sign-in"


async def test_a_session_ends_when_ecommerce_stops_accepting_its_token(stack: Stack) -> None:
    _, token = await stack.customer(1_000)
    store: SessionStore = cast(Any, stack.storefront.server.config.app).state.pages.sessions
    async with httpx.AsyncClient(base_url=stack.url) as client:
        assert (await sign_in(client, token)).headers["location"] == "/products"
        assert (await client.get("/products")).status_code == 200
        # The token goes bad behind the storefront's back (revoked, say): it ends the session.
        [session] = [s for s in store._sessions.values() if s.token == token]
        store._sessions[session.session_id] = type(session)(
            session.session_id, token[:-4] + "AAAA", session.customer_id, session.expires_at
        )
        ended = await client.get("/products")
        assert ended.status_code == 303 and ended.headers["location"] == "/sign-in?ended=1"
        assert store.get(session.session_id) is None
        notice = await client.get(ended.headers["location"])
        assert "Your session has ended" in notice.text


async def test_access_logs_are_json_with_the_request_id_sent_on_to_ecommerce(
    stack: Stack,
) -> None:
    await stack.product()
    _, token = await stack.customer(1_000)
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        async with httpx.AsyncClient(base_url=stack.url) as client:
            await sign_in(client, token)
            page = await client.get("/products", headers={"x-request-id": "trace-abc-123"})
            assert page.headers["x-request-id"] == "trace-abc-123"
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    entries = [json.loads(line) for line in lines.getvalue().splitlines()]
    traced = [e for e in entries if e.get("request_id") == "trace-abc-123"]
    access = [e for e in traced if e["logger"] == "storefront.access"]
    assert access and access[0]["path"] == "/products" and access[0]["status"] == 200
    # Ecommerce served the page's RPCs under the same request id.
    served = {e.get("rpc") for e in traced if e["logger"] == "pointsbridge.rpc"}
    assert {"ListCouponProducts", "QuoteRedemption"} <= served
    assert token not in lines.getvalue()


async def test_healthz_and_metrics(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        await client.get("/sign-in")
        metrics = (await client.get("/metrics")).text
    assert 'storefront_http_requests_total{route="sign_in_page",status="200"}' in metrics
    assert "storefront_ecommerce_calls_total" in metrics
