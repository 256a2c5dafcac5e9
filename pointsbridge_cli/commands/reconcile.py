"""`pointsbridge reconcile`: compare both services' records of a time window."""

from __future__ import annotations

import json as jsonlib
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from pointsbridge_cli import reconcile as reconciliation
from pointsbridge_cli.connection import CallFailed, Service
from pointsbridge_cli.failures import ExitCode
from pointsbridge_cli.params import json_option
from pointsbridge_cli.session import Session, fail
from servicekit.status import remote_error


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time, e.g. 2026-11-27T00:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def reconcile(
    ctx: typer.Context,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="Start of the window (inclusive), ISO 8601, e.g. --since 2026-11-27T00:00:00Z. "
            "Default: 24 hours before --until.",
            show_default=False,
        ),
    ] = "",
    until: Annotated[
        str,
        typer.Option(
            "--until",
            help="End of the window (exclusive), ISO 8601, e.g. --until 2026-11-28T00:00:00Z. "
            "Default: now.",
            show_default=False,
        ),
    ] = "",
    slack: Annotated[
        int,
        typer.Option(
            "--slack",
            min=0,
            help="Minutes of records fetched beyond each edge, so that a redemption near an "
            "edge finds its deduction across a small clock difference, e.g. --slack 10.",
        ),
    ] = 10,
    json: Annotated[
        bool, json_option(".mismatches", "the report as JSON: clean, counted, mismatches")
    ] = False,
) -> None:
    """Compare a window of redemptions and refunds with the deductions and reversals.

    Lists deductions without a completed redemption, completed redemptions without a
    deduction, points that differ, refunds without a matching reversal and the reverse,
    and anything still PENDING. Exits 0 when both systems agree and 10 otherwise.

    Example:

    ```
    pointsbridge reconcile --since 2026-11-27T00:00:00Z --until 2026-11-28T00:00:00Z --json
    ```
    """
    session = Session.of(ctx, json)
    end = _moment(until) if until else datetime.now(UTC)
    start = _moment(since) if since else end - timedelta(hours=24)
    if start >= end:
        raise typer.BadParameter("--since must be before --until")
    connection = session.connection
    try:
        report = reconciliation.reconcile(
            connection.channel(Service.CARDPOINTS),
            connection.channel(Service.ECOMMERCE),
            start,
            end,
            slack=timedelta(minutes=slack),
            timeout=connection.endpoints.timeout,
            cardpoints_metadata=connection.metadata(),
            ecommerce_metadata=connection.metadata(),
        )
    except reconciliation.FetchFailed as failure:
        error = remote_error(failure.error)
        fail(CallFailed(error, failure.service, connection.endpoints, failure.request))
    if session.json:
        print(jsonlib.dumps(report.as_dict(), indent=2))
    else:
        print(reconciliation.render_text(report))
    if not report.clean:
        raise typer.Exit(int(ExitCode.MISMATCHES))
