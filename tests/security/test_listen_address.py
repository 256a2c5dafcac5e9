"""Where servers listen by default: plaintext on loopback only, TLS on every interface."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cardpoints.entrypoints import server as cardpoints_server
from ecommerce.entrypoints import server as ecommerce_server
from servicekit.ports import listen_address
from tests.auth import Callers


def test_without_tls_the_default_is_loopback_and_with_tls_every_interface() -> None:
    assert listen_address("", 50051, tls=False) == "127.0.0.1:50051"
    assert listen_address("", 50052, tls=True) == "[::]:50052"
    assert listen_address("[::]:7000", 50051, tls=False) == "[::]:7000"


def _outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.parametrize("service", ["cardpoints", "ecommerce"])
async def test_a_plaintext_server_given_no_address_is_reachable_from_this_machine_only(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, auth: Callers
) -> None:
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no address besides loopback to probe from")
    module = cardpoints_server if service == "cardpoints" else ecommerce_server
    # The default port is the only thing changed: port 0, so that the test never
    # collides with a running system.
    monkeypatch.setattr(module, "DEFAULT_PORT", 0)
    app: cardpoints_server.App | ecommerce_server.App
    if service == "cardpoints":
        app = await cardpoints_server.start(
            cardpoints_server.Settings(
                **auth.server_security, database_url=f"sqlite:///{tmp_path / service}.db"
            )
        )
    else:
        app = await ecommerce_server.start(
            ecommerce_server.Settings(
                **auth.ecommerce_security,
                database_url=f"sqlite:///{tmp_path / service}.db",
                cardpoints_address="127.0.0.1:1",
                recovery_interval=0,
            )
        )
    try:
        assert _accepts("127.0.0.1", app.port)
        assert not _accepts(outward, app.port)
    finally:
        await app.stop(grace=0)
