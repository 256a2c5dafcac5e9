"""Where servers listen: the default address, and a one-line refusal when a port is taken."""

from __future__ import annotations

import errno
import socket

from servicekit.config import ConfigError

# Where a server listens when no address is given: plaintext stays on this machine.
LOOPBACK = "127.0.0.1"
EVERY_INTERFACE = "[::]"


def listen_address(address: str, default_port: int, *, tls: bool) -> str:
    """`address` if one is given; otherwise `default_port` on every interface with TLS,
    and on loopback only without it, so that plaintext is never reachable from the network
    unless an operator asks for that by naming the address."""
    if address:
        return address
    return f"{EVERY_INTERFACE if tls else LOOPBACK}:{default_port}"


class AddressInUse(ConfigError):
    """The port to listen on is taken, most often by another copy of the same server."""


def check_port_free(address: str, what: str = "gRPC") -> None:
    """Refuse, naming the port, when `address` ("host:port") cannot be listened on.

    gRPC reports a taken port only as a generic bind failure; binding a probe socket
    first (as gRPC will: SO_REUSEADDR, no SO_REUSEPORT) lets the error say which port
    is taken and by what kind of listener.
    """
    host, _, port_text = address.rpartition(":")
    if not port_text.isdigit() or int(port_text) == 0:
        return  # port 0 is always free; anything else malformed is left to the server
    port = int(port_text)
    try:
        targets = socket.getaddrinfo(
            host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as error:
        raise ConfigError(f"cannot listen on {address}: {error.strerror}") from None
    for family, kind, proto, _name, target in targets:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(target)
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise AddressInUse(
                        f"port {port} is already in use ({what} on {address}): another "
                        "server holds it; stop it or choose another port"
                    ) from None
                raise ConfigError(f"cannot listen on {address}: {error.strerror}") from None
