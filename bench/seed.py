"""The benchmark's data: bulk seeds straight into migrated databases, and the design's
invariants checked over both databases after a run."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Engine, bindparam, create_engine, text

from servicekit.db import create_db_engine, normalize_url
from servicekit.devtools.databases import Databases

# Seeded accounts hold this many points: no redemption of the run can run out.
SEED_BALANCE = 10**12
POINTS_PER_COUPON = 100
PRODUCTS = ("bench-coupon-0", "bench-coupon-1", "bench-coupon-2", "bench-coupon-3")
DIRECT_MERCHANT = "bench-direct"  # DeductPoints sent by the harness, not by ecommerce
SEEDED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def account_id(i: int) -> str:
    return f"card-{i:07d}"


def customer_id(i: int) -> str:
    return f"cust-{i:07d}"


def _bulk_engine(url: str) -> Engine:
    """An engine for seeding only: on SQLite, no fsync until the end (the servers are down)."""
    engine = create_db_engine(url, durable=False, pool_size=1)
    return engine


class _Sql:
    """The few SQL spellings that differ between SQLite and PostgreSQL."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def numbers(self, lo: str, hi: str) -> tuple[str, str]:
        """(prefix, FROM clause) that yield i = lo..hi."""
        if self.pg:
            return "", f"generate_series(CAST({lo} AS bigint), CAST({hi} AS bigint)) AS n(i)"
        return (
            f"WITH RECURSIVE n(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM n WHERE i < {hi}) ",
            "n",
        )

    def fmt(self, prefix: str, expr: str = "i", width: int = 7) -> str:
        if self.pg:
            return f"('{prefix}' || lpad(({expr})::text, {width}, '0'))"
        return f"printf('{prefix}%0{width}d', {expr})"


def _insert_range(
    conn: Any, sql: _Sql, insert: str, select: str, lo: int, hi: int, **params: Any
) -> None:
    """INSERT ... SELECT over i = lo..hi, in chunks."""
    chunk = 200_000
    start = lo
    while start <= hi:
        end = min(hi, start + chunk - 1)
        prefix, source = sql.numbers(":lo", ":hi")
        statement = text(f"{prefix}{insert} SELECT {select} FROM {source}").bindparams(
            *[
                bindparam(k, type_=DateTime(timezone=True))
                for k, v in params.items()
                if isinstance(v, datetime)
            ]
        )
        conn.execute(statement, {"lo": start, "hi": end, **params})
        start = end + 1


def seed(
    databases: Databases,
    accounts: int,
    history: int = 0,
    coupons_per_redemption: int = 2,
) -> dict[str, float]:
    """Bulk-load `accounts` funded card accounts and their linked customers, the coupon
    products, and optionally `history` past completed redemptions (one per customer, with
    their deduction, ledger entries and coupons), straight into migrated databases.
    Returns how long each side took."""
    timings: dict[str, float] = {}
    t = SEEDED_AT
    started = time.monotonic()
    engine = _bulk_engine(databases.cardpoints)
    sql = _Sql(engine.dialect.name)
    try:
        with engine.begin() as conn:
            _cardpoints_seed(conn, sql, accounts, history, coupons_per_redemption, t)
    finally:
        engine.dispose()
    timings["cardpoints_s"] = time.monotonic() - started
    started = time.monotonic()
    engine = _bulk_engine(databases.ecommerce)
    try:
        with engine.begin() as conn:
            _ecommerce_seed(conn, sql, accounts, history, coupons_per_redemption, t)
    finally:
        engine.dispose()
    timings["ecommerce_s"] = time.monotonic() - started
    if engine.dialect.name == "sqlite":
        # Fold the seed into the database files, so that the servers start on a short WAL.
        for url in (databases.cardpoints, databases.ecommerce):
            checkpoint = _bulk_engine(url)
            try:
                raw = checkpoint.raw_connection()  # no BEGIN: a checkpoint needs none open
                try:
                    raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    raw.close()
            finally:
                checkpoint.dispose()
    if engine.dialect.name == "postgresql":
        for url in (databases.cardpoints, databases.ecommerce):
            analyze = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
            try:
                with analyze.connect() as conn:
                    conn.execute(text("VACUUM ANALYZE"))
            finally:
                analyze.dispose()
    return timings


