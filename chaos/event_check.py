"""I8 after a run: both streams against both databases, read as an outside consumer would.

Every committed change has its event in the stream exactly once (by CloudEvents id),
no event lacks its committed change, and each aggregate's sequence runs 1, 2, 3 ...
in stream order without a gap, up to the counter its database holds. The streams are
read with a bare nats-py consumer (chaos.broker); the databases with plain SELECTs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from sqlalchemy import Engine, func, select

from cardpoints.adapters import orm as cardpoints_orm
from chaos.broker import ce, stream_messages
from chaos.checker import Violation
from ecommerce.adapters import orm as ecommerce_orm
from ecommerce.domain.coupon_codes import fingerprint
from servicekit import event_types
from servicekit.db import create_db_engine

INVARIANT = "I8"
EVENT = "pointsbridge.events.v1."


@dataclass
class Published:
    """What one service's stream holds, decoded."""

    messages: list[Msg]

    def of_type(self, name: str) -> list[Any]:
        return [
            event_types.decode(ce(m)["type"], m.data)
            for m in self.messages
            if ce(m).get("type") == EVENT + name
        ]


def _rows(engine: Engine, statement: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(statement))


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _unsent(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        statement = select(func.count()).select_from(table).where(table.c.sent_us.is_(None))
        return int(conn.execute(statement).scalar_one())


async def wait_drained(
    urls: dict[str, str], outboxes: dict[str, Any], within: float
) -> dict[str, int]:
    """Wait (bounded) until no outbox holds an unpublished row; what is left per service."""
    engines = {service: create_db_engine(url) for service, url in urls.items()}
    try:
        deadline = time.monotonic() + within
        while True:
            left = {
                service: await asyncio.to_thread(_unsent, engine, outboxes[service].events)
                for service, engine in engines.items()
            }
            if not any(left.values()) or time.monotonic() > deadline:
                return left
            await asyncio.sleep(0.25)
    finally:
        for engine in engines.values():
            engine.dispose()


def _same(
    violations: list[Violation], what: str, committed: Counter[str], published: Counter[str]
) -> None:
    """Each committed change published once; nothing published without a committed change."""
    for key in sorted(committed.keys() | published.keys()):
        have, want = published[key], committed[key]
        if have != want:
            violations.append(
                Violation(INVARIANT, f"{what} {key}: {want} committed, {have} in the stream")
            )


def _common(
    violations: list[Violation], service: str, messages: list[Msg], engine: Engine, outbox: Any
) -> None:
    """Ids once each and equal to the outbox's; per-aggregate sequences gap-free, in order."""
    ids = Counter(ce(m).get("id", "") for m in messages)
    for event_id, times in ids.items():
        if times > 1:
            violations.append(Violation(INVARIANT, f"{service}: event {event_id} {times} times"))
    for message in messages:
        headers = message.headers or {}
        if headers.get("Nats-Msg-Id") != ce(message).get("id"):
            violations.append(Violation(INVARIANT, f"{service}: Nats-Msg-Id is not the event id"))
            break
    recorded = {r.event_id for r in _rows(engine, select(outbox.events.c.event_id))}
    missing, unknown = recorded - ids.keys(), ids.keys() - recorded
    for event_id in sorted(missing)[:20]:
        violations.append(Violation(INVARIANT, f"{service}: event {event_id} never published"))
    for event_id in sorted(unknown)[:20]:
        violations.append(Violation(INVARIANT, f"{service}: event {event_id} in no outbox"))
    seen: dict[tuple[str, str], list[int]] = defaultdict(list)
    for message in messages:
        aggregate = (message.subject.split(".")[2], ce(message).get("subject", ""))
        seen[aggregate].append(int(ce(message).get("sequence", "0")))
    counters = {
        (r.aggregate_type, r.aggregate_id): r.last_sequence
        for r in _rows(engine, select(outbox.sequences))
    }
    for aggregate in sorted(seen.keys() | counters.keys()):
        numbers = seen.get(aggregate, [])
        expected = list(range(1, counters.get(aggregate, 0) + 1))
        if numbers != expected:
            shown = numbers if len(numbers) <= 12 else [*numbers[:6], "...", *numbers[-6:]]
            violations.append(
                Violation(
                    INVARIANT,
                    f"{service}: {aggregate[0]} {aggregate[1]} sequences {shown} in the stream, "
                    f"counter at {counters.get(aggregate, 0)}",
                )
            )


def _cardpoints(violations: list[Violation], published: Published, engine: Engine) -> None:
    accounts = cardpoints_orm.AccountRow.__table__
    ledger = cardpoints_orm.LedgerEntryRow.__table__
    _same(
        violations,
        "account opened",
        Counter(r.account_id for r in _rows(engine, select(accounts.c.account_id))),
        Counter(e.account_id for e in published.of_type("AccountOpened")),
    )
    entries = _rows(engine, select(ledger.c.type, ledger.c.entry_id, ledger.c.reference_id))
    _same(
        violations,
        "credit",
        Counter(r.entry_id for r in entries if r.type == "CREDIT"),
        Counter(e.entry_id for e in published.of_type("PointsCredited")),
    )
    _same(
        violations,
        "deduction",
        Counter(r.reference_id for r in entries if r.type == "DEDUCTION"),
        Counter(e.deduction_id for e in published.of_type("PointsDeducted")),
    )
    _same(
        violations,
        "reversal",
        Counter(r.reference_id for r in entries if r.type == "REVERSAL"),
        Counter(e.reversal_id for e in published.of_type("DeductionReversed")),
    )


def _ecommerce(violations: list[Violation], published: Published, engine: Engine) -> None:
    products = ecommerce_orm.CouponProductRow.__table__
    redemptions = ecommerce_orm.RedemptionRow.__table__
    coupons = ecommerce_orm.CouponRow.__table__
    refunds = ecommerce_orm.RefundRow.__table__
    _same(
        violations,
        "product created",
        Counter(r.product_id for r in _rows(engine, select(products.c.product_id))),
        Counter(e.product_id for e in published.of_type("CouponProductChanged") if e.change == 1),
    )
    states = _rows(engine, select(redemptions.c.redemption_id, redemptions.c.state))
    for state, name in (("COMPLETED", "RedemptionCompleted"), ("FAILED", "RedemptionFailed")):
        _same(
            violations,
            f"redemption {state}",
            Counter(r.redemption_id for r in states if r.state == state),
            Counter(e.redemption_id for e in published.of_type(name)),
        )
    issued = Counter(fingerprint(r.code) for r in _rows(engine, select(coupons.c.code)))
    _same(
        violations,
        "coupon issued",
        issued,
        Counter(h for e in published.of_type("RedemptionCompleted") for h in e.coupon_sha256),
    )
    used = select(coupons.c.code).where(coupons.c.state == "USED")
    _same(
        violations,
        "coupon used",
        Counter(fingerprint(r.code) for r in _rows(engine, used)),
        Counter(e.code_sha256 for e in published.of_type("CouponUsed")),
    )
    rows = _rows(engine, select(refunds.c.refund_id, refunds.c.state))
    cancelled = Counter(e.refund_id for e in published.of_type("RefundCancelled"))
    # A refused refund is forgotten: only its RefundStarted and RefundCancelled remain.
    _same(
        violations,
        "refund started",
        Counter(r.refund_id for r in rows) + cancelled,
        Counter(e.refund_id for e in published.of_type("RefundStarted")),
    )
    _same(
        violations,
        "refund completed",
        Counter(r.refund_id for r in rows if r.state == "COMPLETED"),
        Counter(e.refund_id for e in published.of_type("CouponsRefunded")),
    )
    for refund_id in sorted(cancelled.keys() & {r.refund_id for r in rows}):
        violations.append(
            Violation(INVARIANT, f"refund {refund_id} was cancelled yet is still recorded")
        )


async def check_events(
    cardpoints_url: str, ecommerce_url: str, nats_url: str, *, within: float = 60.0
) -> tuple[list[Violation], int]:
    """The I8 violations, and how many events both streams hold."""
    urls = {"cardpoints": cardpoints_url, "ecommerce": ecommerce_url}
    outboxes = {"cardpoints": cardpoints_orm.OUTBOX, "ecommerce": ecommerce_orm.OUTBOX}
    violations: list[Violation] = []
    left = await wait_drained(urls, outboxes, within)
    for service, count in left.items():
        if count:
            violations.append(
                Violation(INVARIANT, f"{service}: {count} events still unpublished after {within}s")
            )
    total = 0
    for service, url in urls.items():
        engine = create_db_engine(url)
        try:
            recorded = await asyncio.to_thread(_count, engine, outboxes[service].events)
            try:
                messages = await stream_messages(nats_url, service, expect=recorded)
            except TimeoutError as error:
                violations.append(Violation(INVARIANT, f"{service}: {error}"))
                continue
            total += len(messages)
            published = Published(messages)
            await asyncio.to_thread(
                _common, violations, service, messages, engine, outboxes[service]
            )
            check = _cardpoints if service == "cardpoints" else _ecommerce
            await asyncio.to_thread(check, violations, published, engine)
        finally:
            engine.dispose()
    return violations, total
