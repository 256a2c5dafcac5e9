"""The one place where domain errors become gRPC statuses, and remote statuses become data."""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from servicekit.errors import DomainError, FieldViolation, InvalidField

log = logging.getLogger(__name__)

ERROR_DOMAIN = "pointsbridge"

# Error details travel in a trailer, which clients refuse past 8 KiB.
MAX_VIOLATIONS = 20
MAX_DETAIL_CHARS = 200

# The AIP-193 table of DESIGN.md: every reason has exactly one canonical code. Every
# refusal leaves through it: the @rpc edge's domain errors and the auth interceptor's.
REASON_CODES: dict[str, grpc.StatusCode] = {
    "INVALID_FIELD": grpc.StatusCode.INVALID_ARGUMENT,
    "POINTS_MISMATCH": grpc.StatusCode.INVALID_ARGUMENT,
    "ACCOUNT_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "PRODUCT_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "COUPON_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "DEDUCTION_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "REDEMPTION_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "INSUFFICIENT_POINTS": grpc.StatusCode.FAILED_PRECONDITION,
    "ACCOUNT_FROZEN": grpc.StatusCode.FAILED_PRECONDITION,
    "ACCOUNT_CLOSED": grpc.StatusCode.FAILED_PRECONDITION,
    "RATE_CHANGED": grpc.StatusCode.FAILED_PRECONDITION,
    "PRODUCT_INACTIVE": grpc.StatusCode.FAILED_PRECONDITION,
    "CARD_NOT_LINKED": grpc.StatusCode.FAILED_PRECONDITION,
    "QUANTITY_LIMIT_EXCEEDED": grpc.StatusCode.FAILED_PRECONDITION,
    "COUPON_ALREADY_USED": grpc.StatusCode.FAILED_PRECONDITION,
    "COUPON_VOID": grpc.StatusCode.FAILED_PRECONDITION,
    "COUPON_EXPIRED": grpc.StatusCode.FAILED_PRECONDITION,
    "REVERSAL_EXCEEDS_DEDUCTION": grpc.StatusCode.FAILED_PRECONDITION,
    "REQUEST_ID_REUSED": grpc.StatusCode.ALREADY_EXISTS,
    "ACCOUNT_ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "PRODUCT_ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "POINTS_SYSTEM_UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    # Cardpoints refused ecommerce's own credentials: the caller can only retry later.
    "POINTS_SYSTEM_CREDENTIALS_REJECTED": grpc.StatusCode.UNAVAILABLE,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "MISSING_CREDENTIALS": grpc.StatusCode.UNAUTHENTICATED,
    "INVALID_CREDENTIALS": grpc.StatusCode.UNAUTHENTICATED,
    "NOT_OWNER": grpc.StatusCode.PERMISSION_DENIED,
    "NOT_ADMIN": grpc.StatusCode.PERMISSION_DENIED,
    "NOT_SERVICE": grpc.StatusCode.PERMISSION_DENIED,
    "RATE_LIMITED": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "INTERNAL": grpc.StatusCode.INTERNAL,
}


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_for(
    code: grpc.StatusCode,
    reason: str,
    message: str,
    metadata: dict[str, str] | None = None,
    violations: Iterable[FieldViolation] = (),
) -> grpc.Status:
    """A status with exactly one ErrorInfo, plus BadRequest when fields are named."""
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=reason, domain=ERROR_DOMAIN, metadata=dict(metadata or {})
            )
        )
    ]
    named = list(violations)
    if len(named) > MAX_VIOLATIONS:
        # Trailers over 8 KiB are dropped by gRPC clients: name the first ones only.
        hidden = len(named) - MAX_VIOLATIONS + 1
        named = [
            *named[: MAX_VIOLATIONS - 1],
            FieldViolation("...", f"and {hidden} more fields like these"),
        ]
    field_violations = [
        error_details_pb2.BadRequest.FieldViolation(
            field=v.field[:MAX_DETAIL_CHARS], description=v.description[:MAX_DETAIL_CHARS]
        )
        for v in named
    ]
    if field_violations:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=field_violations)))
    proto = status_pb2.Status(code=code.value[0], message=message, details=details)
    status: grpc.Status = rpc_status.to_status(proto)
    return status


