"""Entrypoints room: a redemption's page, the customer's coupons, and refunds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from storefront.adapters.redemption_client import ServiceRefusal
from storefront.entrypoints import i18n
from storefront.entrypoints.rendering import Rendering
from storefront.entrypoints.sessions import Session
from storefront.entrypoints.views import (
    COUPON_FILTERS,
    REDEMPTION_STATES,
    REQUEST_ID,
    coupon_view,
    mint_request_id,
    place_refusal,
)


class CouponPages(Rendering):
    """What was redeemed, the coupons it gave, and giving unused ones back."""

    async def redemption_page(
        self,
        request: Request,
        errors: Mapping[str, str] | None = None,
        status: int = 200,
        back: str = "redemption",
        back_state: str = "all",
    ) -> Response:
        """The redemption, its coupons and their refund form; `back` and `back_state` are
        where a refund from that form returns to (this page, or the coupons list)."""
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
            refund_back=back,
            refund_state=back_state,
            errors=dict(errors or {}),
        )

    async def _product_names(self, session: Session) -> dict[str, str]:
        products = await self.client.list_products(session.token, include_inactive=True)
        return {p.product_id: p.display_name for p in products}

    async def coupons(self, request: Request) -> Response:
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
            200,
            filters=[(key, t(f"state.{key}")) for key in COUPON_FILTERS],
            chosen=chosen,
            groups=list(groups.values()),
            more=more,
            errors={},
        )

    async def refund(self, request: Request) -> Response:
        posted = await self.signed_in_form(request)
        if isinstance(posted, Response):
            return posted
        form, session = posted
        t: i18n.Translator = request.state.t
        redemption_id = request.path_params["redemption_id"]
        request_id = self.field(form, "request_id")
        if not REQUEST_ID.match(request_id):
            return self.error(request, 400)
        codes = [c for c in form.getlist("codes") if isinstance(c, str)]
        back_to_coupons = self.field(form, "back") == "coupons"
        back_state = self.field(form, "state")
        back_state = back_state if back_state in COUPON_FILTERS else "all"
        back = (
            "/coupons?" + urlencode({"state": back_state})
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
            # Said on the redemption's own page, which always shows every coupon of it:
            # the list the form came from may have filtered out the coupon concerned
            # (now used or refunded), or shown it on a later page. Refunding from there
            # still goes back to the list.
            return await self.redemption_page(
                request,
                errors,
                placed.status,
                back="coupons" if back_to_coupons else "redemption",
                back_state=back_state,
            )
        if refund.state == pb.REFUND_STATE_COMPLETED:
            text = t("coupons.refunded", count=len(refund.codes), points=t.points(refund.points))
        else:
            text = t("coupons.refund_pending", points=t.points(refund.points))
        self.sessions.leave_notice(session.session_id, text)
        return RedirectResponse(back, status_code=303)
