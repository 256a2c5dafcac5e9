"""What a benchmark run stands on: keys and tokens, fresh databases, bulk seeds, server
processes with their CPU and memory read from /proc, and the invariant checks."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Engine, bindparam, create_engine, text
from sqlalchemy.engine import make_url

from servicekit.auth import TokenIssuer, generate_signing_key
from servicekit.db import create_database, create_db_engine, drop_database, normalize_url

ROOT = Path(__file__).resolve().parent.parent
LOCALHOST = "127.0.0.1"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

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


# ---------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Keys:
    """A signing key for this run only; the servers get the public half."""

    public_key: Path
    service_token_file: Path
    issuer: TokenIssuer
    service_token: str
    admin_token: str

    @classmethod
    def create(cls, workdir: Path) -> Keys:
        private, public = generate_signing_key()
        public_key = workdir / "token-public-key.pem"
        public_key.write_bytes(public)
        issuer = TokenIssuer(private)
        service_token = issuer.issue("ecommerce", ["service"], 6 * 3600)
        token_file = workdir / "ecommerce-service.token"
        token_file.write_text(service_token)
        return cls(
            public_key,
            token_file,
            issuer,
            service_token,
            issuer.issue("bench", ["admin"], 6 * 3600),
        )

    def customer_tokens(self, indexes: Sequence[int]) -> list[tuple[str, str, str]]:
        """(customer id, card account id, bearer token) of each customer, minted up front."""
        return [
            (
                customer_id(i),
                account_id(i),
                self.issuer.issue(customer_id(i), ["customer"], 6 * 3600),
            )
            for i in indexes
        ]


# ---------------------------------------------------------------- processes


def _read_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds used, resident MB) of one process."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return cpu, int(fields[21]) * PAGE_KB / 1024


def cpu_seconds(pid: int) -> float:
    try:
        return _read_stat(pid)[0]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def rss_mb(pid: int) -> float:
    try:
        return _read_stat(pid)[1]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most memory the process has ever had resident."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def postgres_cpu_seconds() -> float:
    """CPU of every postgres process on the machine (the server is shared; approximate)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", encoding="ascii") as comm:
                if comm.read().strip() != "postgres":
                    continue
            total += _read_stat(int(entry))[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
            continue
    return total


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


# Runs first in each server process, then execs it: with PR_SET_PDEATHSIG the kernel
# kills the server if the harness dies, so no server outlives a run.
_GUARD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)
_PORT_LINE = re.compile(rb"serving on port (\d+)")


class Server:
    """One server as an OS process on a port it picks; its port is read from its log."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _GUARD, str(os.getpid()), *[str(a) for a in argv]],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )
        self.port = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def wait_ready(self, timeout: float = 60) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = _PORT_LINE.search(self.log_path.read_bytes())
            if found:
                self.port = int(found.group(1))
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not start:\n{tail}")

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pid)

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def cardpoints_argv(keys: Keys, database_url: str, *extra: str) -> list[str]:
    return python_module(
        "cardpoints.entrypoints.server",
        "--address",
        f"{LOCALHOST}:0",
        "--database-url",
        database_url,
        "--insecure-plaintext",
        "true",
        "--token-public-key",
        str(keys.public_key),
        "--log-format",
        "json",
        *extra,
    )


def ecommerce_argv(keys: Keys, database_url: str, cardpoints: str, *extra: str) -> list[str]:
    return python_module(
        "ecommerce.entrypoints.server",
        "--address",
        f"{LOCALHOST}:0",
        "--database-url",
        database_url,
        "--cardpoints-address",
        cardpoints,
        "--insecure-plaintext",
        "true",
        "--token-public-key",
        str(keys.public_key),
        "--cardpoints-token-file",
        str(keys.service_token_file),
        "--log-format",
        "json",
        *extra,
    )


def empty_argv(keys: Keys, role: str, *extra: str) -> list[str]:
    return python_module("bench.empty", role, "--token-public-key", str(keys.public_key), *extra)


def migrate(service: str, database_url: str) -> None:
    module = f"{service}.entrypoints.server"
    subprocess.run(
        python_module(
            module, "--migrate-only", "--database-url", database_url, "--log-level", "WARNING"
        ),
        check=True,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


# ---------------------------------------------------------------- databases


@dataclass(frozen=True)
class Databases:
    kind: str
    cardpoints: str
    ecommerce: str


@contextmanager
def fresh_databases(kind: str, workdir: Path, name: str, pg_url: str) -> Iterator[Databases]:
    """Two empty databases: SQLite files under `workdir`, or PostgreSQL databases created
    for this run on the server of `pg_url` (on 127.0.0.1 only) and dropped after it."""
    if kind == "sqlite":
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        yield Databases(
            kind, f"sqlite:///{folder / 'cardpoints.db'}", f"sqlite:///{folder / 'ecommerce.db'}"
        )
        return
    admin_url = make_url(normalize_url(pg_url))
    if admin_url.host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"the benchmark only talks to 127.0.0.1, not {admin_url.host}")
    tag = secrets.token_hex(4)
    created: list[str] = []
    try:
        for service in ("cardpoints", "ecommerce"):
            created.append(create_database(pg_url, f"bench_{tag}_{name}_{service}"))
        yield Databases(kind, created[0], created[1])
    finally:
        for url in created:
            drop_database(url)


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
