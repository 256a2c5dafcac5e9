"""Where a client connects: one address, several replicas, or a name for several.

The target is handed to gRPC's own name resolution, and the channel balances calls
round robin over the replicas that its client-side health checks find SERVING, so
one replica down, or draining, takes no calls while the others carry on.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Any

from servicekit.config import ConfigError

_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")


def grpc_target(address: str, what: str = "--address") -> str:
    """The gRPC target for `address`.

    - `host:port`: `dns:///host:port`, every address the name resolves to (re-resolved
      when connections fail);
    - `ip:port,ip:port,...`: `ipv4:` (or `ipv6:`) with each of them;
    - a target with a scheme (`dns:`, `ipv4:`, `ipv6:`, `unix:`) is used as given.
    """
    text = address.strip()
    if text.startswith(_SCHEMES):
        return text
    parts = [part.strip() for part in text.split(",")]
    if not text or not all(parts):
        raise ConfigError(f"{what} must be host:port, or several ip:port separated by commas")
    if len(parts) == 1:
        return f"dns:///{parts[0]}"
    versions = set()
    for part in parts:
        host, colon, port = part.rpartition(":")
        if not colon or not port.isdigit():
            raise ConfigError(f"{what}: {part!r} is not ip:port")
        try:
            versions.add(ipaddress.ip_address(host.strip("[]")).version)
        except ValueError:
            raise ConfigError(
                f"{what}: {part!r} is not an IP address; several replicas are listed by "
                "IP (ip:port,ip:port), or named by one DNS name that resolves to each"
            ) from None
    if len(versions) > 1:
        raise ConfigError(f"{what}: list IPv4 or IPv6 addresses, not both")
    return f"{'ipv4' if versions == {4} else 'ipv6'}:{','.join(parts)}"


def tls_name(address: str) -> str:
    """The name a server's certificate is checked against when none is given: the host
    of `address`, the first one when several are listed (gRPC would otherwise check the
    whole list, which no certificate names)."""
    text = address.strip()
    for scheme in _SCHEMES:
        text = text.removeprefix(scheme)
    first = text.lstrip("/").split(",")[0].strip()
    host, colon, _port = first.rpartition(":")
    return (host if colon else first).strip("[]")


def balanced_options(health_service: str) -> Sequence[tuple[str, Any]]:
    """Channel options: round robin over the replicas whose health check of
    `health_service` (grpc.health.v1) says SERVING. The config is ours alone: DNS
    cannot replace it."""
    config = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": health_service},
    }
    return (
        ("grpc.service_config", json.dumps(config)),
        ("grpc.service_config_disable_resolution", 1),
    )
