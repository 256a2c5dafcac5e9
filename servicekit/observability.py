"""Request ids, structured logs and Prometheus metrics, shared by both services' servers."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import re
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram, start_http_server

from servicekit.auth import Authenticator, principal_var
from servicekit.ports import check_port_free
from servicekit.status import Undecodable

REQUEST_ID_HEADER = "x-request-id"

# The request id of the RPC being served; outgoing calls forward it.
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
rpc_var: contextvars.ContextVar[str] = contextvars.ContextVar("rpc", default="")

RPC_REQUESTS = Counter(
    "pointsbridge_rpc_requests_total",
    "RPCs served, by service, method and final status code.",
    ["service", "method", "code"],
)
RPC_LATENCY = Histogram(
    "pointsbridge_rpc_latency_seconds",
    "Time to serve an RPC, by service and method.",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

log = logging.getLogger("pointsbridge.rpc")

# Secrets and personal data that must never reach a log line, whatever logs them.
_TOKEN = re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]{5,}")
_COUPON_CODE = re.compile(
    r"\b(?:[2-9A-Z]{4}-){4}([2-9A-Z]{2})\b|\b[2-9A-HJ-NP-Z]{16}([2-9A-Z]{2})\b"
)
_CARD_NUMBER = re.compile(r"(?<!\d)\d{8,15}(\d{4})(?!\d)")


# Matches wherever one of the three above could: text without it has nothing to mask, and
# one search of it is cheaper than the three substitutions.
_SUSPECT = re.compile(r"eyJ|[2-9A-Z]{4}-|[2-9A-Z]{16}|\d{12}")


def redact(text: str) -> str:
    """Mask bearer tokens, coupon codes and card numbers (all but their last characters)."""
    if _SUSPECT.search(text) is None:
        return text
    text = _TOKEN.sub("[token]", text)
    text = _COUPON_CODE.sub(lambda m: f"[coupon ..{m.group(1) or m.group(2)}]", text)
    return _CARD_NUMBER.sub(lambda m: f"[card ..{m.group(1)}]", text)


def _safe(deserializer: Callable[[bytes], Any] | None, rpc: str) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        if deserializer is None:
            return data
        try:
            return deserializer(data)
        except Exception:
            return Undecodable(rpc)

    return deserialize


_REQUEST_ID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def incoming_request_id(metadata: Any) -> str:
    """The caller's `x-request-id` from (key, value) pairs when safe to log, else a new one."""
    for key, value in metadata or ():
        # Only accept ids that are safe to log verbatim.
        acceptable = isinstance(value, str) and 0 < len(value) <= 128
        if key == REQUEST_ID_HEADER and acceptable and set(value) <= _REQUEST_ID_OK:
            return str(value)
    return secrets.token_hex(8)


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """Metadata that carries the current request id to the next service."""
    request_id = request_id_var.get()
    return ((REQUEST_ID_HEADER, request_id),) if request_id else ()


def _caller_gone(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """What the caller saw of a call that ended under the handler: its deadline passed
    (DEADLINE_EXCEEDED), or it went away or cancelled (CANCELLED)."""
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def with_duties(
    full_method: str, handler: grpc.RpcMethodHandler[Any, Any], auth: Authenticator | None
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` of "/package.Service/Method" with every unary RPC's duties, built once
    when the servicer is registered: a request id (from `x-request-id` or new, sent back in
    the initial metadata), the caller admitted by `auth` (None: no authentication; health
    and reflection are credential-free), then a count, a latency and one log line.

    Streaming handlers are returned as they are."""
    if handler.unary_unary is None:
        return handler
    service, _, method = full_method.lstrip("/").partition("/")
    # Looked up once: a `labels()` lookup per call costs more than the observation.
    latency = RPC_LATENCY.labels(service, method)
    counts: dict[grpc.StatusCode, Any] = {}
    admit = None
    if auth is not None and (rule := auth.rule_for(full_method)) is not None:
        admit = functools.partial(auth.admit, full_method, rule)
    inner: Behavior = handler.unary_unary  # type: ignore[assignment]  # aio handlers are async

    async def duties(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        metadata = context.invocation_metadata()
        request_id = incoming_request_id(metadata)
        request_token = request_id_var.set(request_id)
        rpc_token = rpc_var.set(method)
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
            if admit is None:
                response = await inner(request, context)
            else:
                principal_token = principal_var.set(await admit(request, metadata, context))
                try:
                    response = await inner(request, context)
                finally:
                    principal_var.reset(principal_token)
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:
            code = _caller_gone(context)
            raise
        except BaseException:
            code = grpc.StatusCode.UNKNOWN
            raise
        else:
            if context.cancelled():  # finished, but nobody was left to answer
                code = _caller_gone(context)
            return response
        finally:
            elapsed = time.perf_counter() - started
            latency.observe(elapsed)
            counter = counts.get(code)
            if counter is None:
                counter = counts[code] = RPC_REQUESTS.labels(service, method, code.name)
            counter.inc()
            log.info(
                "%s %s %.1f ms",
                method,
                code.name,
                elapsed * 1000,
                extra={"code": code.name, "duration_ms": round(elapsed * 1000, 3)},
            )
            rpc_var.reset(rpc_token)
            request_id_var.reset(request_token)

    return grpc.unary_unary_rpc_method_handler(
        duties,
        request_deserializer=_safe(handler.request_deserializer, method),
        response_serializer=handler.response_serializer,
    )


class DutiesHandler(grpc.GenericRpcHandler):
    """A generic handler whose unary methods come with their duties (see `with_duties`),
    each wrapped on its first call and then reused."""

    def __init__(self, inner: grpc.GenericRpcHandler, auth: Authenticator | None) -> None:
        self._inner = inner
        self._auth = auth
        self._wrapped: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None  # not ours: UNIMPLEMENTED if no other handler has it
        full_method: str = handler_call_details.method
        wrapped = self._wrapped.get(full_method)
        if wrapped is None or wrapped[0] is not handler:
            wrapped = self._wrapped[full_method] = (
                handler,
                with_duties(full_method, handler, self._auth),
            )
        return wrapped[1]


_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id and RPC of the call being served."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._second = -1
        self._stamp = ""
        self._encode = json.JSONEncoder(ensure_ascii=False).encode

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # the same second as the last line's: its stamp
            self._stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        if request_id := request_id_var.get():
            entry["request_id"] = request_id
            entry["rpc"] = rpc_var.get()
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | bool | None) else redact(str(value))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return self._encode(entry)


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        request_id = request_id_var.get()
        return f"{text} [{rpc_var.get()} {request_id}]" if request_id else text


def configure_logging(service: str, level: str, log_format: str = "auto") -> None:
    """JSON lines, or human-readable text when `auto` and stderr is a terminal."""
    human = log_format == "text" or (log_format == "auto" and sys.stderr.isatty())
    handler = logging.StreamHandler()
    handler.setFormatter(HumanFormatter() if human else JsonFormatter(service))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.Formatter.converter = time.gmtime


def serve_metrics(address: str) -> int:
    """Expose /metrics over HTTP on "host:port" (port 0 picks one); returns the port."""
    check_port_free(address, "metrics")
    host, _, port = address.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0")  # noqa: S104
    return int(server.server_port)
