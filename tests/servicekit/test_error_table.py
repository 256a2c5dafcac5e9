"""One reason -> code table: every refusal either service or the storefront names is in it,
and a reason it lacks reaches the caller as a logged INTERNAL bug, never as a guessed code."""

from __future__ import annotations

import ast
import importlib
import logging
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from servicekit.errors import DomainError
from servicekit.status import REASON_CODES, UnknownReason, code_for, refusal, rpc

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cardpoints", "ecommerce", "servicekit", "storefront")
# Functions that take a reason positionally, and at which position.
REASON_TAKERS = {"CredentialError": 0, "refusal": 0, "ServiceRefusal": 1}


def _import_everything() -> None:
    for name in PACKAGES:
        package = importlib.import_module(name)
        for found in pkgutil.walk_packages(package.__path__, f"{name}."):
            if ".migrations" not in found.name:
                importlib.import_module(found.name)


def _subclasses(cls: type[DomainError]) -> Iterator[type[DomainError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _reasons_named_in(source: str) -> set[str]:
    """Every string literal the code uses as a reason: raised, compared with or returned."""
    found: set[str] = set()

    def literal(node: ast.AST | None) -> None:
        # "" is no reason at all: a peer's error that carried no ErrorInfo.
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value:
            found.add(node.value)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "reason":
                    literal(keyword.value)
            callee = node.func
            name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", "")
            position = REASON_TAKERS.get(name)
            if position is not None and len(node.args) > position:
                literal(node.args[position])
        elif isinstance(node, ast.Compare):
            left = node.left
            named = left.id if isinstance(left, ast.Name) else getattr(left, "attr", "")
            if named in ("reason", "failure_reason"):
                for comparator in node.comparators:
                    literal(comparator)
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, ast.Assign | ast.AnnAssign):
                    targets = (
                        statement.targets
                        if isinstance(statement, ast.Assign)
                        else [statement.target]
                    )
                    if any(isinstance(t, ast.Name) and t.id == "reason" for t in targets):
                        literal(statement.value)
        elif isinstance(node, ast.FunctionDef) and "reason" in node.name:
            for inner in ast.walk(node):
                if isinstance(inner, ast.Return):
                    literal(inner.value)
    return found


def _source_files() -> Iterator[Path]:
    for name in PACKAGES:
        for path in sorted((ROOT / name).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def test_every_domain_error_subclass_has_a_reason_in_the_table() -> None:
    _import_everything()
    classes = list(_subclasses(DomainError))
    assert len(classes) > 20, "the walk found too few error classes to mean anything"
    missing = {f"{c.__module__}.{c.__qualname__}": c.reason for c in classes}
    missing = {where: reason for where, reason in missing.items() if reason not in REASON_CODES}
    assert not missing, f"reasons not in servicekit.status.REASON_CODES: {missing}"


def test_every_reason_the_code_names_is_in_the_table() -> None:
    named: dict[str, set[str]] = {}
    for path in _source_files():
        for reason in _reasons_named_in(path.read_text(encoding="utf-8")):
            named.setdefault(reason, set()).add(str(path.relative_to(ROOT)))
    assert len(named) > 25, "the scan found too few reasons to mean anything"
    missing = {
        reason: sorted(where) for reason, where in named.items() if reason not in REASON_CODES
    }
    assert not missing, f"reasons not in servicekit.status.REASON_CODES: {missing}"


def test_the_storefronts_refusal_words_are_for_reasons_in_the_table() -> None:
    from storefront.entrypoints import i18n, views

    assert set(views.REFUSAL_PLACES) <= set(REASON_CODES)
    # The storefront's own words (not a reason ecommerce sends) are spelled out here.
    own = {"QUANTITY_INVALID", "NO_CODES", "QUANTITY_CHANGED", "OTHER"}
    for words in (i18n._EN, i18n._ZH):
        keys = {k.split(".")[1] for k in words if k.startswith("refusal.")}
        assert keys - own <= set(REASON_CODES), keys - own - set(REASON_CODES)


def test_the_scan_sees_a_reason_that_is_not_in_the_table() -> None:
    source = (
        'raise DomainError("x", reason="NO_SUCH_REASON")\nif e.reason == "ALSO_NOT": pass\n'
        'raise ServiceRefusal(grpc.StatusCode.INTERNAL, "NOR_THIS", "m")\n'
    )
    assert _reasons_named_in(source) == {"NO_SUCH_REASON", "ALSO_NOT", "NOR_THIS"}


def test_an_unknown_reason_has_no_code() -> None:
    with pytest.raises(UnknownReason):
        code_for("NO_SUCH_REASON")
    with pytest.raises(UnknownReason):
        code_for("INTERNAL")  # the edge's own, for bugs; never a refusal
    assert code_for("NOT_ADMIN") is grpc.StatusCode.PERMISSION_DENIED
    assert refusal("MISSING_CREDENTIALS", "m").code is grpc.StatusCode.UNAUTHENTICATED


class _Aborted(Exception):
    pass


class _Context:
    status: grpc.Status | None = None

    async def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise _Aborted


class _Servicer:
    def __init__(self, error: Exception) -> None:
        self.error = error

    @rpc
    async def Call(self, request: Any, context: Any) -> None:  # a gRPC method
        raise self.error


async def _answer(error: Exception) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    context: Any = _Context()
    with pytest.raises(_Aborted):
        await _Servicer(error).Call(object(), context)
    assert context.status is not None
    [(_, raw)] = [m for m in context.status.trailing_metadata if m[0] == "grpc-status-details-bin"]
    [detail] = status_pb2.Status.FromString(raw).details
    info = error_details_pb2.ErrorInfo()
    detail.Unpack(info)
    return context.status.code, info.reason, dict(info.metadata)


@pytest.mark.asyncio
@pytest.mark.parametrize("reason", ["NO_SUCH_REASON", "INTERNAL"])
async def test_an_unknown_reason_is_a_logged_internal_error(
    reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="servicekit.status"):
        code, sent, metadata = await _answer(DomainError("oops", reason=reason))
    assert (code, sent) == (grpc.StatusCode.INTERNAL, "INTERNAL")
    assert metadata["error_id"] in caplog.text
    assert reason in caplog.text


@pytest.mark.asyncio
async def test_a_known_reason_keeps_its_code() -> None:
    code, sent, _ = await _answer(DomainError("no", reason="COUPON_VOID"))
    assert (code, sent) == (grpc.StatusCode.FAILED_PRECONDITION, "COUPON_VOID")
