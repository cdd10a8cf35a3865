"""``HardwareTarget``: where and how latency is measured, loaded from YAML."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nas._errors import ConfigError
from nas._yaml import read_yaml_mapping, write_yaml_atomic
from nas.latency._runtimes import RUNTIMES

DEFAULT_TARGET = "cpu-torch-1t"
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda")
CONNECTION_OPTIONS = ("url", "token_file", "token_env", "timeout_s", "retries")


@dataclass(frozen=True, eq=True)
class HardwareTarget:
    """A runtime on a device with fixed threads, batch, dtype and measurement protocol.

    ``runtime`` names a backend in :data:`nas.latency.RUNTIMES` (``torch``,
    ``onnxruntime``, ...). ``cores`` pins the measuring process (default: the last
    ``threads`` cores it may use). ``normalize`` expresses every latency at the machine's
    calibrated speed, from a reference model timed in blocks alternating with the subject
    (see ``run_paired_protocol``). Measured both ways (``benchmarks/latency_repeat.py``,
    2026-12-05, AMD EPYC, 10 archs, passes 10 min apart, then one core busy): median pass
    spread 3.5% against 14.0% raw on torch eager and 7.8% against 10.1% raw on ONNX
    Runtime, and with one core busy every result within 10% of its quiet value or flagged
    (raw: 9 of 10 on each): on by default, for both shipped CPU targets.
    ``contention_guard`` (with ``normalize``) repeats an attempt while a memory probe read
    beside it is slow, the host's other tenants busy in the shared cache and memory (see
    :class:`~nas.latency._stats.ContentionGuard`): on for cpu-ort-1t only; side by side it
    narrowed the pass spread in 3 of 7 runs on ONNX Runtime and 5 of 7 on torch eager,
    neither more than chance (latency_repeat, 2026-12-07).
    ``pass_gap_s``: where several models are measured in passes (the search's front, a
    report, pruned checkpoints), the seconds between the starts of two rounds of passes
    (see :func:`~nas.latency.measure_spaced`; 0: no wait between rounds). It schedules
    measurements without changing one, so it is not part of :attr:`hash`.
    ``options`` are runtime-specific (for ONNX Runtime:
    ``graph_optimization: all|extended|basic|disabled``). Resolution comes from the arch.
    """

    name: str
    runtime: str
    device: str = "cpu"
    threads: int = 1
    batch_size: int = 1
    dtype: str = "float32"
    warmup: int = 20
    repeats: int = 60
    max_cv: float = 0.05
    retries: int = 2
    cores: tuple[int, ...] | None = None
    normalize: bool = True
    contention_guard: bool = False
    pass_gap_s: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ConfigError(
                f"target {self.name!r}: unknown runtime {self.runtime!r} "
                f"(known: {', '.join(RUNTIMES)})"
            )
        if self.device not in DEVICES:
            raise ConfigError(f"target {self.name!r}: device must be one of {list(DEVICES)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"target {self.name!r}: dtype must be one of {list(DTYPES)}")
        for key in ("threads", "batch_size", "repeats"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"target {self.name!r}: {key} must be an integer >= 1")
        for key in ("warmup", "retries"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"target {self.name!r}: {key} must be an integer >= 0")
        if not 0 < self.max_cv < 1:
            raise ConfigError(f"target {self.name!r}: max_cv must be in (0, 1)")
        if self.cores is not None:
            object.__setattr__(self, "cores", tuple(int(c) for c in self.cores))
        for key in ("normalize", "contention_guard"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"target {self.name!r}: {key} must be true or false")
        gap = self.pass_gap_s
        if isinstance(gap, bool) or not isinstance(gap, int | float) or not 0 <= gap <= 600:
            raise ConfigError(
                f"target {self.name!r}: pass_gap_s must be a number of seconds in [0, 600]"
            )
        if not isinstance(self.options, dict):
            raise ConfigError(f"target {self.name!r}: options must be a mapping")

    def __hash__(self) -> int:
        return hash(self.hash)

    @property
    def hash(self) -> str:
        """Hash of everything that changes a measurement (not name, description, path)."""
        return self._digest()

    @property
    def speed_hash(self) -> str:
        """Hash of what sets the speed reference's own time (runtime, device, threads,
        batch, dtype, cores, runtime options): the key of the machine's calibration.
        Targets that differ only in their protocol (warm-up, repeats, retries, ``max_cv``)
        share one calibration."""
        return self._digest(
            "warmup", "repeats", "retries", "max_cv", "normalize", "contention_guard"
        )

    def _digest(self, *leave_out: str) -> str:
        """Hash of the target's settings but its name, description, pass scheduling and
        ``leave_out``."""
        data = self.to_dict()
        for key in ("name", "description", "pass_gap_s", *leave_out):
            data.pop(key, None)
        for key in CONNECTION_OPTIONS:  # how to reach a device, not what it measures
            data["options"].pop(key, None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]

    def pinned_cores(self) -> list[int] | None:
        """The cores the measuring process is bound to (None where affinity is unsupported)."""
        if not hasattr(os, "sched_getaffinity"):
            return None
        allowed = sorted(os.sched_getaffinity(0))
        if self.cores is not None:
            missing = [c for c in self.cores if c not in allowed]
            if missing:
                raise ConfigError(
                    f"target {self.name!r}: cores {missing} are not available "
                    f"to this process (allowed: {allowed})"
                )
            return list(self.cores)
        return allowed[-self.threads :] if len(allowed) >= self.threads else allowed

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "path"}
        data["cores"] = list(self.cores) if self.cores is not None else None
        data["options"] = dict(self.options)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> HardwareTarget:
        known = [f.name for f in dataclasses.fields(cls) if f.name != "path"]
        name = str(data.get("name", path.stem if path else "target"))
        for key in data:
            if key not in known:
                raise ConfigError(
                    f"target {name!r}: unknown key {key!r} (known: {', '.join(known)})"
                )
        if "runtime" not in data:
            raise ConfigError(f"target {name!r}: missing key 'runtime'")
        options = dict(data.get("options") or {})
        token = options.get("token_file")
        if token is not None and path is not None:  # relative to the YAML, wherever it runs
            token_path = Path(str(token)).expanduser()
            if not token_path.is_absolute():
                options["token_file"] = str((path.parent / token_path).resolve())
        return cls(**{**data, "name": name, "options": options}, path=path)

    def to_yaml(self, path: str | os.PathLike[str]) -> None:
        write_yaml_atomic(path, self.to_dict())


def shipped_targets() -> dict[str, Path]:
    root = resources.files("nas.latency").joinpath("targets")
    return {p.name[:-5]: Path(str(p)) for p in root.iterdir() if p.name.endswith(".yaml")}


def load_target(spec: str | os.PathLike[str] | None = None) -> HardwareTarget:
    """A shipped target by name (default ``cpu-torch-1t``) or a target YAML file."""
    text = os.fspath(spec) if spec is not None else DEFAULT_TARGET
    shipped = shipped_targets()
    if text in shipped:
        path = shipped[text]
    else:
        path = Path(text)
        if not (path.exists() or path.suffix in (".yaml", ".yml")):
            raise ConfigError(
                f"unknown hardware target {text!r}: give a shipped target "
                f"({', '.join(sorted(shipped))}) or a path to a target YAML"
            )
    return HardwareTarget.from_dict(read_yaml_mapping(path, "hardware target"), path=path)
