"""The runtime registry: which names a target's ``runtime`` may take, and their backends.

Kept free of torch so that loading and validating a target YAML does not import it: the
shipped backends are known here by name and module, and their classes are imported on
first use (their module registers them as it loads). :func:`register_runtime` adds a
backend of one's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nas.latency._backends import Backend

# name -> the module that defines (and registers) it.
_SHIPPED = {
    "torch": "nas.latency._backends",
    "onnxruntime": "nas.latency._backends",
    "remote": "nas.latency._backends",
}


class RuntimeRegistry(Mapping[str, "type[Backend]"]):
    """Runtime name -> backend class; shipped names resolve lazily, by importing their module."""

    def __init__(self, shipped: Mapping[str, str]) -> None:
        self._modules = dict(shipped)
        self._classes: dict[str, type[Backend]] = {}

    def register(self, cls: type[Backend]) -> type[Backend]:
        name = cls.name
        shipped_here = self._modules.get(name) == cls.__module__
        if name in self._classes or (name in self._modules and not shipped_here):
            raise ValueError(f"runtime {name!r} is registered already")
        self._classes[name] = cls
        return cls

    def __getitem__(self, name: str) -> type[Backend]:
        if name not in self._classes and name in self._modules:
            importlib.import_module(self._modules[name])
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._modules or name in self._classes

    def __iter__(self) -> Iterator[str]:
        yield from self._modules
        yield from (n for n in self._classes if n not in self._modules)

    def __len__(self) -> int:
        return len(set(self._modules) | set(self._classes))


RUNTIMES = RuntimeRegistry(_SHIPPED)


def register_runtime(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make ``cls`` (a ``Backend`` with a unique ``name``) a runtime."""
    return RUNTIMES.register(cls)
