"""The package's shape: each module says what it owns, and imports go down the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
MODULES = sorted(PACKAGE.rglob("*.py"))
ABOVE_API = ("traffic", "run", "state", "view", "plan", "merge", "inputs")


def imported(path: Path) -> set[str]:
    """The modules `path` imports, wherever in the file (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> str | None:
    """The package folder a `pipeline.<folder>...` module is in; None for anything else."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "pipeline" else None


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_starts_with_a_docstring(path: Path) -> None:
    assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), path


def test_api_is_below_traffic_and_the_rest() -> None:
    for path in sorted((PACKAGE / "api").glob("*.py")):
        above = {n for n in imported(path) if layer_of(n) in ABOVE_API}
        assert not above, f"{path.name} imports {sorted(above)}"


def test_only_api_speaks_http() -> None:
    speakers = {
        str(path.relative_to(PACKAGE))
        for path in MODULES
        if any(n == "requests" or n.startswith("requests.") for n in imported(path))
    }
    assert speakers <= {"api/client.py"}, speakers
