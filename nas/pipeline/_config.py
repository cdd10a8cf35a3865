"""``PipelineConfig``: the whole run (data, supernet, search, baselines, compression, report)
as one YAML file, parsed once into dataclasses with one-line errors."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from compress.prune import ALLOCATIONS, MAX_REMOVED, LatencyGoal
from nas._errors import ConfigError, NasError
from nas._yaml import read_yaml_mapping
from nas.data import DataSpec
from nas.final import FinalTraining
from nas.latency import parse_latency
from nas.train import TrainConfig


@dataclass(frozen=True)
class SearchStage:
    latency_budget: str = "25ms"
    trials: int = 40
    timeout_s: float | None = None
    sampler: str = "nsga2"
    proxy: str = "measured"
    bn_batches: int = 4
    explore: int | None = None  # see nas.search's --explore

    def __post_init__(self) -> None:
        whole = isinstance(self.explore, int) and not isinstance(self.explore, bool)
        if self.explore is not None and (not whole or self.explore < 0):
            raise ConfigError(
                f"explore must be a whole number >= 0 (0: none), got {self.explore!r}"
            )

    @property
    def budget_ms(self) -> float:
        return parse_latency(self.latency_budget)


@dataclass(frozen=True)
class BaselineStage:
    # the hand-designed family, so every part of the latency range has a point to beat
    models: tuple[str, ...] = (
        "shufflenet_v2_x0_5_cifar",
        "shufflenet_v2_x1_0_cifar",
        "shufflenet_v2_x1_5_cifar",
        "shufflenet_v2_x2_0_cifar",
        "mobilenet_v3_small_cifar",
        "mobilenet_v3_large_cifar",
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=15))

    def __post_init__(self) -> None:
        from nas.models import load_network

        for name in self.models:
            load_network(name)  # an unknown name fails now, not after the search


@dataclass(frozen=True)
class PruneStage:
    """``latency``: a goal on the run's target (``0.7x`` of each model's latency, or a time
    such as ``3ms``), reached by measurement; else ``ratio`` of the channels. ``round_to``:
    default the target runtime's channel block (see ``compress.prune.block_size``).
    ``distill``: the unpruned parent teaches during fine-tuning. ``allocate``: how the
    layers share a latency goal, ``importance`` or ``latency`` (importance per latency
    cost measured on the target; needs ``latency``)."""

    ratio: float = 0.3
    latency: str | None = None
    importance: str = "group-norm"
    steps: int = 2
    finetune_epochs: int = 2
    distill: bool = False  # fine-tuning also learns from the unpruned parent
    models: int = 2  # the best N front models by validation accuracy
    round_to: int | None = None
    allocate: str = "importance"
    max_removed: float = MAX_REMOVED  # the most channels a latency goal may remove (a share)

    def __post_init__(self) -> None:
        if self.allocate not in ALLOCATIONS:
            raise ConfigError(
                f"prune.allocate {self.allocate!r}: choose {' or '.join(ALLOCATIONS)}"
            )
        if self.allocate == "latency" and self.latency is None:
            raise ConfigError(
                "prune.allocate latency weighs channels by latency on the target: "
                "give prune.latency (e.g. 0.7x) too"
            )
        if self.latency is not None:
            LatencyGoal.parse(self.latency, self.max_removed)  # fails now, not after the search


@dataclass(frozen=True)
class QuantizeStage:
    method: str = "ptq"
    runtime: str = "onnxruntime"
    target: str | None = None  # default: the runtime's CPU target
    calib_batches: int = 16
    max_drop: float = 0.01
    variants: str = "*"
    pruned: bool = True  # also quantize the pruned models


@dataclass(frozen=True)
class ReportStage:
    targets: tuple[str, ...] = ()  # default: the search target
    passes: int = 3


@dataclass(frozen=True)
class PipelineConfig:
    """Every stage's settings. ``run`` defaults to ``runs/<name>``; a stage set to
    ``null`` in the YAML (``baselines: null``) is left out."""

    name: str
    run: Path
    data: DataSpec = field(default_factory=DataSpec)
    space: str = "shufflenetv2_cifar"
    target: str = "cpu-torch-1t"
    seed: int = 0
    device: str = "auto"
    supernet: TrainConfig = field(
        default_factory=lambda: TrainConfig.supernet(epochs=8, eval_every=0)
    )
    search: SearchStage = field(default_factory=SearchStage)
    final: FinalTraining | None = field(default_factory=FinalTraining)
    baselines: BaselineStage | None = field(default_factory=BaselineStage)
    prune: PruneStage | None = field(default_factory=PruneStage)
    quantize: QuantizeStage | None = field(default_factory=QuantizeStage)
    report: ReportStage = field(default_factory=ReportStage)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["run"] = str(self.run)
        return data


T = TypeVar("T")


def _section(cls: type[T], data: Any, where: str, base: T | None = None) -> T:
    """``cls`` from a YAML mapping, unknown keys and bad values named with ``where``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of settings, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown setting {where}.{unknown[0]}: choose from {', '.join(sorted(names))}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        if base is not None:
            return dataclasses.replace(base, **values)  # type: ignore[type-var]
        return cls(**values)
    except (NasError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_pipeline(path: str | os.PathLike[str]) -> PipelineConfig:
    raw = read_yaml_mapping(path, "pipeline")
    defaults = PipelineConfig(name="pipeline", run=Path("runs/pipeline"))
    top = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = sorted(set(raw) - top)
    if unknown:
        raise ConfigError(
            f"unknown section {unknown[0]!r} in {path}: choose from {', '.join(sorted(top))}"
        )
    name = str(raw.get("name") or Path(path).stem)
    values: dict[str, Any] = {
        "name": name,
        "run": Path(raw.get("run") or Path("runs") / name),
        "space": str(raw.get("space", defaults.space)),
        "target": str(raw.get("target", defaults.target)),
        "seed": int(raw.get("seed", defaults.seed)),
        "device": str(raw.get("device", defaults.device)),
    }
    data = raw.get("data", {})
    values["data"] = (
        DataSpec(source=data) if isinstance(data, str) else _section(DataSpec, data, "data")
    )
    values["supernet"] = _section(
        TrainConfig, raw.get("supernet") or {}, "supernet", defaults.supernet
    )
    search = _section(SearchStage, raw.get("search") or {}, "search")
    try:
        search.budget_ms  # noqa: B018 (validates the budget string now)
    except NasError as exc:
        raise ConfigError(f"search.latency_budget: {exc}") from None
    values["search"] = search
    for key, cls in (("final", FinalTraining), ("prune", PruneStage), ("quantize", QuantizeStage)):
        values[key] = (
            None if key in raw and raw[key] is None else _section(cls, raw.get(key) or {}, key)
        )
    if "baselines" in raw and raw["baselines"] is None:
        values["baselines"] = None
    else:
        b = dict(raw.get("baselines") or {})
        train = _section(TrainConfig, b.pop("train", {}) or {}, "baselines.train", TrainConfig())
        values["baselines"] = dataclasses.replace(
            _section(BaselineStage, b, "baselines"), train=train
        )
    values["report"] = _section(ReportStage, raw.get("report") or {}, "report")
    return PipelineConfig(**values)
