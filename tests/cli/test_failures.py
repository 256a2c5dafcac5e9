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
from servicekit.tls import ClientTransport

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


def refused_connection(message: str, transport: ClientTransport) -> CallFailed:
    endpoints = Endpoints(cardpoints="bank:50051", transport=transport)
    error = RemoteError(grpc.StatusCode.UNAVAILABLE, message)
    return CallFailed(error, Service.CARDPOINTS, endpoints, cp.GetAccountRequest())


# What gRPC says, word for word, of each way a connection failed.
_LAST = "failed to connect to all addresses; last error: "
PLAIN, TLS = ClientTransport(), ClientTransport("certs/ca.pem")
MUTUAL = ClientTransport("certs/ca.pem", "certs/ops.pem", "certs/ops-key.pem")


@pytest.mark.parametrize(
    ("said", "transport", "expected"),
    [
        (
            "UNKNOWN: ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused",
            PLAIN,
            "Cannot reach the cardpoints service at bank:50051; check that it is running and that "
            "--cardpoints (or POINTSBRIDGE_CLI_CARDPOINTS) points at it.",
        ),
        (
            "UNAVAILABLE: ipv4:127.0.0.1:5: Socket closed",
            PLAIN,
            "The cardpoints service at bank:50051 closed the connection at once: it expects "
            "TLS; pass --tls-ca (and --tls-cert and --tls-key if it requires client "
            "certificates).",
        ),
        (
            "UNAVAILABLE: ipv4:127.0.0.1:5: Socket closed",
            TLS,
            "The cardpoints service at bank:50051 ended the TLS handshake: it requires a client "
            "certificate; pass --tls-cert and --tls-key (e.g. certs/ops.pem and "
            "certs/ops-key.pem).",
        ),
        (
            "UNAVAILABLE: ipv4:127.0.0.1:5: Socket closed",
            MUTUAL,
            "The cardpoints service at bank:50051 ended the TLS handshake: it does not accept "
            "the client certificate certs/ops.pem; use one signed by a CA it trusts.",
        ),
        (
            "UNKNOWN: ipv4:127.0.0.1:5: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
            "SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER",
            TLS,
            "The cardpoints service at bank:50051 does not speak TLS (it serves plaintext), so "
            "the TLS handshake failed; leave --tls-ca out, or start the service with its "
            "certificate.",
        ),
        (
            "UNKNOWN: ipv4:127.0.0.1:5: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
            "SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
            "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate",
            TLS,
            "The certificate of the cardpoints service at bank:50051 is not signed by the CA "
            "in --tls-ca certs/ca.pem, so the TLS handshake failed; pass the CA that signed it.",
        ),
    ],
)
def test_a_failed_connection_says_why_when_grpc_told(
    said: str, transport: ClientTransport, expected: str
) -> None:
    assert sentence(refused_connection(_LAST + said, transport)) == expected


def test_an_expired_token_says_it_expired_and_when() -> None:
    expired = failed(
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_CREDENTIALS",
        metadata={"problem": "expired", "expire_time": "2026-01-31T09:00:00Z"},
    )
    assert sentence(expired) == (
        "The token expired at 2026-01-31T09:00:00Z, so the cardpoints service refused it; get "
        "a new one (e.g. `pointsbridge token --admin ops-1`) and pass it in POINTSBRIDGE_TOKEN."
    )
    forged = failed(grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS")
    assert sentence(forged) == "The cardpoints service did not accept the credentials."


def test_expected_points_say_what_the_quote_was_and_what_it_is() -> None:
    order = ec.RedeemPointsRequest(product_id="tea", quantity=1, expected_points=999)
    mismatch = failed(
        grpc.StatusCode.INVALID_ARGUMENT,
        "POINTS_MISMATCH",
        metadata={"expected_points": "999", "points_required": "1000", "ratio_version": "1"},
        request=order,
    )
    assert sentence(mismatch) == (
        "999 points is not what 1 coupon of coupon product 'tea' cost, at this or any earlier "
        "exchange ratio: they cost 1000 points (ratio version 1), so nothing was deducted; "
        "quote again and pass those points."
    )
    changed = failed(
        grpc.StatusCode.FAILED_PRECONDITION,
        "RATE_CHANGED",
        metadata={
            "expected_points": "1000",
            "quoted_ratio_version": "1",
            "points_required": "1500",
            "ratio_version": "2",
        },
        request=order,
    )
    assert sentence(changed) == (
        "The exchange ratio of coupon product 'tea' changed since the quote: the quote was "
        "1000 points at ratio version 1, and it is now 1500 points at ratio version 2, so "
        "nothing was deducted; quote again and redeem with the new points."
    )


def test_a_call_for_services_and_operators_says_operators_may_make_it() -> None:
    both = failed(
        grpc.StatusCode.PERMISSION_DENIED,
        "NOT_SERVICE",
        metadata={"allowed_roles": "admin,service"},
    )
    assert sentence(both) == (
        "Only a PointsBridge service or an operator (a token with the admin role) may make this "
        "call to the cardpoints service, and these credentials are neither."
    )
    only = failed(
        grpc.StatusCode.PERMISSION_DENIED, "NOT_SERVICE", metadata={"allowed_roles": "service"}
    )
    assert (
        sentence(only)
        == "Only a PointsBridge service may make this call to the cardpoints service."
    )
