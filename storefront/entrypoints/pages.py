"""Entrypoints room: the storefront's routes, each a form in and one or two RPCs out.

No rule is decided here: what a redemption costs, how many coupons may be taken, which
coupons may be refunded and every refusal come from RedemptionService. This module only
puts the service's answer, in the customer's words, next to the field it concerns.
The routes live in three rooms of one class: sign-in and products here, redeeming in
`redeem_pages`, results, coupons and refunds in `coupon_pages`.
"""

from __future__ import annotations

import logging

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from storefront.adapters.redemption_client import ServiceRefusal, available_points, card_linked
from storefront.entrypoints import i18n
from storefront.entrypoints.coupon_pages import CouponPages
from storefront.entrypoints.redeem_pages import RedeemPages
from storefront.entrypoints.sessions import Session, TokenUnreadable, read_token

log = logging.getLogger("storefront")


class Pages(RedeemPages, CouponPages):
    """The route handlers, over one RedemptionClient and one SessionStore."""

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
