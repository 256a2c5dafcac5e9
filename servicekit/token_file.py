"""A bearer token kept in a file that is rotated in place: re-read when it changes.

A long-running service cannot hold the token it read at start: short-lived tokens
expire and operators (or an agent) write a new one into the same file. The file is
checked on every use (a stat, no read unless it changed) and again on demand after
the peer refused the credentials, and the expiry of the token held is known so
that it can be warned about before it passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from servicekit.config import ConfigError, read_secret

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Held:
    token: str
    stamp: tuple[int, int, int]  # inode, mtime_ns, size: a new file or new content
    issued_at: float | None
    expires_at: float | None


def _claims(token: str) -> tuple[float | None, float | None]:
    """The token's iat and exp when it is a JWT; the signature is the peer's to check."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None, None
    issued, expires = claims.get("iat"), claims.get("exp")
    return (
        float(issued) if isinstance(issued, int | float) else None,
        float(expires) if isinstance(expires, int | float) else None,
    )


class TokenFile:
    """The current token of `path`. An empty or unreadable file mid-rotation keeps the last."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        held = self._read()
        if held is None or not held.token:
            raise ConfigError(f"the token file {path!r} is empty or unreadable")
        self._held = held

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return (status.st_ino, status.st_mtime_ns, status.st_size)

    def _read(self) -> _Held | None:
        stamp = self._stamp()
        token = read_secret(self.path)
        if stamp is None:
            return None
        return _Held(token, stamp, *_claims(token))

    def token(self) -> str:
        """The token to send now: the file's, re-read if it changed since the last read."""
        stamp = self._stamp()
        if stamp is not None and stamp != self._held.stamp:
            self.reload()
        return self._held.token

    def reload(self) -> bool:
        """Read the file again; True if it now holds another token."""
        try:
            held = self._read()
        except ConfigError as error:
            log.warning("keeping the token held: %s", error)
            return False
        if held is None or not held.token:
            log.warning("keeping the token held: %s is empty", self.path)
            if held is not None:  # said once: read again only when the file changes again
                self._held = dataclasses.replace(self._held, stamp=held.stamp)
            return False
        changed = held.token != self._held.token
        self._held = held
        if changed:
            log.info("read a new token from %s%s", self.path, self._expiry_text())
        return changed

    @property
    def expires_at(self) -> float | None:
        return self._held.expires_at

    def seconds_left(self) -> float | None:
        """Seconds until the held token expires (negative once it has); None if unknown."""
        if self._held.expires_at is None:
            return None
        return self._held.expires_at - self._clock()

    def warn_within(self) -> float:
        """How long before expiry to warn: a quarter of the token's life, at most 10 minutes."""
        held = self._held
        if held.expires_at is None:
            return 0.0
        lifetime = held.expires_at - held.issued_at if held.issued_at is not None else 600.0
        return max(0.0, min(600.0, lifetime / 4))

    def _expiry_text(self) -> str:
        left = self.seconds_left()
        return "" if left is None else f" (expires in {left:.0f} s)"


async def watch(token_file: TokenFile, stop: asyncio.Event, every: float = 1.0) -> None:
    """Until `stop`: pick up a rotated file, warn once per token when its expiry is near
    (`TokenFile.warn_within`), and say once per token when it has passed."""
    told: tuple[float | None, str] = (None, "")
    while not stop.is_set():
        token_file.token()
        left = token_file.seconds_left()
        if left is not None:
            expires = token_file.expires_at
            if left <= 0 and told != (expires, "expired"):
                told = (expires, "expired")
                log.error(
                    "the token in %s expired %.0f s ago: calls that need it are refused "
                    "until a new one is written there",
                    token_file.path,
                    -left,
                    extra={"token_expires_in_s": round(left)},
                )
            elif 0 < left <= token_file.warn_within() and told[0] != expires:
                told = (expires, "warned")
                log.warning(
                    "the token in %s expires in %.0f s: write a new one there before then",
                    token_file.path,
                    left,
                    extra={"token_expires_in_s": round(left)},
                )
        # Often enough never to miss the warning window of a short-lived token.
        pause = min(every, token_file.warn_within() / 4) or every
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)
