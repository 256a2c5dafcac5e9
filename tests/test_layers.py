"""The rooms of both services import only what sits below them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("cardpoints", "ecommerce")
# What each inner room must not import: storage and transport live in adapters and
# entrypoints, which the inner rooms never see.
FORBIDDEN = {
    "domain": (
        "sqlalchemy",
        "grpc",
        "{service}.adapters",
        "{service}.entrypoints",
        "{service}.service_layer",
    ),
    "service_layer": ("sqlalchemy", "grpc", "{service}.adapters", "{service}.entrypoints"),
}


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def refused(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_inner_rooms_import_no_storage_transport_or_outer_room(service: str, room: str) -> None:
    prefixes = tuple(p.format(service=service) for p in FORBIDDEN[room])
    modules = sorted((ROOT / service / room).rglob("*.py"))
    assert modules, f"no {service}/{room} modules"
    found = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in modules
        for name in imported(path)
        if refused(name, prefixes)
    }
    assert not found, sorted(found)


def test_servicekit_modules_the_inner_rooms_use_import_no_storage() -> None:
    """An inner room reaches servicekit too: those modules stay free of SQLAlchemy."""
    used = {
        name
        for service in SERVICES
        for room in FORBIDDEN
        for path in (ROOT / service / room).rglob("*.py")
        for name in imported(path)
        if name.startswith("servicekit.")
    }
    assert used
    found = {
        f"{name}: {inner}"
        for name in sorted(used)
        for inner in imported(ROOT / (name.replace(".", "/") + ".py"))
        if refused(inner, ("sqlalchemy", "grpc"))
    }
    assert not found, sorted(found)
