"""Entrypoints room: what every page shares: rendering a template, error pages, refusals
no route placed, the session's end, and checked forms."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import grpc
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from storefront.adapters.redemption_client import RedemptionClient, ServiceRefusal
from storefront.entrypoints import i18n
from storefront.entrypoints.sessions import Session, SessionStore, new_browser_id
from storefront.entrypoints.settings import Settings

log = logging.getLogger("storefront")


class Rendering:
    """Pages over one RedemptionClient and one SessionStore: drawing, refusing, forms."""

    client: RedemptionClient

    def __init__(
        self, templates: Jinja2Templates, sessions: SessionStore, settings: Settings
    ) -> None:
        self.templates = templates
        self.sessions = sessions
        self.settings = settings

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
