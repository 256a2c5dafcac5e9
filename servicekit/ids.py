"""Identifiers both services mint for the records they create."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """An unguessable id (80 bits), so that ids of other customers cannot be enumerated."""
    return f"{prefix}_{secrets.token_hex(10)}"
