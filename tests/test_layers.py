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
    return names_in(path.read_text(), list(path.relative_to(ROOT).parts[:-1]))


def names_in(source: str, package: list[str]) -> set[str]:
    """Every module a source imports; `from a import b` counts as a and as a.b, and a
    relative import is read as the absolute name it stands for in `package`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
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
    files = {name: ROOT / (name.replace(".", "/") + ".py") for name in used}
    found = {
        f"{name}: {inner}"
        for name, path in sorted(files.items())
        if path.exists()
        for inner in imported(path)
        if refused(inner, ("sqlalchemy", "grpc"))
    }
    assert not found, sorted(found)


def test_the_scan_sees_every_spelling_of_an_import() -> None:
    source = "from ecommerce import adapters\nfrom ..entrypoints import servicer\n"
    names = names_in(source, ["ecommerce", "domain"])
    assert {"ecommerce.adapters", "ecommerce.entrypoints.servicer"} <= names
