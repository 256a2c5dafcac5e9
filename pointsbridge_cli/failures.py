"""Failed calls told as one human sentence, and the exit code of each kind of failure."""

from __future__ import annotations

import enum
from collections.abc import Mapping

import grpc
from google.protobuf.descriptor import FieldDescriptor

from pointsbridge_cli.connection import CallFailed
from servicekit.errors import counted


class ExitCode(enum.IntEnum):
    OK = 0
    OTHER_ERROR = 1
    USAGE = 2
    INVALID_ARGUMENT = 3
    NOT_FOUND = 4
    FAILED_PRECONDITION = 5
    ALREADY_EXISTS = 6
    UNREACHABLE = 7
    NOT_ALLOWED = 8
    RESOURCE_EXHAUSTED = 9
    MISMATCHES = 10


# What each exit code means, in the order --help lists them.
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.OTHER_ERROR: "any other failure (INTERNAL, UNIMPLEMENTED, ...)",
    ExitCode.USAGE: "bad command line, e.g. points that are not a positive whole number",
    ExitCode.INVALID_ARGUMENT: "INVALID_ARGUMENT: the service refused fields; each is listed",
    ExitCode.NOT_FOUND: "NOT_FOUND: no such account, product, redemption or coupon",
    ExitCode.FAILED_PRECONDITION: "FAILED_PRECONDITION: not now, e.g. insufficient points",
    ExitCode.ALREADY_EXISTS: "ALREADY_EXISTS: e.g. a request id reused with other parameters",
    ExitCode.UNREACHABLE: "UNAVAILABLE or DEADLINE_EXCEEDED: a service unreachable or too slow",
    ExitCode.NOT_ALLOWED: "UNAUTHENTICATED or PERMISSION_DENIED: missing or wrong credentials",
    ExitCode.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED: rate limited; retry later",
    ExitCode.MISMATCHES: "reconcile: the two systems disagree; each mismatch is listed",
}

_EXIT_CODES: dict[grpc.StatusCode, ExitCode] = {
    grpc.StatusCode.INVALID_ARGUMENT: ExitCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: ExitCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS: ExitCode.ALREADY_EXISTS,
    grpc.StatusCode.UNAVAILABLE: ExitCode.UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ExitCode.UNREACHABLE,
    grpc.StatusCode.UNAUTHENTICATED: ExitCode.NOT_ALLOWED,
    grpc.StatusCode.PERMISSION_DENIED: ExitCode.NOT_ALLOWED,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ExitCode.RESOURCE_EXHAUSTED,
}


def exit_code(code: grpc.StatusCode) -> ExitCode:
    return _EXIT_CODES.get(code, ExitCode.OTHER_ERROR)


