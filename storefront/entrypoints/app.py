"""Entrypoints room: the Starlette app: its middleware (request ids, sessions, headers, logs).

Each route turns a form into one or two RedemptionService calls and their answer into a page.
Quotes, limits, states and refusals all come from ecommerce; this tier only words them.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from servicekit.observability import incoming_request_id, request_id_var, rpc_var
from servicekit.tls import ClientTransport
from storefront.adapters.redemption_client import RedemptionClient, ServiceRefusal
from storefront.entrypoints import i18n
from storefront.entrypoints.pages import Pages
from storefront.entrypoints.sessions import SessionStore, new_browser_id
from storefront.entrypoints.settings import Settings

log = logging.getLogger("storefront")
access_log = logging.getLogger("storefront.access")

HERE = Path(__file__).parent
SESSION_COOKIE = "pb_session"
LANG_COOKIE = "pb_lang"
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")

HTTP_REQUESTS = Counter(
    "storefront_http_requests_total",
    "HTTP requests served by the storefront, by route and status code.",
    ["route", "status"],
)
HTTP_LATENCY = Histogram(
    "storefront_http_request_seconds",
    "Time to serve an HTTP request, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# No inline script or style anywhere: the live quote is /static/storefront.js.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def _locale(request: Request) -> tuple[str, bool]:
    """The page's locale, and whether the visitor just chose it (so it goes in a cookie)."""
    asked = request.query_params.get("lang", "")
    if asked in i18n.LOCALES:
        return asked, True
    kept = request.cookies.get(LANG_COOKIE, "")
    if kept in i18n.LOCALES:
        return kept, False
    return i18n.negotiate(request.headers.get("accept-language", "")), False


class Edge(BaseHTTPMiddleware):
    """Request id, locale and session for every request; then headers, cookies, log, metrics."""

    def __init__(self, app: Any, pages: Pages) -> None:
        super().__init__(app)
        self.pages = pages

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = incoming_request_id(request.headers.items())
        id_token = request_id_var.set(request_id)
        rpc_token = rpc_var.set(f"{request.method} {request.url.path}")
        started = time.perf_counter()
        status = 500
        locale, chosen = _locale(request)
        cookie = request.cookies.get(SESSION_COOKIE, "")
        known = bool(_COOKIE_VALUE.match(cookie))
        state = request.state
        state.request_id = request_id
        state.t = i18n.Translator(locale)
        state.browser_id = cookie if known else new_browser_id()
        state.cookie_changed = not known
        state.session = self.pages.sessions.get(cookie) if known else None
        try:
            try:
                response = await call_next(request)
            except ServiceRefusal as refusal:
                response = self.pages.refused(request, refusal)
            except Exception:
                log.exception("unexpected error serving %s %s", request.method, request.url.path)
                response = self.pages.error(request, 500)
            status = response.status_code
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            response.headers["X-Request-Id"] = request_id
            if not request.url.path.startswith("/static/"):
                # Pages show codes, balances and tokens' sessions: never keep a copy.
                response.headers["Cache-Control"] = "no-store"
            secure = request.url.scheme == "https"
            if state.cookie_changed:
                response.set_cookie(
                    SESSION_COOKIE,
                    state.browser_id,
                    httponly=True,
                    samesite="lax",
                    secure=secure,
                )
            if chosen:
                response.set_cookie(
                    LANG_COOKIE,
                    locale,
                    max_age=365 * 86_400,
                    httponly=True,
                    samesite="lax",
                    secure=secure,
                )
            return response
        finally:
            elapsed = time.perf_counter() - started
            endpoint = request.scope.get("endpoint")
            route = str(getattr(endpoint, "__name__", "other"))
            HTTP_REQUESTS.labels(route, str(status)).inc()
            HTTP_LATENCY.labels(route).observe(elapsed)
            access_log.info(
                "%s %s %d %.1f ms",
                request.method,
                request.url.path,
                status,
                elapsed * 1000,
                extra={
                    "method": request.method,
                    "path": request.url.path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
            rpc_var.reset(rpc_token)
            request_id_var.reset(id_token)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(
    settings: Settings,
    *,
    client: RedemptionClient | None = None,
    sessions: SessionStore | None = None,
) -> Starlette:
    """The storefront app. The channel to ecommerce opens in its lifespan, never at import."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    pages = Pages(templates, sessions or SessionStore(settings.max_sessions), settings)
    if client is not None:
        pages.client = client

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if client is not None:
            yield
            return
        pages.client = RedemptionClient.connect(
            settings.ecommerce_address,
            timeout=settings.call_timeout,
            redeem_timeout=settings.redeem_timeout,
            transport=ClientTransport.to(settings, "ecommerce"),
        )
        try:
            yield
        finally:
            await pages.client.close()

    routes = [
        Route("/", pages.home, methods=["GET"]),
        Route("/sign-in", pages.sign_in_page, methods=["GET"]),
        Route("/sign-in", pages.sign_in, methods=["POST"]),
        Route("/sign-out", pages.sign_out, methods=["POST"]),
        Route("/products", pages.products, methods=["GET"]),
        Route("/redeem/{product_id}", pages.redeem_page, methods=["GET"]),
        Route("/redeem/{product_id}", pages.redeem, methods=["POST"]),
        Route("/api/quote", pages.quote_json, methods=["GET"]),
        Route("/redemptions/{redemption_id}", pages.redemption_page, methods=["GET"]),
        Route("/redemptions/{redemption_id}/refund", pages.refund, methods=["POST"]),
        Route("/coupons", pages.coupons, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    if settings.dev_sign_in:
        routes.append(Route("/dev/sign-in", pages.dev_sign_in, methods=["GET"]))

    async def not_found(request: Request, exc: Exception) -> Response:
        return pages.error(request, 404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("method not allowed", status_code=405)

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Edge, pages=pages)],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_allowed},
    )
    app.state.pages = pages
    return app
