"""Test access to the private JetStream servers and the plain stream reader (chaos.broker)."""

from __future__ import annotations

from chaos.broker import NatsServer, ce, free_port, stream_messages

__all__ = ["NatsServer", "ce", "free_port", "stream_messages"]