# Each reason's sentences, most specific first: the first one whose placeholders are all
# known is used, and the last one only uses placeholders that are always known. Subject
# placeholders ({account}, {product}, ...) always resolve, naming the thing when its id is
# known; the other names come from ErrorInfo metadata or the request's own fields.
REASON_SENTENCES: dict[str, tuple[str, ...]] = {
    "INVALID_FIELD": (
        "the {service} service refused the request because some of its fields are invalid.",
    ),
    "POINTS_MISMATCH": (
        "{expected_points} points is not what {coupons} of {product} cost, at this "
        "or any earlier exchange ratio: they cost {points_required} points (ratio version "
        "{ratio_version}), so nothing was deducted; quote again and pass those points.",
        "the points do not equal the coupon quantity times the points per coupon, so nothing "
        "was deducted.",
    ),
    "ACCOUNT_NOT_FOUND": ("{account} does not exist.",),
    "PRODUCT_NOT_FOUND": ("{product} does not exist.",),
    "COUPON_NOT_FOUND": ("{coupon} does not exist or does not belong to {customer}.",),
    "DEDUCTION_NOT_FOUND": ("{deduction} does not exist at the card-points system.",),
    "REDEMPTION_NOT_FOUND": ("{redemption} does not exist or does not belong to {customer}.",),
    "INSUFFICIENT_POINTS": (
        "{account} has fewer than {points} points, so nothing was deducted.",
        "{account} does not have enough points, so nothing was deducted.",
    ),
    "ACCOUNT_FROZEN": ("{account} is frozen: it cannot spend points until it is unfrozen.",),
    "ACCOUNT_CLOSED": ("{account} is closed, and closing is final.",),
    "RATE_CHANGED": (
        "the exchange ratio of {product} changed since the quote: the quote was "
        "{expected_points} points at ratio version {quoted_ratio_version}, and it is now "
        "{points_required} points at ratio version {ratio_version}, so nothing was deducted; "
        "quote again and redeem with the new points.",
        "the exchange ratio of {product} changed since the quote, so nothing was deducted; "
        "quote again and redeem with the new points.",
    ),
    "PRODUCT_INACTIVE": ("{product} is deactivated, so it cannot be redeemed.",),
    "CARD_NOT_LINKED": (
        "{customer} has no linked card account; link one with `pointsbridge cards link`.",
    ),
    "QUANTITY_LIMIT_EXCEEDED": (
        "{coupons} is more than {product} allows in one redemption.",
        "that is more coupons than {product} allows in one redemption.",
    ),
    "COUPON_ALREADY_USED": (
        "{coupon} was already used, on order {used_order_id}, so it cannot be used again or "
        "refunded.",
        "{coupon} was already used, so it cannot be used again or refunded.",
    ),
    "COUPON_VOID": ("{coupon} was refunded and is void.",),
    "COUPON_EXPIRED": ("{coupon} has expired.",),
    "REVERSAL_EXCEEDS_DEDUCTION": (
        "that is more points than remain to be given back on {deduction}.",
    ),
    "REQUEST_ID_REUSED": (
        "{request} was already used with different parameters; repeat the original command "
        "exactly, or leave --request-id out to get a new one.",
    ),
    "ACCOUNT_ALREADY_EXISTS": ("{account} already exists with another holder name.",),
    "PRODUCT_ALREADY_EXISTS": ("{product} already exists.",),
    "POINTS_SYSTEM_UNAVAILABLE": (
        "the card-points system did not answer, so this is still PENDING; run the same "
        "command again with --request-id {request_id} to finish it.",
        "the card-points system did not answer, so this is still PENDING; retry with the "
        "same request id to finish it.",
    ),
    "POINTS_SYSTEM_CREDENTIALS_REJECTED": (
        "the card-points system refused the credentials of the e-commerce service itself "
        "(its token for cardpoints may have expired), so no points moved and this is "
        "still PENDING; it is finished once a valid token is in its --cardpoints-token-file.",
    ),
    "UNAVAILABLE": (
        "the {service} service could not reach a service it depends on; try again later.",
    ),
    "MISSING_CREDENTIALS": ("the {service} service needs credentials, and none were sent.",),
    "INVALID_CREDENTIALS": (
        "the token expired at {expire_time}, so the {service} service refused it; get a new "
        "one (e.g. `pointsbridge token --admin ops-1`) and pass it in POINTSBRIDGE_TOKEN.",
        "the {service} service did not accept the credentials.",
    ),
    "NOT_OWNER": (
        "these credentials may not act for {customer}: {field} must be the caller's own.",
        "{owned} belongs to another customer, not {customer}.",
        "these credentials may not act for {customer}.",
    ),
    "NOT_ADMIN": ("this needs operator credentials for the {service} service.",),
    "NOT_SERVICE": (
        "only a PointsBridge service{or_an_operator} may make this call to the {service} "
        "service, and these credentials are neither.",
        "only a PointsBridge service may make this call to the {service} service.",
    ),
    "RATE_LIMITED": (
        "the {service} service is receiving too many requests; wait a moment and retry.",
    ),
    "INTERNAL": (
        "the {service} service failed unexpectedly; quote error id {error_id} to its operator.",
        "the {service} service failed unexpectedly.",
    ),
}

# Subject placeholder -> (the id fields that name it, most specific first; its noun).
_SUBJECTS: dict[str, tuple[tuple[str, ...], str]] = {
    "account": (("account_id", "card_account_id"), "card account"),
    "product": (("product_id",), "coupon product"),
    "coupon": (("code",), "coupon"),
    "redemption": (("redemption_id",), "redemption"),
    "deduction": (("deduction_id", "deduction", "deduction_request_id"), "deduction"),
    "request": (("request_id",), "request id"),
    "customer": (("customer_id",), "customer"),
}

# What gRPC's own message says of a connection that failed, and what that means here.
_PLAINTEXT_SERVER = (
    "the {service} service at {address} does not speak TLS (it serves plaintext), so the "
    "TLS handshake failed; leave --tls-ca out, or start the service with its certificate"
)
_UNTRUSTED_SERVER = (
    "the certificate of the {service} service at {address} is not signed by the CA in "
    "--tls-ca {ca}, so the TLS handshake failed; pass the CA that signed it"
)
_WRONG_HOST = (
    "the certificate of the {service} service is not for the host name in {address}, so "
    "the TLS handshake failed; connect by a name the certificate carries (e.g. localhost)"
)
_WANTS_TLS = (
    "the {service} service at {address} closed the connection at once: it expects TLS; "
    "pass --tls-ca (and --tls-cert and --tls-key if it requires client certificates)"
)
_WANTS_CLIENT_CERT = (
    "the {service} service at {address} ended the TLS handshake: it requires a client "
    "certificate; pass --tls-cert and --tls-key (e.g. certs/ops.pem and certs/ops-key.pem)"
)
_UNTRUSTED_CLIENT = (
    "the {service} service at {address} ended the TLS handshake: it does not accept the "
    "client certificate {cert}; use one signed by a CA it trusts"
)


