"""A search run: supernet (trained if needed), Optuna study, final front, exports."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from tqdm.auto import tqdm

from nas._env import machine_info
from nas._errors import CheckpointError, ConfigError
from nas._io import write_json_atomic, write_text_atomic
from nas.arch import ArchConfig, load_arch
from nas.checkpoint import load_checkpoint, save_checkpoint, space_of, supernet_from_checkpoint
from nas.data import DataSpec, DataSplits, load_data
from nas.latency import (
    HardwareTarget,
    LatencyMeter,
    LatencyPredictor,
    MeasurementError,
    default_lut_path,
    format_ms,
    load_target,
)
from nas.models import Supernet, count_flops
from nas.search._evaluator import PROXIES, Evaluation, Evaluator
from nas.search._pareto import hypervolume, pareto_front
from nas.search._study import SAMPLERS, make_sampler, open_storage, open_study
from nas.space import SearchSpace, load_space
from nas.train import (
    FINAL,
    STATE,
    SUPERNET_RECIPE,
    TrainConfig,
    evaluate,
    fit_to_data,
    loader_for,
    train,
)
from nas.train import subnet_model as _subnet_model
from nas.train._distributed import pick_device

FRONT_COLUMNS = [
    "rank",
    "trial",
    "arch_hash",
    "name",
    "val_acc",
    "test_acc",
    "val_acc_supernet",
    "latency_ms",
    "latency_p90_ms",
    "latency_passes_ms",
    "predicted_ms",
    "flops",
    "params",
    "size_bytes",
    "checkpoint",
]
FINAL_PASSES = 3  # every arch on the final front: median of this many measurements


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
    finetune_epochs: int = 0
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
        if self.finetune_epochs < 0 or self.bn_batches < 1:
            raise ConfigError("--finetune-epochs must be >= 0 and --bn-batches >= 1")


@dataclass
class _Context:
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


def default_study_name(space: str, target: str, budget_ms: float, proxy: str) -> str:
    name = f"{Path(space).stem}-{Path(target).stem}-{budget_ms:g}ms"
    return name if proxy == "measured" else f"{name}-{proxy}"


def run_search(options: SearchOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Search ``options``' space for the best archs under the budget; returns the summary
    (also written as ``summary.json`` next to ``pareto.csv`` in the run directory)."""
    started = time.time()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ctx = _prepare(options, log)  # every input checked; nothing written yet
    # An explicit storage is opened first, so a wrong URL fails before any training.
    storage = open_storage(ctx.storage_url) if options.storage else None
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or open_storage(ctx.storage_url)
    supernet = _supernet(ctx)
    study = open_study(
        ctx.study_name,
        storage,
        make_sampler(
            options.sampler, options.seed, shared=not ctx.storage_url.startswith("sqlite")
        ),
        _settings(ctx),
    )
    if not study.trials:
        for params in ctx.start_params:
            study.enqueue_trial(params, skip_if_exists=True)
    meter = LatencyMeter(ctx.target)  # whatever the proxy, the final front is measured
    try:
        predictor = _predictor(ctx, meter)
        if options.proxy == "predicted" and predictor is None:
            raise ConfigError(
                f"--proxy predicted needs a lookup table for {ctx.target.name} and "
                f"{ctx.space.name}: python -m nas.latency build-lut --target {options.target} "
                f"--space {options.space or ctx.space.name}"
            )
        budget = _objective_budget(ctx, meter)
        evaluator = Evaluator(
            supernet,
            ctx.data,
            ctx.target,
            options.proxy,
            meter,
            predictor,
            options.bn_batches,
            device=ctx.device,
            seed=options.seed,
        )
        _optimize(ctx, study, evaluator, budget)
        front = _final_front(ctx, study, meter, budget)
        exported = _export(ctx, supernet, front)
        summary = _summary(ctx, study, front, exported, budget, time.time() - started)
    finally:
        meter.close()
    _print_summary(ctx, summary, exported, log)
    return summary


# -- preparation -------------------------------------------------------------------------


def _prepare(options: SearchOptions, log: Callable[[str], None]) -> _Context:
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
    data_spec = options.data
    if checkpoint is not None:
        trained_on = DataSpec.from_dict(checkpoint["data"]["spec"])
        if data_spec is None:
            data_spec = trained_on
        elif data_spec != trained_on:
            raise ConfigError(
                f"{options.supernet} was trained on data {trained_on.source!r} with another "
                "split; search it with the same --data (its validation split must not overlap "
                "the images it was trained on)"
            )
    data = load_data(data_spec or DataSpec())
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
    ctx = _Context(options, target, space, data, run_dir, name, storage, supernet_path, log, device)
    ctx.start_params = start
    return ctx


