"""Entrypoints room: the storefront's routes, each a form in and one or two RPCs out.

No rule is decided here: what a redemption costs, how many coupons may be taken, which
coupons may be refunded and every refusal come from RedemptionService. This module only
puts the service's answer, in the customer's words, next to the field it concerns.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import grpc
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from storefront.adapters.redemption_client import (
    RedemptionClient,
    ServiceRefusal,
    available_points,
    card_linked,
)
from storefront.entrypoints import i18n
from storefront.entrypoints.sessions import (
    Session,
    SessionStore,
    TokenUnreadable,
    new_browser_id,
    read_token,
)
from storefront.entrypoints.settings import Settings

log = logging.getLogger("storefront")

# The idempotency keys RedemptionService accepts; a form's key is minted as one.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_WHOLE_NUMBER = re.compile(r"^[0-9]{1,9}$")

COUPON_FILTERS: Mapping[str, pb.CouponState] = {
    "all": pb.COUPON_STATE_UNSPECIFIED,
    "issued": pb.COUPON_STATE_ISSUED,
    "used": pb.COUPON_STATE_USED,
    "void": pb.COUPON_STATE_VOID,
    "expired": pb.COUPON_STATE_EXPIRED,
}
COUPON_STATES: Mapping[int, str] = {
    pb.COUPON_STATE_ISSUED: "issued",
    pb.COUPON_STATE_USED: "used",
    pb.COUPON_STATE_VOID: "void",
    pb.COUPON_STATE_EXPIRED: "expired",
}
REDEMPTION_STATES: Mapping[int, str] = {
    pb.REDEMPTION_STATE_PENDING: "pending",
    pb.REDEMPTION_STATE_COMPLETED: "completed",
    pb.REDEMPTION_STATE_FAILED: "failed",
}
PRESETS = (1, 2, 5, 10)

# Where each refusal a customer can meet is said: the part of the form it concerns.
REFUSAL_PLACES: Mapping[str, str] = {
    "INSUFFICIENT_POINTS": "quantity",
    "QUANTITY_LIMIT_EXCEEDED": "quantity",
    "PRODUCT_INACTIVE": "product",
    "PRODUCT_NOT_FOUND": "product",
    "CARD_NOT_LINKED": "card",
    "ACCOUNT_FROZEN": "card",
    "ACCOUNT_CLOSED": "card",
    "ACCOUNT_NOT_FOUND": "card",
    "RATE_CHANGED": "quote",
    "POINTS_MISMATCH": "quote",
    "RATE_LIMITED": "form",
    "REQUEST_ID_REUSED": "form",
    "POINTS_SYSTEM_UNAVAILABLE": "form",
    "REVERSAL_EXCEEDS_DEDUCTION": "form",
    "COUPON_ALREADY_USED": "coupon",
    "COUPON_VOID": "coupon",
    "COUPON_EXPIRED": "coupon",
    "COUPON_NOT_FOUND": "coupon",
}
# HTTP status of a page that shows a refusal instead of doing what was asked.
REFUSAL_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def mint_request_id(kind: str) -> str:
    """A form's idempotency key, chosen when the page is rendered."""
    return f"sf-{kind}-{secrets.token_urlsafe(18)}"


def whole_number(text: str) -> int | None:
    """A typed count as an int, or None when it is not digits (the range is ecommerce's)."""
    text = text.strip()
    return int(text) if _WHOLE_NUMBER.match(text) else None


@dataclass(frozen=True)
class Placed:
    """A refusal, worded, and the part of the form it goes next to."""

    place: str
    text: str
    status: int