def _connection_problem(failure: CallFailed) -> str | None:
    """A sentence for a connection that failed for a known cause; None when none is known."""
    error = failure.error
    if error.code is not grpc.StatusCode.UNAVAILABLE or error.reason:
        return None
    said = error.message
    transport = failure.transport
    if "WRONG_VERSION_NUMBER" in said:
        return _PLAINTEXT_SERVER
    if "CERTIFICATE_VERIFY_FAILED" in said:
        return _UNTRUSTED_SERVER
    if "not in peer certificate" in said:
        return _WRONG_HOST
    if "Socket closed" in said or "Connection reset" in said or "ALERT" in said.upper():
        if not transport.secure:
            return _WANTS_TLS
        return _UNTRUSTED_CLIENT if transport.cert else _WANTS_CLIENT_CERT
    return None


_TRANSPORT_SENTENCES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: (
        "cannot reach the {service} service at {address}; check that it is running and that "
        "--{service} (or POINTSBRIDGE_CLI_{SERVICE}) points at it"
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: (
        "the {service} service at {address} did not answer within {timeout} seconds"
    ),
}


def _details(failure: CallFailed) -> dict[str, str]:
    """What is known about the call: the request's scalar fields, then the ErrorInfo metadata."""
    known = {
        descriptor.name: str(value)
        for descriptor, value in failure.request.ListFields()
        if descriptor.type != FieldDescriptor.TYPE_MESSAGE and not descriptor.is_repeated
    }
    known.update(failure.error.metadata)
    known.update(
        service=str(failure.service),
        SERVICE=failure.service.upper(),
        address=failure.address,
        timeout=f"{failure.timeout:g}",
        ca=failure.transport.ca,
        cert=failure.transport.cert,
    )
    return known


def _with_subjects(known: Mapping[str, str]) -> dict[str, str]:
    named = dict(known)
    for placeholder, (keys, noun) in _SUBJECTS.items():
        ident = next((known[k] for k in keys if known.get(k)), None)
        named[placeholder] = f"{noun} {ident!r}" if ident else f"the {noun}"
    if known.get("quantity", "").isdigit():
        named["coupons"] = counted(int(known["quantity"]), "coupon")
    customer = known.get("customer_id")
    if named["account"] == "the card account" and customer:
        # A redemption names the customer only; the card is the one linked to them.
        named["account"] = f"the card account linked to customer {customer!r}"
    return named


def _first_that_fits(templates: tuple[str, ...], known: Mapping[str, str]) -> str:
    for template in templates:
        try:
            return template.format_map(known)
        except KeyError:
            continue
    raise AssertionError(f"no sentence of {templates!r} fits")  # the last always fits


def _as_sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def sentence(failure: CallFailed) -> str:
    """One sentence for the operator: from the reason if known, else from the status."""
    error = failure.error
    known = _with_subjects(_details(failure))
    if "admin" in error.metadata.get("allowed_roles", "").split(","):
        known["or_an_operator"] = " or an operator (a token with the admin role)"
    # What an operator was told belongs to someone else: a coupon or a redemption.
    for key, subject in (("code", "coupon"), ("redemption_id", "redemption")):
        if error.reason == "NOT_OWNER" and key in error.metadata:
            known.setdefault("owned", known[subject])
    if error.reason in REASON_SENTENCES:
        return _as_sentence(_first_that_fits(REASON_SENTENCES[error.reason], known))
    problem = _connection_problem(failure)
    if problem is not None:
        return _as_sentence(problem.format_map(known))
    if error.code in _TRANSPORT_SENTENCES:
        text = _TRANSPORT_SENTENCES[error.code].format_map(known)
        if error.code is grpc.StatusCode.DEADLINE_EXCEEDED and known.get("request_id"):
            # The call may have been carried out: only the same id makes a retry safe.
            text += (
                "; the outcome is unknown, so retry with --request-id "
                f"{known['request_id']} to get it without repeating the change"
            )
        return _as_sentence(text)
    message = error.message or "no message"
    return _as_sentence(f"The {failure.service} service answered {error.code.name}: {message}")


def report_lines(failure: CallFailed) -> list[str]:
    """The sentence, then one line per field violation."""
    lines = [sentence(failure)]
    lines += [f"  - {v.field}: {v.description}" for v in failure.error.violations]
    return lines
