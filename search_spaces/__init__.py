"""Shipped search spaces (YAML files in this package, found after any kind of install)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT = "shufflenetv2_cifar"


def available() -> list[str]:
    """Names of the shipped search spaces."""
    root = resources.files(__name__)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def path(name: str) -> Path:
    """Path of the shipped space ``name`` (``KeyError`` if there is none)."""
    if name not in available():
        raise KeyError(name)
    return Path(str(resources.files(__name__).joinpath(f"{name}.yaml")))
