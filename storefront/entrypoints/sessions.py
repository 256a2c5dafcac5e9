"""Entrypoints room: signed-in sessions kept server-side, and the CSRF token of each browser.

The browser holds only an opaque random cookie. The customer's bearer token stays in this
process's memory, so sessions last as long as the process (one process; see ARCHITECTURE.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from prometheus_client import Gauge

from servicekit.auth import ROLE_CUSTOMER

SIGNED_IN = Gauge("storefront_sessions", "Signed-in sessions held in memory.")


@dataclass(frozen=True)
class Session:
    session_id: str
    token: str
    customer_id: str
    # The token's expiry (seconds since the epoch): the session ends with it.
    expires_at: float


class TokenUnreadable(ValueError):
    """A pasted token that cannot start a session; `reason` names the words to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_token(token: str, now: float) -> tuple[str, float]:
    """The customer id and expiry a token claims.

    The signature is not checked here: ecommerce checks it on every call, and the
    storefront holds no key. This only tells who is signed in and until when.
    """
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenUnreadable("malformed") from None
    subject, expiry, roles = claims.get("sub"), claims.get("exp"), claims.get("roles")
    if not isinstance(subject, str) or not subject or not isinstance(expiry, int | float):
        raise TokenUnreadable("malformed")
    if not isinstance(roles, list) or ROLE_CUSTOMER not in roles:
        raise TokenUnreadable("not_customer")
    if expiry <= now:
        raise TokenUnreadable("expired")
    return subject, float(expiry)


class SessionStore:
    """Sessions by id, in memory, at most `capacity` of them (the oldest go first)."""

    def __init__(self, capacity: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._capacity = capacity
        self._clock = clock
        # One-time notices shown on the next page a session sees (after a redirect).
        self._notices: dict[str, str] = {}
        # Signs CSRF tokens; a restart ends every session anyway.
        self._csrf_key = secrets.token_bytes(32)

    def now(self) -> float:
        return self._clock()

    def start(self, token: str, customer_id: str, expires_at: float) -> Session:
        """A new session under a new id (never the one the browser had before)."""
        session = Session(secrets.token_urlsafe(32), token, customer_id, expires_at)
        self._sessions[session.session_id] = session
        while len(self._sessions) > self._capacity:
            gone, _ = self._sessions.popitem(last=False)
            self._notices.pop(gone, None)
        SIGNED_IN.set(len(self._sessions))
        return session

    def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            self.end(session_id)
            return None
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)
        self._notices.pop(session_id, None)
        SIGNED_IN.set(len(self._sessions))

    def leave_notice(self, session_id: str, text: str) -> None:
        if session_id in self._sessions:
            self._notices[session_id] = text

    def take_notice(self, session_id: str) -> str:
        return self._notices.pop(session_id, "")

    def __len__(self) -> int:
        return len(self._sessions)

    def csrf_token(self, browser_id: str) -> str:
        """The CSRF token for forms shown to the browser whose cookie is `browser_id`."""
        return hmac.new(self._csrf_key, browser_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, browser_id: str, submitted: str) -> bool:
        return bool(browser_id) and hmac.compare_digest(self.csrf_token(browser_id), submitted)


def new_browser_id() -> str:
    """The cookie of a browser that is not signed in: random, with no state behind it."""
    return secrets.token_urlsafe(32)
