"""Request ids, structured logs and Prometheus metrics, shared by both services' servers."""

from __future__ import annotations

import asyncio
import contextvars
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


class _MethodDuties:
    """What an RPC's duties need of its method, worked out on its first call: the names,
    the metric children (a `labels()` lookup per call costs more than the observation)
    and the wrapped deserializer."""

    __slots__ = ("counts", "deserializer", "latency", "method", "service")

    def __init__(self, full_method: str, deserializer: Callable[[bytes], Any] | None) -> None:
        self.service, _, self.method = full_method.lstrip("/").partition("/")
        self.latency = RPC_LATENCY.labels(self.service, self.method)
        self.counts: dict[grpc.StatusCode, Any] = {}
        self.deserializer = _safe(deserializer, self.method)

    def count(self, code: grpc.StatusCode) -> None:
        counter = self.counts.get(code)
        if counter is None:
            counter = self.counts[code] = RPC_REQUESTS.labels(self.service, self.method, code.name)
        counter.inc()


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):
    """Gives every unary RPC a request id (from `x-request-id` or new), a count and a latency."""

    def __init__(self) -> None:
        self._duties: dict[tuple[str, Any], _MethodDuties] = {}

    def _for(self, full_method: str, deserializer: Any) -> _MethodDuties:
        key = (full_method, deserializer)
        duties = self._duties.get(key)
        if duties is None:
            duties = self._duties[key] = _MethodDuties(full_method, deserializer)
        return duties

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        duties = self._for(handler_call_details.method, handler.request_deserializer)
        method = duties.method
        request_id = incoming_request_id(handler_call_details.invocation_metadata)
        inner: Behavior = handler.unary_unary  # type: ignore[assignment]  # aio handlers are async

        async def observed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            request_token = request_id_var.set(request_id)
            rpc_token = rpc_var.set(method)
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
                response = await inner(request, context)
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
                duties.latency.observe(elapsed)
                duties.count(code)
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
            observed,
            request_deserializer=duties.deserializer,
            response_serializer=handler.response_serializer,
        )


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
