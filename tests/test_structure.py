"""The code's shape (issue 26): packages talk through each other's public ``__init__``,
no CLI imports another CLI, and no file grows past what one reader holds in mind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGES = ("nas", "compress", "reports", "search_spaces", "benchmarks")
MAX_LINES = 450


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _owner(module: str) -> str:
    """The package a module belongs to: its dotted path up to its first private part
    (``nas.train._distributed`` -> ``nas.train``, ``nas.io`` -> ``nas``)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return module


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_no_module_imports_another_packages_private_module():
    wrong = []
    for path in _sources():
        here = _module(path)
        # a benchmark script is its own package's user, like any other client
        package = here.rsplit(".", 1)[0] if path.name != "__init__.py" else here
        for name in _imports(path):
            if name.split(".")[0] not in PACKAGES:
                continue
            owner = _owner(name)
            if owner != name and not (package + ".").startswith(owner + "."):
                wrong.append(f"{path.relative_to(REPO)}: {name}")
    assert wrong == []


def test_no_cli_imports_another_cli():
    wrong = [
        f"{path.relative_to(REPO)}: {name}"
        for path in _sources()
        for name in _imports(path)
        if name.endswith("__main__") and _module(path) != name
    ]
    assert wrong == []


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_file_is_longer_than_a_reader_holds(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES
