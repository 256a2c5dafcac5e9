"""Entrypoints room: the background loop that settles what an unknown outcome left PENDING."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ecommerce.entrypoints import metrics
from ecommerce.service_layer.ports import EcommerceSteps, PointsGateway
from ecommerce.service_layer.recovery import RecoveryPolicy, recover

log = logging.getLogger("ecommerce.recovery")


async def run_recovery(
    steps: EcommerceSteps,
    points: PointsGateway,
    policy: RecoveryPolicy,
    interval: float,
    stop: asyncio.Event,
) -> None:
    """Sweep at once, then every `interval` seconds, until `stop` is set."""
    while not stop.is_set():
        try:
            report = await recover(steps, points, policy)
        except Exception:
            metrics.RECOVERY_RUNS.labels("error").inc()
            log.exception("recovery sweep failed; the next one retries")
        else:
            metrics.observe_sweep(report.settled, report.unsettled)
            if report.settled:
                log.info("recovery settled %d operations", report.settled)
            for op in report.needs_review:
                log.warning(
                    "needs review: %s %s unsettled since %s",
                    op.kind.value.lower(),
                    op.id,
                    op.create_time.isoformat(),
                    extra={"needs_review": op.id, "request": op.request_id},
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
