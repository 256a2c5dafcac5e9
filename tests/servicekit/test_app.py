"""The one bootstrap: shared settings declared once, refusals before anything opens,
and a stop that ends the service's loops before releasing what it holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from cardpoints.adapters.orm import OUTBOX
from cardpoints.entrypoints import server as cardpoints_server
from ecommerce.entrypoints import server as ecommerce_server
from servicekit.app import Server, ServerSettings, Wiring
from servicekit.auth import generate_signing_key
from servicekit.clock import Clock
from servicekit.config import ConfigError
from servicekit.db import Database

# A service may give a shared setting its own default, and nothing more.
OWN_DEFAULTS = {"database_url", "grace"}


@pytest.mark.parametrize("module", [cardpoints_server, ecommerce_server])
def test_the_shared_settings_are_declared_once(module: ModuleType) -> None:
    settings: type[ServerSettings] = module.Settings
    assert issubclass(settings, ServerSettings)
    redeclared = set(settings.__annotations__) & set(ServerSettings.__annotations__)
    assert redeclared <= OWN_DEFAULTS


@pytest.fixture
def public_key(tmp_path: Path) -> str:
    path = tmp_path / "tokens.pub"
    path.write_bytes(generate_signing_key()[1])
    return str(path)


async def test_a_refused_setting_of_the_service_opens_no_database(
    tmp_path: Path, public_key: str
) -> None:
    database = tmp_path / "ecommerce.db"
    settings = ecommerce_server.Settings(
        address="127.0.0.1:0",
        database_url=f"sqlite:///{database}",
        insecure_plaintext=True,
        token_public_key=public_key,
    )
    with pytest.raises(ConfigError, match="calls to cardpoints need credentials"):
        await ecommerce_server.start(settings)
    assert not database.exists()


@dataclass(frozen=True)
class _Settings(ServerSettings):
    pass


class _Probe(Server[_Settings]):
    """A server with no gRPC service of its own: one loop and one thing to release."""

    name = "probe"

    def __init__(self, said: list[str]) -> None:
        super().__init__(_Settings, "a probe", 0, cardpoints_server.MIGRATIONS, OUTBOX, rules={})
        self.said = said

    def prepare(self, settings: _Settings, clock: Clock) -> Callable[[Database], Wiring]:
        async def loop(stop: asyncio.Event) -> None:
            self.said.append("looping")
            await stop.wait()
            self.said.append("loop ended")

        async def close() -> None:
            self.said.append("closed")

        return lambda db: Wiring((), [loop], [close])


async def test_stop_ends_the_loops_then_releases(tmp_path: Path, public_key: str) -> None:
    said: list[str] = []
    probe = _Probe(said)
    app = await probe.start(
        _Settings(
            address="127.0.0.1:0",
            database_url=f"sqlite:///{tmp_path / 'probe.db'}",
            insecure_plaintext=True,
            token_public_key=public_key,
        )
    )
    assert app.port > 0
    await asyncio.sleep(0)  # let the loop begin
    await app.stop(grace=1)
    assert said == ["looping", "loop ended", "closed"]
    assert probe.version_table == "probe_alembic_version"
