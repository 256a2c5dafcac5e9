"""Entrypoints room: the redeem form, its live quote and the redemption it starts."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from storefront.adapters.redemption_client import ServiceRefusal, card_linked
from storefront.entrypoints import i18n
from storefront.entrypoints.rendering import Rendering
from storefront.entrypoints.sessions import Session
from storefront.entrypoints.views import (
    PRESETS,
    REDEMPTION_STATES,
    REQUEST_ID,
    mint_request_id,
    place_refusal,
    quote_view,
    whole_number,
)

log = logging.getLogger("storefront")


class RedeemPages(Rendering):
    """Choosing a quantity, seeing its points, and redeeming."""

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
        if not REQUEST_ID.match(request_id):
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
