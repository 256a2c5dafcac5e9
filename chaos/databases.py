"""The one deliberate corruption of --self-test: a coupon row deleted behind ecommerce."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from servicekit.db import normalize_url


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