class UnknownReason(LookupError):
    """A refusal named by a reason the table lacks: a bug, never a guess at its code."""


def code_for(reason: str) -> grpc.StatusCode:
    """The one canonical code of `reason`; INTERNAL is the edge's own, for bugs only."""
    code = REASON_CODES.get(reason)
    if code is None or code is grpc.StatusCode.INTERNAL:
        raise UnknownReason(reason)
    return code


def refusal(
    reason: str,
    message: str,
    metadata: dict[str, str] | None = None,
    violations: Iterable[FieldViolation] = (),
) -> grpc.Status:
    """The status of a refusal: its code comes from REASON_CODES (UnknownReason if absent)."""
    return status_for(code_for(reason), reason, message, metadata, violations)


def status_of(error: DomainError) -> grpc.Status:
    return refusal(error.reason, error.message, error.metadata, error.violations)


def internal_error(what: str) -> grpc.Status:
    """Log the exception being handled under a fresh id, and the INTERNAL status quoting it."""
    error_id = secrets.token_hex(8)
    log.exception("unexpected error id=%s rpc=%s", error_id, what)
    return status_for(
        grpc.StatusCode.INTERNAL,
        "INTERNAL",
        f"internal error; quote error_id {error_id} to the operator",
        {"error_id": error_id},
    )


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request whose bytes are not a valid message of its type.

    The request deserializer hands it on instead of failing, so that the caller is
    authenticated first and then told INVALID_ARGUMENT, never INTERNAL.
    """

    rpc: str


_Servicer = TypeVar("_Servicer")
_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
_Method = Callable[[_Servicer, _Request, grpc.aio.ServicerContext[Any, Any]], Awaitable[_Response]]


def rpc(method: _Method[_Servicer, _Request, _Response]) -> _Method[_Servicer, _Request, _Response]:
    """Wrap a servicer method: domain errors become their status, anything else INTERNAL."""

    @functools.wraps(method)
    async def guarded(
        self: _Servicer, request: _Request, context: grpc.aio.ServicerContext[Any, Any]
    ) -> _Response:
        try:
            if isinstance(request, Undecodable):
                raise InvalidField(
                    f"the request to {request.rpc} is not a valid protobuf message",
                    violations=[FieldViolation("request", "could not be parsed")],
                )
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            try:
                if not isinstance(error, DomainError):
                    raise
                status = status_of(error)
            except Exception:
                # Not a refusal, or one named by a reason the table lacks: a bug either way.
                status = internal_error(method.__name__)
            await context.abort_with_status(status)
        raise AssertionError("abort_with_status returned")  # pragma: no cover

    return guarded


@dataclass(frozen=True)
class RemoteError:
    """What a peer's error status said: its code, ErrorInfo and field violations."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: tuple[FieldViolation, ...] = ()


_CODES_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def remote_error(error: grpc.RpcError) -> RemoteError:
    """Read code, ErrorInfo and BadRequest from a failed call (sync or aio)."""
    call: Any = error  # sync calls and aio errors share this surface
    code: grpc.StatusCode = call.code()
    message: str = call.details() or ""
    trailers: Iterable[Any] = call.trailing_metadata() or ()
    for key, value in ((item[0], item[1]) for item in trailers):
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        if status.code != code_pb2.OK:
            code = _CODES_BY_NUMBER.get(status.code, code)
        reason, domain, metadata = "", "", {}
        violations: list[FieldViolation] = []
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
        return RemoteError(code, status.message, reason, domain, metadata, tuple(violations))
    return RemoteError(code, message)
