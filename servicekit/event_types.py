"""The published event messages, looked up by their CloudEvents type (the full proto name)."""

from __future__ import annotations

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

# Imported for their registration in the default descriptor pool.
from pointsbridge.events.v1 import cardpoints_events_pb2, ecommerce_events_pb2

MODULES = (cardpoints_events_pb2, ecommerce_events_pb2)
PACKAGE = "pointsbridge.events.v1"


def message_class(type_name: str) -> type[Message]:
    """The message class of `type_name`; KeyError for a type that is not an event."""
    if not type_name.startswith(f"{PACKAGE}."):
        raise KeyError(type_name)
    descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
    return message_factory.GetMessageClass(descriptor)


def decode(type_name: str, data: bytes) -> Message:
    return message_class(type_name).FromString(data)
