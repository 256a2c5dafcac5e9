"""Fresh databases for one harness run, and the one deliberate corruption of --self-test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from servicekit.db import create_database, drop_database, normalize_url

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Databases:
    cardpoints: str
    ecommerce: str


@contextmanager
def provision(kind: str, workdir: Path, pg_url: str = DEFAULT_PG_URL) -> Iterator[Databases]:
    """Two empty databases: SQLite files in `workdir`, or PostgreSQL databases made for
    this run on the server of `pg_url` (which must be on 127.0.0.1) and dropped after it."""
    if kind == "sqlite":
        yield Databases(
            f"sqlite:///{workdir / 'cardpoints.db'}", f"sqlite:///{workdir / 'ecommerce.db'}"
        )
        return
    if kind != "postgres":
        raise ValueError(f"unknown database kind {kind!r}")
    admin_url = make_url(normalize_url(pg_url))
    if admin_url.host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"the harness only talks to 127.0.0.1, not {admin_url.host}")
    tag = secrets.token_hex(4)
    created: list[str] = []
    try:
        for name in (f"chaos_{tag}_cardpoints", f"chaos_{tag}_ecommerce"):
            created.append(create_database(pg_url, name))
        yield Databases(*created)
    finally:
        for url in created:
            drop_database(url)


def delete_coupon_row(ecommerce_url: str, code: str) -> int:
    """--self-test only: make a coupon vanish from under the service; rows deleted."""
    engine = create_engine(normalize_url(ecommerce_url))
    try:
        with engine.begin() as conn:
            return conn.execute(
                text("DELETE FROM coupons WHERE code = :code"), {"code": code}
            ).rowcount
    finally:
        engine.dispose()
