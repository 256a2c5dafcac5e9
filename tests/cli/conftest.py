"""The CLI run as a real subprocess against a real card-points server on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cardpoints.entrypoints.server import App as CardpointsApp
from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import App as EcommerceApp
from ecommerce.entrypoints.server import Settings as EcommerceSettings
from ecommerce.entrypoints.server import start as start_ecommerce
from tests.auth import Callers
from tests.support import free_port as free_port  # still importable from here

CLI = Path(sys.executable).parent / "pointsbridge"


@dataclass(frozen=True)
class Cli:
    """Runs `pointsbridge` against the given addresses, off the event loop that serves them."""

    cardpoints: str
    ecommerce: str
    token: str  # POINTSBRIDGE_TOKEN unless `env` says otherwise

    async def __call__(
        self, *args: str, env: dict[str, str] | None = None, addresses: bool = True
    ) -> subprocess.CompletedProcess[str]:
        flags = (
            ["--cardpoints", self.cardpoints, "--ecommerce", self.ecommerce] if addresses else []
        )
        # Hermetic: the caller's own address variables must not steer the CLI.
        base = {k: v for k, v in os.environ.items() if not k.startswith("POINTSBRIDGE_")}
        return await asyncio.to_thread(
            subprocess.run,
            [str(CLI), *flags, *args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env={**base, "POINTSBRIDGE_TOKEN": self.token, **(env or {})},
        )

    async def ok(self, *args: str) -> str:
        """Run, insist on exit 0, and return stdout."""
        result = await self(*args)
        assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
        return result.stdout

    async def json(self, *args: str) -> Any:
        return json.loads(await self.ok(*args, "--json"))


def flat(text: str) -> str:
    """Text with rich's boxes and line wrapping taken out, to match a message wherever it broke."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", text).split())


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections but never speaks gRPC, so every call times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
async def cardpoints_server(tmp_path: Path, auth: Callers) -> AsyncIterator[CardpointsApp]:
    app = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security,
            address="127.0.0.1:0",
            database_url=f"sqlite:///{tmp_path}/cp.db",
            workers=2,
        )
    )
    yield app
    await app.stop(grace=1)


@pytest.fixture
def cli(cardpoints_server: CardpointsApp, auth: Callers) -> Cli:
    """The CLI pointed at the card-points server; e-commerce at a port nobody listens on."""
    return Cli(f"127.0.0.1:{cardpoints_server.port}", f"127.0.0.1:{free_port()}", auth.superuser)


@pytest.fixture
async def ecommerce_server(
    cardpoints_server: CardpointsApp, tmp_path: Path, auth: Callers
) -> AsyncIterator[EcommerceApp]:
    app = await start_ecommerce(
        EcommerceSettings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=f"sqlite:///{tmp_path}/ec.db",
            cardpoints_address=f"127.0.0.1:{cardpoints_server.port}",
            workers=2,
        )
    )
    yield app
    await app.stop(grace=1)


@pytest.fixture
def shop(cardpoints_server: CardpointsApp, ecommerce_server: EcommerceApp, auth: Callers) -> Cli:
    return Cli(
        f"127.0.0.1:{cardpoints_server.port}", f"127.0.0.1:{ecommerce_server.port}", auth.superuser
    )