def _start_params(space: SearchSpace, given: str | ArchConfig) -> dict[str, Any]:
    """The searched axes' values of a start arch, checked to lie in the space (its class
    and channel counts follow the data, like every arch of the search)."""
    arch = load_arch(given) if isinstance(given, str) else given
    params = arch.to_params()
    params.update({k: v for k, v in space.fixed.items() if k in ("num_classes", "in_channels")})
    try:
        space.check(ArchConfig.from_params(params))
    except ConfigError as exc:
        name = given if isinstance(given, str) else arch.hash
        raise ConfigError(f"start arch {name}: {exc}") from None
    return {k: v for k, v in params.items() if k in space.searchable}


def _supernet(ctx: _Context) -> Supernet:
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


def _settings(ctx: _Context) -> dict[str, Any]:
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


def _predictor(ctx: _Context, meter: LatencyMeter) -> LatencyPredictor | None:
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


def _objective_budget(ctx: _Context, meter: LatencyMeter) -> float:
    """The budget in the proxy's unit: milliseconds, or MFLOPs of an arch at the budget."""
    budget = ctx.options.latency_budget_ms
    if ctx.options.proxy != "flops":
        return budget
    arch, latency = flops_at_latency(ctx.space, meter, budget)
    ctx.extra["flops_budget"] = {
        "arch": arch.to_dict(),
        "latency_ms": latency,
        "mflops": count_flops(arch) / 1e6,
    }
    ctx.log(
        f"FLOPs budget: {count_flops(arch) / 1e6:.1f}M, the FLOPs of {arch.short_name()} "
        f"which measures {format_ms(latency)} (budget {format_ms(budget)})"
    )
    return count_flops(arch) / 1e6


def interpolate_arch(space: SearchSpace, t: float) -> ArchConfig:
    """The arch at fraction ``t`` of every axis's sorted choices (0: min arch, 1: max)."""
    params = {k: v[round(t * (len(v) - 1))] for k, v in space.choices.items()}
    return ArchConfig.from_params(params)


def flops_at_latency(
    space: SearchSpace, meter: LatencyMeter, budget_ms: float
) -> tuple[ArchConfig, float]:
    """Bisect along min->max archs for the largest one measured within ``budget_ms``."""
    lo, hi = 0.0, 1.0
    best = space.min_arch
    best_ms = meter.measure_arch(best).median_ms
    if best_ms > budget_ms:
        raise ConfigError(
            f"even the smallest arch of {space.name!r} measures {format_ms(best_ms)} on "
            f"{meter.target.name}, over the {format_ms(budget_ms)} budget: raise the budget"
        )
    for _ in range(12):
        mid = (lo + hi) / 2
        arch = interpolate_arch(space, mid)
        ms = meter.measure_arch(arch).median_ms
        if ms <= budget_ms:
            lo, best, best_ms = mid, arch, ms
        else:
            hi = mid
    return best, best_ms


# -- the search ----------------------------------------------------------------------------


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def _optimize(ctx: _Context, study: optuna.Study, evaluator: Evaluator, budget: float) -> None:
    o = ctx.options
    done = len(_complete(study))
    remaining = max(0, o.trials - done)
    unit = "MFLOPs" if o.proxy == "flops" else "ms"
    if done:
        ctx.log(f"study {ctx.study_name}: {done} trials already complete, {remaining} to go")
    if remaining == 0:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bar = tqdm(total=remaining, desc="search", unit="trial", disable=not o.progress)

    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        trial.set_user_attr("worker", worker)  # which process ran it (several may share)
        arch = ctx.space.suggest(trial)
        seen = {
            t.user_attrs.get("arch_hash"): t for t in _complete(study) if "val_acc" in t.user_attrs
        }
        if arch.hash in seen:  # a repeated arch reuses its result
            earlier = seen[arch.hash]
            result = Evaluation.from_attrs(earlier.user_attrs, earlier.values[1])
            trial.set_user_attr("reused_from", earlier.number)
        else:
            result = evaluator.evaluate(arch)
        for key, value in result.attrs().items():
            trial.set_user_attr(key, value)
        trial.set_constraint("budget", result.objective - budget)
        feasible = "ok" if result.objective <= budget else "over budget"
        bar.update(1)
        tqdm.write(
            f"trial {trial.number:3d}  acc {result.val_acc:.3f}  "
            f"{result.objective:7.2f} {unit}  {feasible:11s}  {arch.short_name()}"
        )
        return result.val_acc, result.objective

    try:
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=o.timeout_s,
            callbacks=[
                optuna.study.MaxTrialsCallback(o.trials, states=(optuna.trial.TrialState.COMPLETE,))
            ],
            # a failed measurement (a remote device gone, a model the runtime rejects)
            # fails that trial; the search goes on
            catch=(RuntimeError, MeasurementError),
            gc_after_trial=True,
        )
    finally:
        bar.close()


# -- the final front -----------------------------------------------------------------------


@dataclass
class FrontEntry:
    trial: int
    evaluation: Evaluation
    latency_ms: float
    latency_p90_ms: float
    passes: list[float]


def _final_front(
    ctx: _Context, study: optuna.Study, meter: LatencyMeter, budget: float
) -> list[FrontEntry]:
    """Every candidate measured end to end (median of several passes); the front is the
    Pareto set of those within the latency budget by measurement."""
    trials = [t for t in _complete(study) if "val_acc" in t.user_attrs]
    o = ctx.options
    slack = 1.0 if o.proxy == "measured" else 1.15  # proxies may be off near the budget
    near = [t for t in trials if t.values[1] <= budget * slack]
    points = [(t.values[0], t.values[1]) for t in near]
    candidates = [near[i] for i in pareto_front(points)]
    entries = []
    for t in tqdm(candidates, desc="measure front", unit="arch", disable=not o.progress):
        ev = Evaluation.from_attrs(t.user_attrs, t.values[1])
        runs = [meter.measure_arch(ev.arch, repeat=p).stats for p in range(FINAL_PASSES)]
        medians = [s.median_ms for s in runs]
        entries.append(
            FrontEntry(
                t.number,
                ev,
                float(np.median(medians)),
                float(np.median([s.p90_ms for s in runs])),
                medians,
            )
        )
    feasible = [e for e in entries if e.latency_ms <= o.latency_budget_ms]
    dropped = len(entries) - len(feasible)
    if dropped:
        ctx.extra["dropped_over_budget"] = dropped
        ctx.log(
            f"{dropped} of {len(entries)} front candidates measured over the budget and "
            "were dropped"
        )
    keep = pareto_front([(e.evaluation.val_acc, e.latency_ms) for e in feasible])
    return [feasible[i] for i in keep]


def _export(ctx: _Context, supernet: Supernet, front: list[FrontEntry]) -> list[dict[str, Any]]:
    """YAML, checkpoint (BN recalibrated, optionally fine-tuned) and a table row per arch."""
    o = ctx.options
    rows = []
    for rank, entry in enumerate(tqdm(front, desc="export", unit="model", disable=not o.progress)):
        ev = entry.evaluation
        arch = ev.arch
        arch.to_yaml(ctx.run_dir / "archs" / f"{arch.hash}.yaml")
        model = _subnet_model(
            supernet, arch, ctx.data, o.bn_batches, device=ctx.device, seed=o.seed
        )
        metrics: dict[str, Any] = {"val_acc_supernet": ev.val_acc}
        if o.finetune_epochs:
            tuned = ctx.run_dir / "finetune" / arch.hash
            if not (tuned / FINAL["model"]).exists():  # a finished fine-tune is kept
                config = TrainConfig(epochs=o.finetune_epochs, lr=0.01, warmup=0.0, seed=o.seed)
                train(
                    arch,
                    ctx.data,
                    config,
                    tuned,
                    device=o.device,
                    resume=(tuned / STATE).exists(),
                    progress=o.progress,
                    report_test=False,
                    log=lambda _: None,
                    initial=model.state_dict(),
                )
            tuned_payload = load_checkpoint(tuned / FINAL["model"], kind="model")
            model.load_state_dict(tuned_payload["state_dict"])
        val = evaluate(model, loader_for(ctx.data.val, ctx.data, arch, 256, ctx.device))["acc"]
        # Reported once, after the front is fixed: the test split selects nothing.
        test = evaluate(model, loader_for(ctx.data.test, ctx.data, arch, 256, ctx.device))["acc"]
        metrics.update(val_acc=val, test_acc=test)
        path = save_checkpoint(
            ctx.run_dir / "models" / f"{arch.hash}.pt",
            {
                "kind": "model",
                "arch": arch.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "data": ctx.data.info,
                "metrics": metrics,
                "source": {
                    "study": ctx.study_name,
                    "trial": entry.trial,
                    "supernet": str(ctx.supernet_path),
                    "bn_batches": o.bn_batches,
                    "finetune_epochs": o.finetune_epochs,
                },
            },
        )
        rows.append(
            {
                "rank": rank,
                "trial": entry.trial,
                "arch_hash": arch.hash,
                "name": arch.short_name(),
                "val_acc": val,
                "test_acc": test,
                "val_acc_supernet": ev.val_acc,
                "latency_ms": entry.latency_ms,
                "latency_p90_ms": entry.latency_p90_ms,
                "latency_passes_ms": json.dumps([round(m, 4) for m in entry.passes]),
                "predicted_ms": ev.predicted_ms,
                "flops": ev.flops,
                "params": ev.params,
                "size_bytes": path.stat().st_size,
                "checkpoint": str(path.relative_to(ctx.run_dir)),
                **arch.to_params(),
            }
        )
    import pandas as pd

    frame = pd.DataFrame(rows, columns=FRONT_COLUMNS + list(ctx.space.max_arch.to_params()))
    write_text_atomic(ctx.run_dir / "pareto.csv", frame.to_csv(index=False))
    return rows


def _summary(
    ctx: _Context,
    study: optuna.Study,
    front: list[FrontEntry],
    rows: list[dict[str, Any]],
    budget: float,
    seconds: float,
) -> dict[str, Any]:
    o = ctx.options
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    feasible = [t for t in complete if t.values[1] <= budget]
    best = max(rows, key=lambda r: r["val_acc"]) if rows else None
    summary = {
        "study": ctx.study_name,
        "storage": ctx.storage_url.split("@")[-1],
        "run_dir": str(ctx.run_dir),
        "space": ctx.space.name,
        "space_hash": ctx.space.hash,
        "target": ctx.target.to_dict(),
        "latency_budget_ms": o.latency_budget_ms,
        "proxy": o.proxy,
        "proxy_budget": budget,
        "sampler": o.sampler,
        "trials": {
            "complete": len(complete),
            "feasible": len(feasible),
            "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
            "reused": sum("reused_from" in t.user_attrs for t in complete),
        },
        "feasible_share": len(feasible) / len(complete) if complete else 0.0,
        "hypervolume": hypervolume(
            [(r["val_acc"], r["latency_ms"]) for r in rows], o.latency_budget_ms
        ),
        "hypervolume_reference": {"accuracy": 0.0, "latency_ms": o.latency_budget_ms},
        "front_size": len(rows),
        "best": best
        and {
            k: best[k]
            for k in ("arch_hash", "name", "val_acc", "test_acc", "latency_ms", "checkpoint")
        },
        "supernet": str(ctx.supernet_path),
        "data": ctx.data.info,
        "wall_seconds": seconds,
        "machine": machine_info(),
        **ctx.extra,
    }
    write_json_atomic(ctx.run_dir / "summary.json", summary, default=str)
    return summary


def chance_warning(rows: list[dict[str, Any]], num_classes: int) -> str | None:
    """A warning when even the best sub-net the supernet rates is near chance accuracy:
    then the front ranks noise (the supernet needs more training), whatever it looks like."""
    if not rows:
        return None
    best = max(float(r["val_acc_supernet"]) for r in rows)
    if best >= 1.5 / num_classes:
        return None
    return (
        f"warning: the supernet rates its best sub-net at {best:.3f} validation accuracy, "
        f"near chance ({1 / num_classes:.3f}): this front ranks noise; train the supernet "
        "longer (more epochs or data) and search again with --supernet"
    )


def _print_summary(
    ctx: _Context, summary: dict[str, Any], rows: list[dict[str, Any]], log: Callable[[str], None]
) -> None:
    t = summary["trials"]
    log("")
    log(
        f"study {summary['study']}: {t['complete']} trials ({t['feasible']} within the budget, "
        f"{t['reused']} repeated archs reused, {t['failed']} failed) on {ctx.target.name}, "
        f"budget {format_ms(summary['latency_budget_ms'])}, {summary['wall_seconds']:.0f} s"
    )
    if not rows:
        log("no arch met the budget: raise --latency-budget or search longer")
        return
    log(f"Pareto front ({len(rows)} archs, hypervolume {summary['hypervolume']:.3f} acc x ms):")
    log(
        f"  {'hash':10s} {'val acc':>7s} {'test acc':>8s} {'latency':>9s} {'p90':>9s} "
        f"{'MFLOPs':>7s} {'params':>7s}  arch"
    )
    for r in rows:
        log(
            f"  {r['arch_hash']:10s} {r['val_acc']:7.3f} {r['test_acc']:8.3f} "
            f"{format_ms(r['latency_ms']):>9s} {format_ms(r['latency_p90_ms']):>9s} "
            f"{r['flops'] / 1e6:7.1f} {r['params'] / 1e6:6.2f}M  {r['name']}"
        )
    warning = chance_warning(rows, ctx.space.max_arch.num_classes)
    if warning:
        log(warning)
    best = summary["best"]
    log(
        f"best within budget: {best['arch_hash']} val acc {best['val_acc']:.3f} at "
        f"{format_ms(best['latency_ms'])} -> {ctx.run_dir / best['checkpoint']}"
    )
    log(f"outputs in {ctx.run_dir}: pareto.csv, summary.json, archs/, models/")
