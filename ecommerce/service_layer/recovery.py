"""Service layer room: recovery of what an unknown outcome left PENDING, and operator views."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta

from ecommerce.domain.commands import ExportRedemptions, ListUnsettled
from ecommerce.domain.errors import DomainError, PointsSystemUnavailable
from ecommerce.domain.model import Redemption, Refund, UnsettledKind, UnsettledOperation
from ecommerce.service_layer import redemptions, refunds
from ecommerce.service_layer.lookups import with_coupons
from ecommerce.service_layer.ports import EcommerceSteps, PointsGateway, UnitOfWork
from servicekit import paging
from servicekit.clock import Clock
from servicekit.paging import Page
from servicekit.validation import Validator
from servicekit.windows import window

log = logging.getLogger("ecommerce.recovery")


@dataclass(frozen=True)
class RecoveryPolicy:
    """How the recovery loop sweeps. A row is only taken once nothing has touched it for
    `settle_delay`, so the loop does not race a first attempt still in flight."""

    batch: int = 100
    # How long a claim lasts unless renewed; a sweep renews its claims every third of
    # it while it works, so only a dead sweeper's claims run out, within `lease`.
    lease: timedelta = timedelta(seconds=10)
    settle_delay: timedelta = timedelta(seconds=5)
    review_after: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class RecoveryReport:
    settled: int
    unsettled: list[UnsettledOperation]

    @property
    def needs_review(self) -> list[UnsettledOperation]:
        return [op for op in self.unsettled if op.needs_review]


@dataclass(frozen=True)
class _Claimed:
    redemptions: tuple[str, ...]
    refunds: tuple[str, ...]


@dataclass(frozen=True)
class _Renewal:
    claimed: _Claimed
    lease: timedelta


@dataclass(frozen=True)
class _RedemptionId:
    redemption_id: str


def _claim(uow: UnitOfWork, policy: RecoveryPolicy, clock: Clock) -> _Claimed:
    now = clock()
    untouched_since, lease_until = now - policy.settle_delay, now + policy.lease
    with uow:
        claimed = _Claimed(
            tuple(
                uow.redemptions.claim_pending(
                    now=now,
                    untouched_since=untouched_since,
                    lease_until=lease_until,
                    limit=policy.batch,
                )
            ),
            tuple(
                uow.refunds.claim_pending(
                    now=now,
                    untouched_since=untouched_since,
                    lease_until=lease_until,
                    limit=policy.batch,
                )
            ),
        )
        uow.commit()
    return claimed


def _renew(uow: UnitOfWork, cmd: _Renewal, clock: Clock) -> None:
    lease_until = clock() + cmd.lease
    with uow:
        uow.redemptions.renew(cmd.claimed.redemptions, lease_until)
        uow.refunds.renew(cmd.claimed.refunds, lease_until)
        uow.commit()


def _release(uow: UnitOfWork, cmd: _Claimed, clock: Clock) -> None:
    with uow:
        uow.redemptions.release(cmd.redemptions)
        uow.refunds.release(cmd.refunds)
        uow.commit()


def _redemption(uow: UnitOfWork, cmd: _RedemptionId, clock: Clock) -> Redemption:
    with uow:
        redemption = uow.redemptions.get(cmd.redemption_id)
        if redemption is None:
            # Only ids this service claimed get here: a missing one is a bug.
            raise LookupError(f"no redemption {cmd.redemption_id!r}")
        return with_coupons(uow, redemption, clock())


async def _settle_redemption(
    steps: EcommerceSteps, points: PointsGateway, redemption_id: str
) -> Redemption:
    redemption = await steps.read(_redemption, _RedemptionId(redemption_id))
    return await redemptions.settle(steps, points, redemption)


async def recover(
    steps: EcommerceSteps, points: PointsGateway, policy: RecoveryPolicy
) -> RecoveryReport:
    """One sweep: settle every PENDING redemption and refund this replica can claim.

    Claims are leases in the database, so replicas sweeping together never work
    on the same row at once; a claim is released once its attempt is over,
    whatever the outcome, so the next sweep retries what is still unknown.
    """
    claimed = await steps.write(_claim, policy)
    held = _Claims(set(claimed.redemptions), set(claimed.refunds))
    renewing = asyncio.create_task(_keep_claims(steps, policy.lease, held))
    settled = 0
    try:
        for redemption_id in claimed.redemptions:
            settled += await _final(_settle_redemption(steps, points, redemption_id))
            held.redemptions.discard(redemption_id)
        for refund_id in claimed.refunds:
            settled += await _final(refunds.settle(steps, points, refund_id))
            held.refunds.discard(refund_id)
    finally:
        # Stopped, and its last renewal finished, before the release: a renewal
        # landing after it would hold the rows for another lease.
        held.done.set()
        await renewing
        await steps.write(_release, claimed)
    unsettled = await steps.read(list_unsettled, ListUnsettled(policy.review_after, policy.batch))
    return RecoveryReport(settled, unsettled)


@dataclass
class _Claims:
    """The rows a sweep still works on, and whether it is over."""

    redemptions: set[str]
    refunds: set[str]
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


async def _keep_claims(steps: EcommerceSteps, lease: timedelta, held: _Claims) -> None:
    """Renew `held`'s claims every third of `lease` until the sweep is done.

    A renewal that fails only lets a claim run out: another replica may then settle the
    same row, which is safe (every settle is idempotent), merely redundant.
    """
    every = lease.total_seconds() / 3
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(held.done.wait(), every)
        if held.done.is_set():
            return
        still = _Claimed(tuple(sorted(held.redemptions)), tuple(sorted(held.refunds)))
        try:
            await steps.write(_renew, _Renewal(still, lease))
        except Exception:
            log.warning("could not renew recovery claims; they may lapse", exc_info=True)


async def _final(attempt: Awaitable[object]) -> int:
    """1 if the attempt reached a final state (a refusal is final too), 0 if still unknown."""
    try:
        await attempt
    except PointsSystemUnavailable:
        return 0
    except DomainError:
        return 1
    return 1


def list_unsettled(uow: UnitOfWork, cmd: ListUnsettled, clock: Clock) -> list[UnsettledOperation]:
    """PENDING redemptions and refunds, oldest first; old ones are flagged for review."""
    now = clock()
    with uow:
        pending = uow.redemptions.unsettled(cmd.limit)
        pending_refunds = uow.refunds.unsettled(cmd.limit)
    operations = [
        UnsettledOperation(
            UnsettledKind.REDEMPTION,
            r.redemption_id,
            r.request_id,
            r.customer_id,
            r.points,
            r.create_time,
            now - r.create_time > cmd.review_after,
        )
        for r in pending
    ] + [
        UnsettledOperation(
            UnsettledKind.REFUND,
            f.refund_id,
            f.request_id,
            f.customer_id,
            f.points,
            f.create_time,
            now - f.create_time > cmd.review_after,
        )
        for f in pending_refunds
    ]
    return sorted(operations, key=lambda op: op.create_time)


@dataclass(frozen=True)
class ExportedRedemption:
    redemption: Redemption
    refunds: list[Refund]


def export_redemptions(
    uow: UnitOfWork, cmd: ExportRedemptions, clock: Clock
) -> Page[ExportedRedemption]:
    """Every customer's redemptions created in [start, end), oldest first, with refunds."""
    v = Validator()
    limit = paging.page_size(v, "page_size", cmd.page_size)
    after = paging.decode_token(v, "page_token", cmd.page_token)
    now = clock()
    span = window(v, cmd.start, cmd.end, now)
    v.done()
    if span.empty:
        return Page([], "")
    with uow:
        page = uow.redemptions.window(span.start, span.end, after=after, limit=limit)
        ids = [r.redemption_id for r in page.items]
        coupons = uow.coupons.of_redemptions(ids)
        refunded = uow.refunds.of_redemptions(ids)
    return Page(
        [
            ExportedRedemption(
                dataclasses.replace(
                    r, coupons=tuple(c.as_seen(now) for c in coupons[r.redemption_id])
                ),
                refunded[r.redemption_id],
            )
            for r in page.items
        ],
        page.next_page_token,
    )
