"""Preparation: every input checked before anything is written, and the supernet (trained
when the run has none)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nas._errors import CheckpointError, ConfigError
from nas.arch import ArchConfig, load_arch
from nas.checkpoint import load_checkpoint, space_of, supernet_from_checkpoint
from nas.data import DataSpec, DataSplits, load_data
from nas.latency import (
    HardwareTarget,
    LatencyMeter,
    LatencyPredictor,
    default_lut_path,
    load_target,
)
from nas.models import Supernet, load_network
from nas.search._options import SearchOptions, default_study_name
from nas.space import SearchSpace, load_space
from nas.train import FINAL, STATE, TrainConfig, fit_to_data, pick_device, train


@dataclass
class SearchContext:
    options: SearchOptions
    target: HardwareTarget
    space: SearchSpace
    data: DataSplits
    run_dir: Path
    study_name: str
    storage_url: str
    supernet_path: Path
    log: Callable[[str], None]
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)
    start_params: list[dict[str, Any]] = field(default_factory=list)


def prepare(options: SearchOptions, log: Callable[[str], None]) -> SearchContext:
    # cheap checks first, so a typo is reported before any data is decoded
    target = load_target(options.target)
    requested = load_space(options.space) if options.space or options.supernet is None else None
    checkpoint = None
    if options.supernet is not None:
        checkpoint = load_checkpoint(options.supernet, kind="supernet")
    if requested is not None:
        known = requested
    else:
        assert checkpoint is not None  # no space named: the supernet's
        known = space_of(checkpoint)
    start = [_start_params(known, arch) for arch in options.start_archs]  # before any data
    for name in options.anchors:
        load_network(name)  # an unknown name fails here, before any data is read
    data_spec = options.data
    if checkpoint is not None:
        trained_on = DataSpec.from_dict(checkpoint["data"]["spec"])
        if data_spec is None:
            data_spec = trained_on
        elif not data_spec.same_split(trained_on):
            raise ConfigError(
                f"{options.supernet} was trained on data {trained_on.source!r} with another "
                "split; search it with the same --data (its validation split must not overlap "
                "the images it was trained on)"
            )
    data = load_data(data_spec or DataSpec())
    trained_data = checkpoint["data"] if checkpoint is not None else {}
    if trained_data.get("cache_key") not in (None, data.info["cache_key"]):
        raise ConfigError(
            f"{options.supernet} was trained on other images than {data.info['source']!r} "
            f"holds (it was trained on {trained_data.get('source')!r}); search it with the data "
            "it was trained on"
        )
    if checkpoint is not None:
        trained = space_of(checkpoint)
        if requested is not None and fit_to_data(requested, data).hash != trained.hash:
            raise CheckpointError(
                f"{options.supernet} was trained for space {trained.name!r}, not "
                f"{requested.name!r}; pass its space or train a supernet for this one"
            )
        space = trained
    else:
        assert requested is not None
        space = fit_to_data(requested, data)  # type: ignore[assignment]
    assert isinstance(space, SearchSpace)
    name = options.study_name or default_study_name(
        space.name, target.name, options.latency_budget_ms, options.proxy
    )
    if not name or "/" in name:
        raise ConfigError(f"invalid study name {name!r}")
    run_dir = options.run or Path("runs") / name
    storage = options.storage or f"sqlite:///{run_dir.resolve() / 'study.db'}"
    supernet_path = options.supernet or run_dir / "supernet" / FINAL["supernet"]
    device = str(pick_device(options.device))
    ctx = SearchContext(
        options, target, space, data, run_dir, name, storage, supernet_path, log, device
    )
    ctx.start_params = start
    return ctx


def _start_params(space: SearchSpace, given: str | ArchConfig) -> dict[str, Any]:
    """The searched axes' values of a start arch, checked to lie in the space (its class
    and channel counts follow the data, like every arch of the search)."""
    arch = space.adapt(load_arch(given) if isinstance(given, str) else given)
    try:
        space.check(arch)
    except ConfigError as exc:
        name = given if isinstance(given, str) else given.hash
        raise ConfigError(f"start arch {name}: {exc}") from None
    return {k: v for k, v in arch.to_params().items() if k in space.searchable}


def load_supernet(ctx: SearchContext) -> Supernet:
    if not ctx.supernet_path.exists():
        out = ctx.supernet_path.parent
        o = ctx.options
        # no validation pass here: the search evaluates sub-nets itself
        config = TrainConfig.supernet(
            epochs=o.supernet_epochs,
            strategy=o.supernet_strategy,
            lr=o.supernet_lr,
            eval_every=0,
            seed=o.seed,
        )
        ctx.log(
            f"no --supernet given: training one on {ctx.data.info['source']} first "
            f"({o.supernet_epochs} epochs, {o.supernet_strategy}, {len(ctx.data.train)} "
            f"images) into {out}"
        )
        train(
            ctx.space,
            ctx.data,
            config,
            out,
            device=ctx.options.device,
            resume=(out / STATE).exists(),
            progress=o.progress,
            log=ctx.log,
        )
    payload = load_checkpoint(ctx.supernet_path, kind="supernet")
    net = supernet_from_checkpoint(payload)
    if net.space.hash != ctx.space.hash:
        raise CheckpointError(f"{ctx.supernet_path} belongs to another space; use another --run")
    return net.to(ctx.device)


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def study_settings(ctx: SearchContext) -> dict[str, Any]:
    o = ctx.options
    return {
        "space": ctx.space.hash,
        "space_name": ctx.space.name,
        "target": ctx.target.hash,
        "target_name": ctx.target.name,
        "budget_ms": o.latency_budget_ms,
        "proxy": o.proxy,
        "supernet": _file_sha(ctx.supernet_path),
        "data": ctx.data.info["cache_key"],
        "split": ctx.data.info["spec"],
        "bn_batches": o.bn_batches,
        "seed": o.seed,
    }


def lookup_predictor(ctx: SearchContext, meter: LatencyMeter) -> LatencyPredictor | None:
    path = default_lut_path(ctx.target, ctx.space)
    if not path.exists():
        return None
    predictor = LatencyPredictor.load(path)
    if predictor.space_hash != ctx.space.hash:
        return None
    try:
        predictor.check(ctx.target, meter.environment)
    except ConfigError as exc:
        ctx.log(f"note: not using the lookup table {path}: {exc}")
        return None
    return predictor
