"""The code's shape (issue 26): packages talk through each other's public ``__init__``,
no CLI imports another CLI, and no file grows past what one reader holds in mind."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
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


def _components(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    """``.ci/components`` on a PATH without Chromium or PostgreSQL, as a non-root user."""
    bin_dir = tmp_path / f"bin-{ci or 'local'}"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "id").chmod(0o755)
    (bin_dir / "ls").symlink_to(shutil.which("ls") or "/bin/ls")
    return subprocess.run(
        [shutil.which("bash") or "/bin/bash", str(REPO / ".ci" / "components")],
        env={"PATH": str(bin_dir), "CI": ci},
        capture_output=True,
        text=True,
        check=False,
    )


def test_ci_fails_in_one_line_when_a_real_component_is_missing(tmp_path):
    failed = _components(tmp_path, "true")
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 1 and len(lines) == 1, failed.stderr
    assert lines[0].startswith("error: not root,") and "chromium" in lines[0]
    warned = _components(tmp_path, "")  # outside CI: a warning, and the tests skip
    assert warned.returncode == 0 and warned.stderr.startswith("warning: not root,")


def test_ci_turns_a_missing_component_into_a_failure(monkeypatch):
    from .helpers import require

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no browser"):
        require("no browser")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="no browser"):
        require("no browser")
    require(None)  # present: nothing happens


# Loads every kind of YAML a user validates, good and bad, then fails if torch came in.
_LIGHT_VALIDATION = """
import sys
from pathlib import Path

import search_spaces
from nas import ConfigError
from nas.arch import PRESETS, load_arch
from nas.latency import RUNTIMES, load_target, parse_latency, shipped_targets
from nas.space import load_space

tmp = Path(sys.argv[1])
for name in shipped_targets():
    load_target(name)
for name in search_spaces.available():
    load_space(name).sample(0)
for name in PRESETS:
    load_arch(name)
load_space(sys.argv[2])
(tmp / "mine.yaml").write_text("name: mine\\nruntime: onnxruntime\\nthreads: 2\\n")
assert load_target(tmp / "mine.yaml").threads == 2
(tmp / "bad.yaml").write_text("name: bad\\nruntime: tensorrt\\n")
try:
    load_target(tmp / "bad.yaml")
    raise SystemExit("an unknown runtime was accepted")
except ConfigError as error:
    assert "tensorrt" in str(error) and "onnxruntime" in str(error), error
assert "remote" in RUNTIMES and parse_latency("25ms") == 25.0
heavy = sorted(m for m in ("torch", "torchvision", "onnxruntime", "optuna") if m in sys.modules)
assert not heavy, heavy
"""


def test_validating_yaml_imports_no_torch(tmp_path):
    from .conftest import TINY_SPACE

    done = subprocess.run(
        [sys.executable, "-c", _LIGHT_VALIDATION, str(tmp_path), str(TINY_SPACE)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "nas.latency", "targets"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert listed.returncode == 0 and "cpu-ort-1t" in listed.stdout, listed.stderr
    assert "| torch" not in listed.stderr  # -X importtime lists every module imported