def _cardpoints_seed(
    conn: Any, sql: _Sql, accounts: int, history: int, per: int, t: datetime
) -> None:
    spent = per * POINTS_PER_COUPON
    # Accounts that have a past redemption hold what is left of the seed credit.
    balance = f"CASE WHEN i <= {history} THEN {SEED_BALANCE - spent} ELSE {SEED_BALANCE} END"
    _insert_range(
        conn,
        sql,
        "INSERT INTO accounts (account_id, holder_name, state, balance, create_time, update_time)",
        f"{sql.fmt('card-')}, 'Bench Holder', 'ACTIVE', {balance}, :t, :t",
        1,
        accounts,
        t=t,
    )
    _insert_range(
        conn,
        sql,
        "INSERT INTO ledger_entries (entry_id, account_id, type, amount, balance_after,"
        " request_id, reference_id, reason, create_time)",
        f"{sql.fmt('ent_seed_c')}, {sql.fmt('card-')}, 'CREDIT', {SEED_BALANCE}, {SEED_BALANCE},"
        f" {sql.fmt('seed-credit-')}, '', 'bench seed', :t",
        1,
        accounts,
        t=t,
    )
    _insert_range(
        conn,
        sql,
        "INSERT INTO idempotency_records (operation, request_id, fingerprint, resource_id,"
        " refusal_reason, refusal_message, refusal_metadata, create_time)",
        f"'credit', {sql.fmt('seed-credit-')}, {sql.fmt('card-')} || '|{SEED_BALANCE}|bench seed',"
        f" {sql.fmt('ent_seed_c')}, NULL, '', '{{}}', :t",
        1,
        accounts,
        t=t,
    )
    if not history:
        return
    request = sql.fmt("redemption:rd_seed_")
    _insert_range(
        conn,
        sql,
        "INSERT INTO deductions (deduction_id, request_id, account_id, points, balance_after,"
        " reversed_points, coupon_quantity, points_per_coupon, merchant_id, create_time,"
        " update_time)",
        f"{sql.fmt('ded_seed_')}, {request}, {sql.fmt('card-')}, {spent}, {SEED_BALANCE - spent},"
        f" 0, {per}, {POINTS_PER_COUPON}, 'pointsbridge-ecommerce', :t, :t",
        1,
        history,
        t=t,
    )
    _insert_range(
        conn,
        sql,
        "INSERT INTO ledger_entries (entry_id, account_id, type, amount, balance_after,"
        " request_id, reference_id, reason, create_time)",
        f"{sql.fmt('ent_seed_d')}, {sql.fmt('card-')}, 'DEDUCTION', {-spent},"
        f" {SEED_BALANCE - spent}, {request}, {sql.fmt('ded_seed_')},"
        " 'redeemed via pointsbridge-ecommerce', :t",
        1,
        history,
        t=t,
    )
    _insert_range(
        conn,
        sql,
        "INSERT INTO idempotency_records (operation, request_id, fingerprint, resource_id,"
        " refusal_reason, refusal_message, refusal_metadata, create_time)",
        f"'deduct', {request}, {sql.fmt('card-')} ||"
        f" '|{spent}|{per}|{POINTS_PER_COUPON}|pointsbridge-ecommerce',"
        f" {sql.fmt('ded_seed_')}, NULL, '', '{{}}', :t",
        1,
        history,
        t=t,
    )


def _ecommerce_seed(
    conn: Any, sql: _Sql, accounts: int, history: int, per: int, t: datetime
) -> None:
    naive = t.replace(tzinfo=None)
    for product in PRODUCTS:
        conn.execute(
            text(
                "INSERT INTO coupon_products (product_id, display_name, face_value_minor, currency,"
                " points_per_coupon, ratio_version, validity_days, max_quantity_per_redemption,"
                " active, create_time, update_time) VALUES (:p, :p, 1000, 'CNY', :ppc, 1, 365, 20,"
                " :active, :t, :t)"
            ).bindparams(bindparam("t", type_=DateTime())),
            {"p": product, "ppc": POINTS_PER_COUPON, "active": True, "t": naive},
        )
        conn.execute(
            text(
                "INSERT INTO exchange_ratios (product_id, version, points_per_coupon,"
                " effective_time) VALUES (:p, 1, :ppc, :t)"
            ).bindparams(bindparam("t", type_=DateTime())),
            {"p": product, "ppc": POINTS_PER_COUPON, "t": naive},
        )
    _insert_range(
        conn,
        sql,
        "INSERT INTO card_links (customer_id, card_account_id, link_time)",
        f"{sql.fmt('cust-')}, {sql.fmt('card-')}, :t",
        1,
        accounts,
        t=naive,
    )
    if not history:
        return
    _insert_range(
        conn,
        sql,
        "INSERT INTO redemptions (redemption_id, request_id, customer_id, product_id, quantity,"
        " points, points_per_coupon, ratio_version, card_account_id, state, failure_reason,"
        " deduction_id, refunded_points, create_time, update_time)",
        f"{sql.fmt('rd_seed_')}, {sql.fmt('seed-redeem-')}, {sql.fmt('cust-')}, '{PRODUCTS[0]}',"
        f" {per}, {per * POINTS_PER_COUPON}, {POINTS_PER_COUPON}, 1, {sql.fmt('card-')},"
        f" 'COMPLETED', '', {sql.fmt('ded_seed_')}, 0, :t, :t",
        1,
        history,
        t=naive,
    )
    # Coupon k of redemption r is number (r - 1) * per + k; codes are unique, not real.
    r = f"((i - 1) / {per} + 1)"
    expire = naive + timedelta(days=365)
    _insert_range(
        conn,
        sql,
        "INSERT INTO coupons (code, customer_id, product_id, redemption_id, face_value_minor,"
        " currency, state, issue_time, expire_time, used_order_id)",
        f"{sql.fmt('SEED', 'i', 10)}, {sql.fmt('cust-', r)}, '{PRODUCTS[0]}',"
        f" {sql.fmt('rd_seed_', r)}, 1000, 'CNY', 'ISSUED', :t, :e, ''",
        1,
        history * per,
        t=naive,
        e=expire,
    )


# ---------------------------------------------------------------- invariants


def _scalar(conn: Any, query: str) -> int:
    return int(conn.execute(text(query)).scalar() or 0)


def check_invariants(databases: Databases) -> dict[str, Any]:
    """The design's invariants over both databases, after a run (nothing in flight).

    I1 no negative balance; I2 each balance is its ledger's sum; I3 each completed
    redemption has exactly one deduction of the same points and no deduction lacks its
    redemption (the harness's own DeductPoints aside); I4 each completed redemption has
    exactly `quantity` coupons with unique codes; and nothing is left PENDING.
    """
    cp = create_engine(normalize_url(databases.cardpoints))
    ec = create_engine(normalize_url(databases.ecommerce))
    try:
        with cp.connect() as conn:
            negative = _scalar(conn, "SELECT count(*) FROM accounts WHERE balance < 0")
            unbalanced = _scalar(
                conn,
                "SELECT count(*) FROM accounts a LEFT JOIN (SELECT account_id, sum(amount) AS s"
                " FROM ledger_entries GROUP BY account_id) l ON l.account_id = a.account_id"
                " WHERE a.balance <> coalesce(l.s, 0)",
            )
            deductions = {
                row[0]: int(row[1])
                for row in conn.execute(
                    text(
                        "SELECT request_id, points FROM deductions WHERE merchant_id <> :direct"
                        " AND request_id NOT LIKE 'redemption:rd_seed_%'"
                    ),
                    {"direct": DIRECT_MERCHANT},
                )
            }
            direct = _scalar(
                conn, f"SELECT count(*) FROM deductions WHERE merchant_id = '{DIRECT_MERCHANT}'"
            )
        with ec.connect() as conn:
            pending = _scalar(conn, "SELECT count(*) FROM redemptions WHERE state = 'PENDING'")
            completed = {
                f"redemption:{row[0]}": int(row[1])
                for row in conn.execute(
                    text(
                        "SELECT redemption_id, points FROM redemptions WHERE state = 'COMPLETED'"
                        " AND redemption_id NOT LIKE 'rd_seed_%'"
                    )
                )
            }
            failed = _scalar(conn, "SELECT count(*) FROM redemptions WHERE state = 'FAILED'")
            wrong_coupons = _scalar(
                conn,
                "SELECT count(*) FROM redemptions r WHERE r.state = 'COMPLETED'"
                " AND r.redemption_id NOT LIKE 'rd_seed_%' AND r.quantity <> (SELECT count(*)"
                " FROM coupons c WHERE c.redemption_id = r.redemption_id)",
            )
            coupons_of_others = _scalar(
                conn,
                "SELECT count(*) FROM coupons c JOIN redemptions r ON r.redemption_id ="
                " c.redemption_id WHERE r.state <> 'COMPLETED'",
            )
    finally:
        cp.dispose()
        ec.dispose()
    missing = [k for k in completed if k not in deductions]
    orphans = [k for k in deductions if k not in completed]
    mismatched = [k for k, v in completed.items() if k in deductions and deductions[k] != v]
    result: dict[str, Any] = {
        "completed_redemptions": len(completed),
        "failed_redemptions": failed,
        "pending_redemptions": pending,
        "deductions_by_ecommerce": len(deductions),
        "deductions_direct": direct,
        "I1_negative_balances": negative,
        "I2_unbalanced_accounts": unbalanced,
        "I3_redemptions_without_deduction": len(missing),
        "I3_deductions_without_redemption": len(orphans),
        "I3_points_mismatches": len(mismatched),
        "I4_wrong_coupon_counts": wrong_coupons,
        "I3_coupons_without_completion": coupons_of_others,
    }
    result["ok"] = (
        negative == 0
        and unbalanced == 0
        and pending == 0
        and not missing
        and not orphans
        and not mismatched
        and wrong_coupons == 0
        and coupons_of_others == 0
    )
    return result
