"""``run_pipeline``: supernet, search, final training of the front, baselines, pruning,
int8, report.

Every stage writes into the run directory and is skipped when its finished output is
already there; an interrupted stage resumes (training from its resume state, the search
from its study), so running the same command again continues a killed pipeline.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from nas._errors import ConfigError
from nas.arch import PRESETS, ArchConfig
from nas.checkpoint import load_checkpoint
from nas.data import load_data
from nas.env import machine_info
from nas.final import FinalTraining
from nas.io import write_json_atomic
from nas.latency import load_target
from nas.models import load_network
from nas.pipeline._clock import timed_attempt
from nas.pipeline._config import PipelineConfig
from nas.space import load_space
from nas.train import FINAL, STATE, TrainConfig, fit_to_data, pick_device, train

if TYPE_CHECKING:
    from compress.prune import LatencyGoal

STAGES = ("supernet", "search", "final", "baselines", "prune", "quantize", "report")
RECORD = "pipeline.json"


def run_pipeline(
    config: PipelineConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every stage of ``config`` in order; returns the record written to
    ``RUN/pipeline.json`` (per-stage status and wall time)."""
    _check(config)
    run = config.run
    run.mkdir(parents=True, exist_ok=True)
    record = _load_record(run, config)
    stages: list[tuple[str, Callable[[], bool]]] = [
        ("supernet", lambda: _supernet(config, progress, log)),
        ("search", lambda: _search(config, progress, log)),
        ("final", lambda: _final(config, progress, log)),
        ("baselines", lambda: _baselines(config, progress, log)),
        ("prune", lambda: _prune(config, progress, log)),
        ("quantize", lambda: _quantize(config, progress, log)),
        ("report", lambda: _report(config, record, progress, log)),
    ]
    started = time.monotonic()
    left_out = {
        name
        for name, section in (
            ("final", config.final),
            ("baselines", config.baselines),
            ("prune", config.prune),
            ("quantize", config.quantize),
        )
        if section is None
    }
    for name, stage in stages:
        if name in left_out:
            record["stages"][name] = {"seconds": 0.0, "status": "left out (null in the config)"}
            continue
        log(f"== {name}")
        entry = record["stages"].setdefault(name, {"seconds": 0.0})
        entry["status"] = "running"
        with timed_attempt(entry, partial(_save_record, run, record)):
            ran = stage()
        attempt = entry.pop("running_seconds")
        entry["status"] = "done" if ran else "skipped (output exists)"
        if ran:
            entry["seconds"] += attempt  # accumulated over resumed attempts
            entry["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if not ran:
            log(f"{name}: skipped, its output is already in {run}")
        _save_record(run, record)
    record["last_seconds"] = time.monotonic() - started
    record["total_seconds"] = sum(s.get("seconds", 0.0) for s in record["stages"].values())
    _save_record(run, record)
    log(
        f"pipeline {config.name}: done in {record['last_seconds'] / 60:.1f} min this time "
        f"({record['total_seconds'] / 60:.1f} min of stage work in all); "
        f"report: {run / 'report' / 'index.html'}"
    )
    return record


def _check(config: PipelineConfig) -> None:
    """Names that a late stage would only trip over after the training: checked first."""
    load_space(config.space)
    for target in (config.target, *config.report.targets):
        load_target(target)
    if config.quantize is not None and config.quantize.target is not None:
        load_target(config.quantize.target)


def _load_record(run: Path, config: PipelineConfig) -> dict[str, Any]:
    path = run / RECORD
    settings = _stored(config)
    if path.is_file():
        record: dict[str, Any] = json.loads(path.read_text())
        defaults = _stored(PipelineConfig(name=config.name, run=config.run))
        if not _same_settings(record.get("config"), settings, defaults):
            raise ConfigError(
                f"{run} holds a pipeline run with other settings; use the same config or "
                "another run directory (`run:` in the YAML)"
            )
        return record
    return {
        "config": settings,
        "machine": machine_info(),
        "stages": {},
    }


def _stored(config: PipelineConfig) -> dict[str, Any]:
    return dict(json.loads(json.dumps(config.to_dict(), default=str)))  # as stored in JSON


def _same_settings(stored: Any, current: Any, defaults: Any) -> bool:
    """``stored`` (a run's recorded settings) equals ``current``, where a setting the
    record lacks (added to the toolkit since) counts as its default value."""
    if isinstance(stored, dict) and isinstance(current, dict):
        defaults = defaults if isinstance(defaults, dict) else {}
        for key, value in current.items():
            if key in stored:
                if not _same_settings(stored[key], value, defaults.get(key)):
                    return False
            elif key not in defaults or value != defaults[key]:
                return False
        return set(stored) <= set(current)
    return bool(stored == current)


def _save_record(run: Path, record: dict[str, Any]) -> None:
    write_json_atomic(run / RECORD, record, default=str)


# -- stages ------------------------------------------------------------------------------
# Each returns True when it did work and False when its output already existed.


def _supernet_path(config: PipelineConfig) -> Path:
    return config.run / "supernet" / FINAL["supernet"]


def _supernet(config: PipelineConfig, progress: bool, log: Callable[[str], None]) -> bool:
    path = _supernet_path(config)
    if path.is_file():
        load_checkpoint(path, kind="supernet")  # a corrupt file is an error, not a skip
        return False
    data = load_data(config.data)
    space = fit_to_data(load_space(config.space), data)
    recipe = TrainConfig.from_dict({**config.supernet.to_dict(), "seed": config.seed})
    train(
        space,
        data,
        recipe,
        path.parent,
        device=config.device,
        resume=(path.parent / STATE).exists(),
        progress=progress,
        log=log,
    )
    return True


def _search(config: PipelineConfig, progress: bool, log: Callable[[str], None]) -> bool:
    from nas.search import SearchOptions, run_search

    s = config.search
    summary = config.run / "summary.json"
    if summary.is_file() and (config.run / "pareto.csv").is_file():
        done = json.loads(summary.read_text())
        searched = done["trials"]["complete"] - done["trials"].get("explored", 0)
        if searched >= s.trials and done["latency_budget_ms"] == s.budget_ms:
            return False
    run_search(
        SearchOptions(
            latency_budget_ms=s.budget_ms,
            target=config.target,
            supernet=_supernet_path(config),
            data=config.data,
            trials=s.trials,
            timeout_s=s.timeout_s,
            sampler=s.sampler,
            study_name=config.name,
            run=config.run,
            proxy=s.proxy,
            seed=config.seed,
            bn_batches=s.bn_batches,
            explore=s.explore,
            device=config.device,
            progress=progress,
            start_archs=start_archs(config),
            # the search delivers, per baseline, its best estimate at that baseline's latency
            anchors=tuple(config.baselines.models) if config.baselines else (),
        ),
        log=log,
    )
    return True


def start_archs(config: PipelineConfig) -> tuple[ArchConfig, ...]:
    """The space's smallest arch, then every baseline the space holds: the search evaluates
    them first, so its front reaches down to the fastest arch there is and it has measured
    the hand-designed nets it will be compared with. Left to the sampler, 40 trials at a
    budget that admits the whole space never came below 0.42 ms on cpu-ort-1t, where x0.5
    runs 0.41 ms and the smallest arch 0.24 ms."""
    space = load_space(config.space)
    names = config.baselines.models if config.baselines else ()
    presets = [space.adapt(PRESETS[name]) for name in names if name in PRESETS]
    return (space.min_arch, *(arch for arch in presets if arch in space))


def _final(config: PipelineConfig, progress: bool, log: Callable[[str], None]) -> bool:
    """The front trained with ``config.final`` and exported again (the search continued
    from its run, no new trials)."""
    from nas.search import SearchOptions, run_search

    if config.final is None:
        return False
    done = json.loads((config.run / "summary.json").read_text())
    trained = done.get("options", {}).get("final")
    if trained is not None and FinalTraining.from_dict(trained) == config.final:
        return False
    options = SearchOptions.of_run(config.run)
    # explore=0: an anchor the search stage did not explore is not explored now
    options = dataclasses.replace(options, final=config.final, explore=0, progress=progress)
    run_search(options, log=log)
    return True


def _baselines(config: PipelineConfig, progress: bool, log: Callable[[str], None]) -> bool:
    if config.baselines is None:
        return False
    todo = [
        name
        for name in config.baselines.models
        if not (config.run / "baselines" / name / FINAL["model"]).is_file()
    ]
    if not todo:
        return False
    data = load_data(config.data)
    for name in todo:
        out = config.run / "baselines" / name
        log(f"baseline {name}: {config.baselines.train.epochs} epochs on {data.info['source']}")
        train(
            load_network(name),
            data,
            TrainConfig.from_dict({**config.baselines.train.to_dict(), "seed": config.seed}),
            out,
            device=config.device,
            resume=(out / STATE).exists(),
            progress=progress,
            log=log,
        )
    return True


def _chosen(config: PipelineConfig, count: int) -> list[dict[str, Any]]:
    """The ``count`` most accurate front models (validation accuracy)."""
    front = pd.read_csv(config.run / "pareto.csv")
    best = front.sort_values("val_acc", ascending=False).head(count)
    return [{str(k): v for k, v in row.items()} for row in best.to_dict("records")]


def _prune(config: PipelineConfig, progress: bool, log: Callable[[str], None]) -> bool:
    from compress.prune import LatencyGoal, block_size, recorded_refusal, refusal_of

    p = config.prune
    if p is None:
        return False
    goal = None if p.latency is None else LatencyGoal.parse(p.latency, p.max_removed)
    round_to = p.round_to or block_size(load_target(config.target))
    did = False
    for row in _chosen(config, p.models):
        pruned = config.run / "compress" / str(row["arch_hash"]) / "pruned.pt"
        if pruned.with_suffix(".json").is_file() or recorded_refusal(pruned) is not None:
            continue
        share = f"to {goal} of its latency" if goal else f"{p.ratio:.0%} of channels"
        log(f"prune {row['arch_hash']}: {share}, {p.steps} step(s)")
        refused = refusal_of(
            partial(_prune_one, config, row, pruned, goal, round_to, progress, log), pruned
        )
        if refused:  # the other models may still reach it: go on without this one
            log(f"not pruned: {refused}")
        did = True
    return did


def _prune_one(
    config: PipelineConfig,
    row: dict[str, Any],
    pruned: Path,
    goal: LatencyGoal | None,
    round_to: int,
    progress: bool,
    log: Callable[[str], None],
) -> None:
    from compress.prune import PruneConfig, prune_checkpoint

    p = config.prune
    assert p is not None
    prune_checkpoint(
        config.run / str(row["checkpoint"]),
        pruned,
        PruneConfig(
            ratio=p.ratio, importance=p.importance, round_to=round_to, allocation=p.allocate
        ),
        latency=goal,
        steps=p.steps,
        finetune_epochs=p.finetune_epochs,
        distill=p.distill,
        data=config.data,
        target=config.target,
        seed=config.seed,
        device=str(pick_device(config.device)),
        progress=progress,
        log=log,
    )


def _quantize(config: PipelineConfig, progress: bool, log: Callable[[str], None]) -> bool:
    from compress.quantize import quantize_checkpoint

    q = config.quantize
    if q is None:
        return False
    count = config.prune.models if config.prune is not None else 2
    did = False
    for row in _chosen(config, count):
        folder = config.run / "compress" / str(row["arch_hash"])
        sources = [("int8", config.run / str(row["checkpoint"]))]
        if q.pruned and (folder / "pruned.pt").is_file():
            sources.append(("pruned-int8", folder / "pruned.pt"))
        for sub, source in sources:
            if (folder / sub / "quantize.json").is_file():
                continue
            log(f"quantize {row['arch_hash']} ({sub}): {q.method} on {q.runtime}")
            quantize_checkpoint(
                source,
                folder / sub,
                method=q.method,
                runtime=q.runtime,
                target=q.target,
                calib_batches=q.calib_batches,
                data=config.data,
                max_drop=q.max_drop,
                variants=q.variants,
                seed=config.seed,
                progress=progress,
                log=log,
            )
            did = True
    return did


def _report(
    config: PipelineConfig, record: dict[str, Any], progress: bool, log: Callable[[str], None]
) -> bool:
    from reports import build_report

    index = config.run / "report" / "index.html"
    earlier = [record["stages"].get(s, {}).get("status") for s in STAGES[:-1]]
    if index.is_file() and all(s != "done" for s in earlier):
        return False
    build_report(
        config.run,
        targets=list(config.report.targets) or None,
        passes=config.report.passes,
        progress=progress,
        log=log,
    )
    return True