def place_refusal(
    t: i18n.Translator,
    refusal: ServiceRefusal,
    *,
    product: pb.CouponProduct | None = None,
    quote: pb.Quote | None = None,
) -> Placed | None:
    """Words for a refusal a customer can meet, or None for one they should never see."""
    status = REFUSAL_STATUS.get(refusal.code, 500)
    reason = refusal.reason
    limit = product.max_quantity_per_redemption if product is not None else 0
    if reason == "INVALID_FIELD":
        if any(f == "quantity" for f in refusal.fields):
            return Placed("quantity", t("refusal.QUANTITY_INVALID", max=limit), status)
        if any(f.startswith("codes") for f in refusal.fields):
            return Placed("codes", t("refusal.NO_CODES"), status)
        return None
    place = REFUSAL_PLACES.get(reason)
    if place is None:
        return None
    if reason == "QUANTITY_LIMIT_EXCEEDED":
        return Placed(place, t("refusal.QUANTITY_LIMIT_EXCEEDED", max=limit), status)
    balance = None if quote is None else available_points(quote)
    if reason == "INSUFFICIENT_POINTS" and quote is not None and balance is not None:
        text = t(
            "refusal.INSUFFICIENT_POINTS.figures",
            required=t.points(quote.points_required),
            available=t.points(balance),
        )
        return Placed(place, text, status)
    if place == "coupon" and refusal.metadata.get("code"):
        place = f"coupon:{refusal.metadata['code']}"
    return Placed(place, t(f"refusal.{reason}"), status)


def quote_view(t: i18n.Translator, quote: pb.Quote) -> dict[str, Any]:
    """What the page shows of a quote; the arithmetic is a subtraction of two integers."""
    view: dict[str, Any] = {
        "ok": True,
        "quantity": quote.quantity,
        "expected_points": quote.points_required,
        "points_required": t.points(quote.points_required),
        "face_value_total": t.money(quote.face_value_total_minor, quote.currency),
        "ratio": t(
            "redeem.ratio", points=t.points(quote.points_per_coupon), version=quote.ratio_version
        ),
        "card_linked": card_linked(quote),
        "available": None,
        "points_after": None,
        "short": None,
    }
    balance = available_points(quote)
    if balance is not None:
        after = balance - quote.points_required
        view["available"] = t.points(balance)
        if after >= 0:
            view["points_after"] = t.points(after)
        else:
            view["short"] = t("redeem.short_by", points=t.points(-after))
    return view


def coupon_view(t: i18n.Translator, coupon: pb.Coupon, names: Mapping[str, str]) -> dict[str, Any]:
    state = COUPON_STATES.get(coupon.state, "issued")
    return {
        "code": coupon.code,
        "product": names.get(coupon.product_id, coupon.product_id),
        "face_value": t.money(coupon.face_value_minor, coupon.currency),
        "state": state,
        "state_text": t(f"state.{state}"),
        "expires": i18n.day(coupon.expire_time),
        "refundable": coupon.state == pb.COUPON_STATE_ISSUED,
        "redemption_id": coupon.redemption_id,
    }


