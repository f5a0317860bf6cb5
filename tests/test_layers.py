"""The package's imports run one way: no room imports a room of a higher layer.

The layers are the README's (its "Layout" table); a new room must be placed here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"

# Lowest first; a room may import its own layer and those below it.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"http", "crypto", "ops", "config", "clock", "errors", "audit"}),
    frozenset({"policy", "store", "mfa", "throttle"}),
    frozenset(
        {
            "signin",
            "enforcement",
            "secondfactor",
            "accounts",
            "proxy",
            "delivery",
            "sending",
            "schema",
            "xero",
            "reminders",
        }
    ),
    frozenset({"services"}),
    frozenset({"web", "admin", "xero_api"}),
    frozenset({"runtime"}),
    frozenset({"cli", "sandbox"}),
)
LAYER_OF = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "gateway" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "gateway":
                found.extend((node.lineno, f"gateway.{alias.name}") for alias in node.names)
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return found


def _modules() -> list[Path]:
    top = PACKAGE / "__init__.py"
    return sorted(p for p in PACKAGE.rglob("*.py") if p != top)


def test_every_room_has_a_layer() -> None:
    rooms = {p.stem if p.parent == PACKAGE else p.relative_to(PACKAGE).parts[0] for p in _modules()}
    assert rooms - set(LAYER_OF) == set()


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_downward(path: Path) -> None:
    relative = path.relative_to(PACKAGE)
    own = relative.stem if len(relative.parts) == 1 else relative.parts[0]
    upward = [
        f"line {line}: {module}"
        for line, module in _imports(path)
        if (room := _room(module)) is not None and LAYER_OF[room] > LAYER_OF[own]
    ]
    assert upward == []


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from gateway.runtime.app import create_app\nfrom gateway import cli\n")
    assert [m for _, m in _imports(module)] == ["gateway.runtime.app", "gateway.cli"]
    assert LAYER_OF[_room("gateway.runtime.app") or ""] > LAYER_OF["web"]


DRIVERS = frozenset({"sqlite3", "aiosqlite"})
DRIVER_ADAPTER = PACKAGE / "store" / "sqlite.py"


def _drivers(path: Path) -> list[str]:
    return [
        f"line {line}: {module}"
        for line, module in _imports(path)
        if module.split(".")[0] in DRIVERS
    ]


@pytest.mark.parametrize(
    "path",
    [p for p in _modules() if p != DRIVER_ADAPTER],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_only_the_sqlite_adapter_imports_a_database_driver(path: Path) -> None:
    assert _drivers(path) == [], "the store's modules speak gateway.store.database"


def test_the_driver_check_sees_a_driver_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import sqlite3\nfrom aiosqlite import Connection\nimport json\n")
    assert _drivers(module) == ["line 1: sqlite3", "line 2: aiosqlite"]
    assert _drivers(DRIVER_ADAPTER) != []
