"""Failure sentences and exit codes, built from fabricated statuses without a server."""

from __future__ import annotations

import grpc
import pytest

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge_cli.connection import CallFailed, Endpoints, Service
from pointsbridge_cli.failures import (
    EXIT_CODE_MEANINGS,
    REASON_SENTENCES,
    ExitCode,
    exit_code,
    report_lines,
    sentence,
)
from servicekit.errors import FieldViolation
from servicekit.status import REASON_CODES, RemoteError

ENDPOINTS = Endpoints(cardpoints="bank:50051", ecommerce="shop:50052", timeout=2.5)


def failed(
    code: grpc.StatusCode,
    reason: str = "",
    *,
    message: str = "",
    metadata: dict[str, str] | None = None,
    request: cp.GetAccountRequest | ec.RedeemPointsRequest | ec.RefundCouponsRequest | None = None,
    violations: tuple[FieldViolation, ...] = (),
) -> CallFailed:
    sent = request if request is not None else cp.GetAccountRequest()
    service = Service.CARDPOINTS if isinstance(sent, cp.GetAccountRequest) else Service.ECOMMERCE
    error = RemoteError(code, message, reason, "pointsbridge", metadata or {}, violations)
    return CallFailed(error, service, ENDPOINTS, sent)


def test_every_reason_the_services_send_has_a_sentence() -> None:
    assert set(REASON_SENTENCES) == set(REASON_CODES)


@pytest.mark.parametrize("reason", sorted(REASON_CODES))
def test_every_sentence_reads_well_when_nothing_but_the_reason_is_known(reason: str) -> None:
    text = sentence(failed(REASON_CODES[reason], reason))
    assert text[0].isupper()
    assert text.endswith(".")
    assert "{" not in text
    assert "'" not in text  # no id was known, so none is quoted


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.OK, ExitCode.OTHER_ERROR),
        (grpc.StatusCode.INVALID_ARGUMENT, 3),
        (grpc.StatusCode.NOT_FOUND, 4),
        (grpc.StatusCode.FAILED_PRECONDITION, 5),
        (grpc.StatusCode.ALREADY_EXISTS, 6),
        (grpc.StatusCode.UNAVAILABLE, 7),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 7),
        (grpc.StatusCode.UNAUTHENTICATED, 8),
        (grpc.StatusCode.PERMISSION_DENIED, 8),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 9),
        (grpc.StatusCode.INTERNAL, 1),
        (grpc.StatusCode.UNIMPLEMENTED, 1),
        (grpc.StatusCode.CANCELLED, 1),
    ],
)
def test_exit_codes(code: grpc.StatusCode, expected: int) -> None:
    assert exit_code(code) == expected


def test_every_exit_code_is_documented() -> None:
    assert list(EXIT_CODE_MEANINGS) == sorted(ExitCode)


def test_the_sentence_names_what_the_request_was_about() -> None:
    refused = failed(
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
        request=ec.RedeemPointsRequest(customer_id="alice@example", product_id="tea", quantity=2),
    )
    assert sentence(refused) == (
        "The card account linked to customer 'alice@example' does not have enough points, "
        "so nothing was deducted."
    )


def test_error_info_metadata_makes_the_sentence_more_specific() -> None:
    refused = failed(
        grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_POINTS",
        metadata={"account_id": "alice-card", "points": "2000"},
        request=ec.RedeemPointsRequest(customer_id="alice@example"),
    )
    assert sentence(refused) == (
        "Card account 'alice-card' has fewer than 2000 points, so nothing was deducted."
    )


def test_a_redemption_left_pending_says_to_retry_with_its_request_id() -> None:
    pending = failed(
        grpc.StatusCode.UNAVAILABLE,
        "POINTS_SYSTEM_UNAVAILABLE",
        request=ec.RedeemPointsRequest(request_id="order-7", customer_id="alice@example"),
    )
    assert "still PENDING" in sentence(pending)
    assert "--request-id order-7" in sentence(pending)
    assert exit_code(pending.error.code) == ExitCode.UNREACHABLE


def test_field_violations_follow_the_sentence_one_per_line() -> None:
    invalid = failed(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        violations=(
            FieldViolation("points", "must be positive"),
            FieldViolation("account_id", "is required"),
        ),
    )
    assert report_lines(invalid) == [
        "The cardpoints service refused the request because some of its fields are invalid.",
        "  - points: must be positive",
        "  - account_id: is required",
    ]


def test_an_unknown_reason_falls_back_to_the_status_message() -> None:
    odd = failed(grpc.StatusCode.UNIMPLEMENTED, message="Method not found!")
    assert sentence(odd) == "The cardpoints service answered UNIMPLEMENTED: Method not found!"


def test_an_unreachable_service_is_named_with_its_address() -> None:
    down = failed(
        grpc.StatusCode.UNAVAILABLE,
        message="failed to connect to all addresses",
        request=ec.RefundCouponsRequest(request_id="rf-1"),
    )
    assert sentence(down).startswith("Cannot reach the ecommerce service at shop:50052;")
    assert "POINTSBRIDGE_CLI_ECOMMERCE" in sentence(down)


def test_not_owner_says_whether_the_caller_or_the_thing_is_someone_elses() -> None:
    redeem = ec.RedeemPointsRequest(customer_id="bob")
    acting = failed(
        grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER", metadata={"field": "customer_id"}
    )
    acting = CallFailed(acting.error, Service.ECOMMERCE, ENDPOINTS, redeem)
    assert sentence(acting) == (
        "These credentials may not act for customer 'bob': customer_id must be the caller's own."
    )
    # An operator is told the truth about a coupon of another customer.
    coupon = failed(grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER", metadata={"code": "2222-X"})
    coupon = CallFailed(coupon.error, Service.ECOMMERCE, ENDPOINTS, redeem)
    assert sentence(coupon) == "Coupon '2222-X' belongs to another customer, not customer 'bob'."