class Pages:
    """The route handlers, over one RedemptionClient and one SessionStore."""

    client: RedemptionClient

    def __init__(
        self, templates: Jinja2Templates, sessions: SessionStore, settings: Settings
    ) -> None:
        self.templates = templates
        self.sessions = sessions
        self.settings = settings

    # ------------------------------------------------------------------ plumbing

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        t: i18n.Translator = request.state.t
        session: Session | None = request.state.session
        languages = [
            (locale, i18n.Translator(locale)("lang.name"), self._with_lang(request, locale))
            for locale in i18n.LOCALES
        ]
        notice = self.sessions.take_notice(session.session_id) if session else ""
        return self.templates.TemplateResponse(
            request,
            template,
            {
                "t": t,
                "session": session,
                "csrf": self.sessions.csrf_token(request.state.browser_id),
                "request_id": request.state.request_id,
                "languages": languages,
                "flash": notice,
                **context,
            },
            status_code=status,
        )

    @staticmethod
    def _with_lang(request: Request, locale: str) -> str:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        return f"{request.url.path}?{urlencode([*query, ('lang', locale)])}"

    def error(self, request: Request, status: int, words: str = "") -> Response:
        t: i18n.Translator = request.state.t
        if not words:
            words = {404: "error.not_found", 403: "error.csrf", 503: "error.unavailable"}.get(
                status, "error.body"
            )
        return self.render(request, "error.html", status, message=t(words))

    def refused(self, request: Request, refusal: ServiceRefusal) -> Response:
        """A refusal no route placed next to a field: the session's end, or an error page."""
        if refusal.code is grpc.StatusCode.UNAUTHENTICATED:
            self._end_session(request)
            if request.url.path.startswith("/api/"):
                return JSONResponse({"ok": False, "signed_out": True}, status_code=401)
            return RedirectResponse("/sign-in?ended=1", status_code=303)
        if refusal.code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            status, words = 429, "refusal.RATE_LIMITED"
        elif refusal.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            log.warning("ecommerce did not answer: %s", refusal)
            status, words = 503, "error.unavailable"
        elif refusal.code in (
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.PERMISSION_DENIED,
        ):
            # Someone else's redemption, or an id that cannot be one: no such page.
            status, words = 404, "error.not_found"
        else:
            log.error("ecommerce refused unexpectedly: %s", refusal)
            status, words = 500, "error.body"
        if request.url.path.startswith("/api/"):
            t: i18n.Translator = request.state.t
            return JSONResponse({"ok": False, "message": t(words)}, status_code=status)
        return self.error(request, status, words)

    def _end_session(self, request: Request) -> None:
        session: Session | None = request.state.session
        if session is not None:
            self.sessions.end(session.session_id)
        request.state.session = None
        request.state.browser_id = new_browser_id()
        request.state.cookie_changed = True

    async def checked_form(self, request: Request) -> FormData | None:
        """The posted form, or None when its CSRF token is missing or wrong."""
        form = await request.form(max_files=0, max_fields=200)
        submitted = form.get("csrf")
        if not isinstance(submitted, str) or not self.sessions.csrf_ok(
            request.state.browser_id, submitted
        ):
            log.warning(
                "refused a %s to %s without a valid CSRF token", request.method, request.url.path
            )
            return None
        return form

    async def signed_in_form(self, request: Request) -> tuple[FormData, Session] | Response:
        """A signed-in customer's posted form, or the page that refuses it (403, or sign in)."""
        form = await self.checked_form(request)
        if form is None:
            return self.error(request, 403)
        session: Session | None = request.state.session
        if session is None:
            return RedirectResponse("/sign-in?ended=1", status_code=303)
        return form, session

    @staticmethod
    def field(form: FormData | Mapping[str, Any], name: str) -> str:
        value = form.get(name)
        return value if isinstance(value, str) else ""

    # ------------------------------------------------------------------ sign-in

    async def home(self, request: Request) -> Response:
        target = "/products" if request.state.session else "/sign-in"
        return RedirectResponse(target, status_code=303)

    async def sign_in_page(self, request: Request) -> Response:
        if request.state.session:
            return RedirectResponse("/products", status_code=303)
        notice = ""
        if request.query_params.get("ended"):
            notice = "sign_in.ended"
        elif request.query_params.get("signed_out"):
            notice = "sign_in.signed_out"
        return self.render(request, "sign_in.html", notice=notice, error="")

    async def sign_in(self, request: Request) -> Response:
        form = await self.checked_form(request)
        if form is None:
            return self.error(request, 403)
        return await self._start_session(request, self.field(form, "token"))

    async def dev_sign_in(self, request: Request) -> Response:
        """Development only (--dev-sign-in): sign in from a link that carries the token."""
        return await self._start_session(request, request.query_params.get("token", ""))

    async def _start_session(self, request: Request, token: str) -> Response:
        token = token.strip()
        problem = ""
        if not token:
            problem = "sign_in.empty"
        else:
            try:
                customer_id, expires_at = read_token(token, self.sessions.now())
            except TokenUnreadable as error:
                problem = f"sign_in.{error.reason}"
        if not problem:
            try:
                await self.client.check_token(token)
            except ServiceRefusal as refusal:
                if refusal.code is grpc.StatusCode.UNAUTHENTICATED:
                    problem = "sign_in.refused"
                elif refusal.code is grpc.StatusCode.PERMISSION_DENIED:
                    problem = "sign_in.not_customer"
                else:
                    raise
        if problem:
            t: i18n.Translator = request.state.t
            return self.render(request, "sign_in.html", 422, notice="", error=t(problem))
        previous: Session | None = request.state.session
        if previous is not None:
            self.sessions.end(previous.session_id)
        session = self.sessions.start(token, customer_id, expires_at)
        request.state.session = session
        request.state.browser_id = session.session_id
        request.state.cookie_changed = True
        log.info("signed in %s", customer_id)
        return RedirectResponse("/products", status_code=303)

    async def sign_out(self, request: Request) -> Response:
        form = await self.checked_form(request)
        if form is None:
            return self.error(request, 403)
        self._end_session(request)
        return RedirectResponse("/sign-in?signed_out=1", status_code=303)

    # ------------------------------------------------------------------ products and redeem

    async def products(self, request: Request) -> Response:
        session: Session | None = request.state.session
        if session is None:
            return RedirectResponse("/sign-in", status_code=303)
        t: i18n.Translator = request.state.t
        products = await self.client.list_products(session.token)
        available: str | None = None
        no_card = False
        if products:
            # The balance comes with a quote: ask for the cheapest one there is.
            try:
                quote = await self.client.quote(
                    session.token, session.customer_id, products[0].product_id, 1
                )
                balance = available_points(quote)
                if balance is not None:
                    available = t.points(balance)
                no_card = not card_linked(quote)
            except ServiceRefusal as refusal:
                if refusal.reason == "CARD_NOT_LINKED":
                    no_card = True
                elif refusal.code is grpc.StatusCode.UNAUTHENTICATED:
                    raise
        rows = [
            {
                "product_id": p.product_id,
                "name": p.display_name,
                "face_value": t.money(p.face_value_minor, p.currency),
                "points_per_coupon": t.points(p.points_per_coupon),
            }
            for p in products
        ]
        return self.render(
            request, "products.html", products=rows, available=available, no_card=no_card
        )

    async def redeem_page(self, request: Request) -> Response:
        session: Session | None = request.state.session
        if session is None:
            return RedirectResponse("/sign-in", status_code=303)
        return await self._render_redeem(
            request,
            session,
            request.path_params["product_id"],
            request.query_params.get("quantity", "1"),
        )

    async def _render_redeem(
        self,
        request: Request,
        session: Session,
        product_id: str,
        quantity_text: str,
        *,
        refusal: ServiceRefusal | None = None,
        notice: str = "",
        status: int = 200,
    ) -> Response:
        """The redeem form with a fresh request id and quote, and what was refused, if anything."""
        t: i18n.Translator = request.state.t
        product = await self.client.find_product(session.token, product_id)
        if product is None:
            return self.error(request, 404)
        shown: dict[str, str] = {}
        quantity = whole_number(quantity_text)
        quote: dict[str, Any] | None = None
        answer: pb.Quote | None = None
        if quantity is None:
            shown.setdefault(
                "quantity", t("refusal.QUANTITY_INVALID", max=product.max_quantity_per_redemption)
            )
        else:
            try:
                answer = await self.client.quote(
                    session.token, session.customer_id, product_id, quantity
                )
                quote = quote_view(t, answer)
                if not card_linked(answer):
                    shown.setdefault("card", t("refusal.CARD_NOT_LINKED"))
            except ServiceRefusal as unquoted:
                said = place_refusal(t, unquoted, product=product)
                if said is None:
                    raise
                shown.setdefault(said.place, said.text)
        if refusal is not None:
            placed = place_refusal(t, refusal, product=product, quote=answer)
            assert placed is not None  # the caller checked
            status = placed.status
            if placed.place in ("quote", "form"):
                notice = placed.text
            else:
                shown[placed.place] = placed.text
        return self.render(
            request,
            "redeem.html",
            status,
            product={
                "product_id": product.product_id,
                "name": product.display_name,
                "face_value": t.money(product.face_value_minor, product.currency),
                "points_per_coupon": t.points(product.points_per_coupon),
                "max": product.max_quantity_per_redemption,
            },
            presets=[q for q in PRESETS if q <= product.max_quantity_per_redemption],
            quantity=quantity_text,
            quote=quote,
            errors=shown,
            notice=notice,
            form_request_id=mint_request_id("redeem"),
        )

    async def quote_json(self, request: Request) -> Response:
        """The live quote of the redeem page's script: the same words the page would show."""
        session: Session | None = request.state.session
        if session is None:
            return JSONResponse({"ok": False, "signed_out": True}, status_code=401)
        t: i18n.Translator = request.state.t
        product_id = request.query_params.get("product_id", "")
        quantity = whole_number(request.query_params.get("quantity", ""))
        if quantity is not None:
            try:
                answer = await self.client.quote(
                    session.token, session.customer_id, product_id, quantity
                )
                view = quote_view(t, answer)
                if not card_linked(answer):
                    view["card_error"] = t("refusal.CARD_NOT_LINKED")
                return JSONResponse(view)
            except ServiceRefusal as refusal:
                if refusal.code is grpc.StatusCode.UNAUTHENTICATED:
                    raise
                product = await self.client.find_product(session.token, product_id)
                placed = place_refusal(t, refusal, product=product)
                if placed is None:
                    raise
                return JSONResponse({"ok": False, "field": placed.place, "message": placed.text})
        product = await self.client.find_product(session.token, product_id)
        limit = product.max_quantity_per_redemption if product is not None else 0
        return JSONResponse(
            {"ok": False, "field": "quantity", "message": t("refusal.QUANTITY_INVALID", max=limit)}
        )

    async def redeem(self, request: Request) -> Response:
        posted = await self.signed_in_form(request)
        if isinstance(posted, Response):
            return posted
        form, session = posted
        t: i18n.Translator = request.state.t
        product_id = request.path_params["product_id"]
        quantity_text = self.field(form, "quantity")
        quantity = whole_number(quantity_text)
        if self.field(form, "action") == "quote" or quantity is None:
            query = urlencode({"quantity": quantity_text})
            return RedirectResponse(f"/redeem/{product_id}?{query}", status_code=303)
        if whole_number(self.field(form, "quoted_quantity")) != quantity:
            # The customer changed the count after the quote shown: quote it, charge nothing.
            return await self._render_redeem(
                request,
                session,
                product_id,
                quantity_text,
                notice=t("refusal.QUANTITY_CHANGED"),
                status=409,
            )
        request_id = self.field(form, "request_id")
        if not _REQUEST_ID.match(request_id):
            return self.error(request, 400)
        expected = whole_number(self.field(form, "expected_points"))
        try:
            redemption = await self.client.redeem(
                session.token,
                request_id=request_id,
                customer_id=session.customer_id,
                product_id=product_id,
                quantity=quantity,
                expected_points=expected,
            )
        except ServiceRefusal as refusal:
            if refusal.reason == "POINTS_SYSTEM_UNAVAILABLE":
                redemption_id = refusal.metadata.get("redemption_id", "")
                if redemption_id:
                    return RedirectResponse(f"/redemptions/{redemption_id}", status_code=303)
                return self._pending_page(
                    request, product_id, request_id, quantity, expected, redemption=None
                )
            if refusal.code is grpc.StatusCode.UNAUTHENTICATED:
                raise
            if place_refusal(t, refusal) is None:
                raise
            return await self._render_redeem(
                request, session, product_id, quantity_text, refusal=refusal
            )
        log.info(
            "redemption %s is %s", redemption.redemption_id, REDEMPTION_STATES.get(redemption.state)
        )
        return RedirectResponse(f"/redemptions/{redemption.redemption_id}", status_code=303)

    def _pending_page(
        self,
        request: Request,
        product_id: str,
        request_id: str,
        quantity: int,
        expected: int | None,
        redemption: dict[str, Any] | None,
    ) -> Response:
        return self.render(
            request,
            "result.html",
            503,
            redemption=redemption,
            state="pending",
            retry={
                "product_id": product_id,
                "request_id": request_id,
                "quantity": quantity,
                "expected_points": "" if expected is None else expected,
            },
            coupons=[],
            refund_request_id="",
            errors={},
        )

    # ------------------------------------------------------------------ results, coupons, refunds

    async def redemption_page(
        self, request: Request, errors: Mapping[str, str] | None = None, status: int = 200
    ) -> Response:
        session: Session | None = request.state.session
        if session is None:
            return RedirectResponse("/sign-in", status_code=303)
        t: i18n.Translator = request.state.t
        redemption = await self.client.get_redemption(
            session.token, session.customer_id, request.path_params["redemption_id"]
        )
        names = await self._product_names(session)
        state = REDEMPTION_STATES.get(redemption.state, "pending")
        retry = None
        if redemption.state == pb.REDEMPTION_STATE_PENDING:
            retry = {
                "product_id": redemption.product_id,
                "request_id": redemption.request_id,
                "quantity": redemption.quantity,
                "expected_points": redemption.points,
            }
        coupons = [coupon_view(t, c, names) for c in redemption.coupons]
        failure = ""
        if redemption.state == pb.REDEMPTION_STATE_FAILED:
            failure = t(f"refusal.{redemption.failure_reason}")
            if failure == f"refusal.{redemption.failure_reason}":
                failure = t("refusal.OTHER")
        return self.render(
            request,
            "result.html",
            status,
            redemption={
                "redemption_id": redemption.redemption_id,
                "request_id": redemption.request_id,
                "product": names.get(redemption.product_id, redemption.product_id),
                "quantity": redemption.quantity,
                "points": t.points(redemption.points),
                "refunded_points": t.points(redemption.refunded_points)
                if redemption.refunded_points
                else "",
                "created": i18n.day(redemption.create_time),
                "failure": failure,
            },
            state=state,
            retry=retry,
            coupons=coupons,
            refund_request_id=mint_request_id("refund"),
            errors=dict(errors or {}),
        )

    async def _product_names(self, session: Session) -> dict[str, str]:
        products = await self.client.list_products(session.token, include_inactive=True)
        return {p.product_id: p.display_name for p in products}

    async def coupons(
        self, request: Request, errors: Mapping[str, str] | None = None, status: int = 200
    ) -> Response:
        session: Session | None = request.state.session
        if session is None:
            return RedirectResponse("/sign-in", status_code=303)
        t: i18n.Translator = request.state.t
        chosen = request.query_params.get("state", "all")
        if chosen not in COUPON_FILTERS:
            chosen = "all"
        page = request.query_params.get("page", "")
        coupons, next_page = await self.client.list_coupons(
            session.token, session.customer_id, COUPON_FILTERS[chosen], page
        )
        names = await self._product_names(session)
        groups: dict[str, dict[str, Any]] = {}
        for coupon in coupons:
            group = groups.setdefault(
                coupon.redemption_id,
                {
                    "redemption_id": coupon.redemption_id,
                    "coupons": [],
                    "request_id": mint_request_id("refund"),
                },
            )
            group["coupons"].append(coupon_view(t, coupon, names))
        for group in groups.values():
            group["refundable"] = any(c["refundable"] for c in group["coupons"])
        more = ""
        if next_page:
            more = "/coupons?" + urlencode({"state": chosen, "page": next_page})
        return self.render(
            request,
            "coupons.html",
            status,
            filters=[(key, t(f"state.{key}")) for key in COUPON_FILTERS],
            chosen=chosen,
            groups=list(groups.values()),
            more=more,
            errors=dict(errors or {}),
        )

    async def refund(self, request: Request) -> Response:
        posted = await self.signed_in_form(request)
        if isinstance(posted, Response):
            return posted
        form, session = posted
        t: i18n.Translator = request.state.t
        redemption_id = request.path_params["redemption_id"]
        request_id = self.field(form, "request_id")
        if not _REQUEST_ID.match(request_id):
            return self.error(request, 400)
        codes = [c for c in form.getlist("codes") if isinstance(c, str)]
        back_to_coupons = self.field(form, "back") == "coupons"
        back_state = self.field(form, "state")
        back = (
            "/coupons?"
            + urlencode({"state": back_state if back_state in COUPON_FILTERS else "all"})
            if back_to_coupons
            else f"/redemptions/{redemption_id}"
        )
        try:
            refund = await self.client.refund(
                session.token,
                request_id=request_id,
                customer_id=session.customer_id,
                redemption_id=redemption_id,
                codes=codes,
            )
        except ServiceRefusal as refusal:
            if refusal.reason == "POINTS_SYSTEM_UNAVAILABLE":
                # The coupons are VOID; the points come back once the bank answers.
                self.sessions.leave_notice(session.session_id, t("coupons.refund_waiting"))
                return RedirectResponse(back, status_code=303)
            if refusal.code is grpc.StatusCode.UNAUTHENTICATED:
                raise
            placed = place_refusal(t, refusal)
            if placed is None:
                raise
            where = (
                placed.place if placed.place.startswith("coupon:") else f"refund:{redemption_id}"
            )
            errors = {where: placed.text}
            if back_to_coupons:
                return await self.coupons(request, errors, placed.status)
            return await self.redemption_page(request, errors, placed.status)
        if refund.state == pb.REFUND_STATE_COMPLETED:
            text = t("coupons.refunded", count=len(refund.codes), points=t.points(refund.points))
        else:
            text = t("coupons.refund_pending", points=t.points(refund.points))
        self.sessions.leave_notice(session.session_id, text)
        return RedirectResponse(back, status_code=303)
