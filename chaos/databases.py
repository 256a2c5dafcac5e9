"""Fresh databases for one harness run, and the one deliberate corruption of --self-test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from servicekit.db import normalize_url

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
    names = [f"chaos_{tag}_cardpoints", f"chaos_{tag}_ecommerce"]
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                created.append(name)
        plain = make_url(pg_url)
        yield Databases(
            *(plain.set(database=name).render_as_string(hide_password=False) for name in names)
        )
    finally:
        try:
            if created:
                with admin.connect() as conn:
                    for name in created:
                        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


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
