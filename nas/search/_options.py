"""``SearchOptions``: what a search run is asked to do (the CLI's flags), checked once."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nas._errors import ConfigError
from nas.arch import ArchConfig
from nas.data import DataSpec
from nas.final import FinalTraining
from nas.search._evaluator import PROXIES
from nas.search._study import SAMPLERS
from nas.train import SUPERNET_RECIPE


@dataclass
class SearchOptions:
    """Options of :func:`run_search` (the CLI's flags)."""

    latency_budget_ms: float
    target: str = "cpu-torch-1t"
    space: str | None = None
    supernet: Path | None = None
    data: DataSpec | None = None
    trials: int = 40
    timeout_s: float | None = None
    sampler: str = "tpe"
    storage: str | None = None
    study_name: str | None = None
    run: Path | None = None
    proxy: str = "measured"
    seed: int = 0
    # Train every front arch this way before it is exported (None: export the sub-nets
    # with their supernet weights, BatchNorm recalibrated: the estimates, not final models).
    final: FinalTraining | None = None
    bn_batches: int = 4
    supernet_epochs: int = 8
    # The shared supernet recipe (nas.train.SUPERNET_RECIPE) unless changed here.
    supernet_strategy: str = SUPERNET_RECIPE["strategy"]
    supernet_lr: float = SUPERNET_RECIPE["lr"]
    device: str = "auto"
    progress: bool = True
    # Archs (preset names, arch YAML paths or ArchConfigs) evaluated first when the study
    # is new, e.g. the hand-designed net whose latency is the budget.
    start_archs: tuple[str | ArchConfig, ...] = ()
    # Nets to beat (presets, reference networks or arch YAML paths): each is measured on
    # the target, and the best estimate spending most of its latency is delivered beside
    # the front (see nas/search/_anchors.py).
    anchors: tuple[str, ...] = ()
    # At most this many exploration trials per anchor whose window the search left nearly
    # empty (None: every neighbour of its arch; 0: no exploration).
    explore: int | None = None

    def __post_init__(self) -> None:
        if not self.latency_budget_ms > 0:
            raise ConfigError("the latency budget must be positive")
        if self.proxy not in PROXIES:
            raise ConfigError(f"unknown proxy {self.proxy!r}: choose one of {', '.join(PROXIES)}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(
                f"unknown sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}"
            )
        if self.trials < 1:
            raise ConfigError("--trials must be >= 1")
        if self.bn_batches < 1:
            raise ConfigError("--bn-batches must be >= 1")
        if self.explore is not None and self.explore < 0:
            raise ConfigError("--explore must be >= 0 (0: no exploration)")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON): recorded in ``summary.json`` so a run can be continued."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (DataSpec, FinalTraining)):
                value = value.to_dict()
            elif isinstance(value, Path):
                value = str(value)
            elif f.name == "start_archs":
                value = [a.to_dict() if isinstance(a, ArchConfig) else a for a in value]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchOptions:
        values = dict(data)
        for name in ("supernet", "run"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        if values.get("data") is not None:
            values["data"] = DataSpec.from_dict(values["data"])
        if values.get("final") is not None:
            values["final"] = FinalTraining.from_dict(values["final"])
        values["anchors"] = tuple(values.get("anchors", ()))
        values["start_archs"] = tuple(
            ArchConfig.from_dict(a) if isinstance(a, dict) else a
            for a in values.get("start_archs", ())
        )
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def of_run(cls, run: Path) -> SearchOptions:
        """The options a finished search in ``run`` was made with (its ``summary.json``),
        pointed at ``run`` wherever it lies now."""
        path = run / "summary.json"
        if not path.is_file():
            raise ConfigError(
                f"{run} holds no finished search (no summary.json): run python -m nas.search "
                "into it first"
            )
        try:
            recorded = json.loads(path.read_text())["options"]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{path} records no search options (an older version wrote it): run the "
                "same python -m nas.search command again (it final-trains the front)"
            ) from None
        if recorded.get("storage") and ":***@" in recorded["storage"]:
            raise ConfigError(
                f"the search in {run} used a storage whose password is not recorded: "
                "run the same python -m nas.search command again (it final-trains the front)"
            )
        return cls.from_dict({**recorded, "run": str(run)})


def default_study_name(space: str, target: str, budget_ms: float, proxy: str) -> str:
    name = f"{Path(space).stem}-{Path(target).stem}-{budget_ms:g}ms"
    return name if proxy == "measured" else f"{name}-{proxy}"
