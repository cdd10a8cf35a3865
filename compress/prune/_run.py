"""Pruning a checkpoint end to end: metrics before, prune (iteratively), fine-tune, after."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from compress._common import load_source, model_metrics, train_batches
from compress.prune._goal import TOLERANCE, GoalOutOfReach, LatencyGoal, goal_removal
from compress.prune._prune import PruneConfig, count_channels, layout_of, prune_once
from nas import ConfigError
from nas.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from nas.data import DataSpec, DataSplits
from nas.io import write_json_atomic
from nas.latency import LatencyMeter, load_target, measure_spaced
from nas.models import ShuffleNetV2
from nas.train import FINAL, STATE, TrainConfig, recalibrate_bn, train


def recorded_refusal(out: Path) -> str | None:
    """The refusal :func:`refusal_of` recorded for pruning into ``out``, if any."""
    record = out.with_suffix(".out-of-reach.txt")
    return record.read_text().strip() if record.is_file() else None


def refusal_of(prune: Callable[[], object], out: Path) -> str | None:
    """Run ``prune`` (which writes ``out``). A latency goal it finds out of reach is
    recorded beside ``out`` (``<out>.out-of-reach.txt``, so a resumed run does not measure
    again: :func:`recorded_refusal`) and its line returned; ``None`` when it pruned."""
    try:
        prune()
    except GoalOutOfReach as error:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".out-of-reach.txt").write_text(f"{error}\n")
        return str(error)
    return None


def measure(paths: list[Path], target_name: str | None) -> list[dict[str, Any] | None]:
    """Latency of each checkpoint on ``target_name``, side by side in one measuring process
    (passes in rounds the target's ``pass_gap_s`` apart, see ``measure_spaced``)."""
    if target_name is None:
        return [None] * len(paths)
    records: list[dict[str, Any] | None] = []
    target = load_target(target_name)
    with LatencyMeter(target, cache=False) as meter:
        measured = measure_spaced(
            {i: partial(meter.measure_checkpoint, path) for i, path in enumerate(paths)},
            gap_s=target.pass_gap_s,
        )
        for i in range(len(paths)):
            m = measured[i]
            records.append(
                {
                    "target": target_name,
                    "latency_ms": m.latency_ms,
                    "latency_p90_ms": m.p90_ms,
                    "latency_passes_ms": list(m.medians),
                    "latency_spread": m.spread,
                    "noisy": m.noisy,
                }
            )
    return records


def prune_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    config: PruneConfig,
    *,
    latency: LatencyGoal | None = None,
    steps: int = 1,
    finetune_epochs: int = 0,
    distill: bool = False,
    kd_ratio: float = 1.0,
    data: DataSpec | None = None,
    target: str | None = "cpu-torch-1t",
    lr: float = 0.01,
    batch_size: int = 128,
    bn_batches: int = 8,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
    finetune_steps: int | None = None,
) -> dict[str, Any]:
    """Prune a model checkpoint into ``out`` (a checkpoint that stores the channel layout)
    and write ``out`` with ``.json`` beside it: params, FLOPs, latency on ``target``,
    validation and test accuracy before and after. Test accuracy is only reported.

    ``latency``: remove as many channels as it takes to reach this latency on ``target``
    (found by measurement, see ``compress.prune._goal``) instead of ``config.ratio``.
    With a latency goal, a result measured no faster than its parent on ``target`` is not
    kept as ``out``: it is moved to ``<out>.not-faster.pt`` and the report says so (with
    a ratio, which asks for fewer channels, it is kept and ``faster`` says it is not).

    ``distill``: fine-tuning also learns from the unpruned parent's soft predictions
    (weight ``kd_ratio``), the parent kept frozen. ``finetune_steps``: at most this many
    steps per fine-tuning epoch (smoke tests; default: whole epochs)."""
    if steps < 1 or finetune_epochs < 0:
        raise ConfigError("--steps must be >= 1 and --finetune-epochs >= 0")
    if distill and not finetune_epochs:
        raise ConfigError("--distill teaches during fine-tuning: give --finetune-epochs too")
    per_step = math.ceil(finetune_epochs / steps) if finetune_epochs else 0
    # one fine-tuning recipe for every step, checked before anything is pruned
    tune = (
        TrainConfig(
            epochs=per_step,
            lr=lr,
            schedule="cosine",
            warmup=0.0,
            batch_size=batch_size,
            seed=seed,
            kd_ratio=kd_ratio,
            steps_per_epoch=finetune_steps,
        )
        if per_step
        else None
    )
    if latency is not None and target is None:
        raise ConfigError("--latency needs a --target to measure on")
    if config.allocation == "latency" and latency is None:
        raise ConfigError(
            "--allocate latency weighs channels by their latency measured on --target: "
            "give a --latency goal too"
        )
    source, out = Path(checkpoint), Path(out)
    _, model, splits = load_source(source, data)
    arch = model.arch
    teacher = copy.deepcopy(model).eval() if distill else None
    original = count_channels(layout_of(model), config.scope)
    goal: dict[str, Any] | None = None
    costs: dict[str, float] | None = None
    if latency is not None:
        assert target is not None
        batches = train_batches(splits, arch, batch_size, seed)
        removed, goal = goal_removal(model, config, latency, load_target(target), batches, log)
        config = dataclasses.replace(config, ratio=removed / original)
        costs = goal.get("layer_costs_ms")
    before = {**model_metrics(model, splits, device), "channels": original}
    log(f"before: {_line(before)}")
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        for step in range(1, steps + 1):
            target_removed = round(config.ratio * original * step / steps)
            model = prune_once(
                model,
                config,
                target_removed,
                train_batches(splits, arch, batch_size, seed),
                costs=costs,
            )
            recalibrate_bn(model, train_batches(splits, arch, batch_size, seed), bn_batches)
            if tune is not None:
                tuned_to = Path(tmp) / f"step{step}"
                model = _finetune(model, splits, tune, tuned_to, device, progress, teacher)
            log(
                f"step {step}/{steps}: {count_channels(layout_of(model), config.scope)} of "
                f"{original} {'internal ' if config.scope == 'internal' else ''}channels left"
            )
        layout = layout_of(model)
        metrics_after = model_metrics(model.eval(), splits, device)
        record = {
            "prune": {
                **dataclasses.asdict(config),
                "latency_goal": goal,
                "steps": steps,
                "finetune_epochs": finetune_epochs,
                "distill": distill,
                "kd_ratio": kd_ratio if distill else None,
                "lr": lr,
                "source": str(source),
            },
            "before": before,
        }
        save_checkpoint(
            out,
            {
                "kind": "model",
                "arch": arch.to_dict(),
                "layout": layout.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "data": splits.info,
                "metrics": metrics_after,
                "source": record,
            },
        )
    after = {**metrics_after, "channels": count_channels(layout, config.scope)}
    before["latency"], after["latency"] = measure([source, out], target)
    speedup = _speedup(before, after)
    report = {
        **record,
        "after": after,
        "checkpoint": str(out),
        "ratio_reached": 1 - after["channels"] / original,
        "speedup": speedup,
        "kept": True,
    }
    if latency is not None and speedup is not None:
        # the goal against the parent as measured side by side with the result
        goal_ms = latency.ms(before["latency"]["latency_ms"])
        report["goal_error"] = after["latency"]["latency_ms"] / goal_ms - 1
        report["goal_met"] = abs(report["goal_error"]) <= TOLERANCE
    report["faster"] = None if speedup is None else speedup > 1.0
    if latency is not None and report["faster"] is False:  # asked for speed, got none
        aside = out.with_suffix(".not-faster.pt")
        os.replace(out, aside)
        report.update(kept=False, checkpoint=str(aside))
    json_path = out.with_suffix(".json")
    write_json_atomic(json_path, report)
    log(f"after:  {_line(after)}")
    if speedup:
        log(
            f"removed {report['ratio_reached']:.1%} of channels: speedup {speedup:.2f}x "
            f"on {target}, params {before['params'] / after['params']:.2f}x fewer, "
            f"FLOPs {before['flops'] / after['flops']:.2f}x fewer -> {out}, {json_path}"
        )
    if "goal_met" in report:
        log(
            f"latency goal {latency}: {'met' if report['goal_met'] else 'missed'} "
            f"({report['goal_error']:+.1%} against the goal, tolerance {TOLERANCE:.0%})"
        )
    if report["faster"] is False and report["kept"]:
        log(f"warning: the pruned model is not faster than its parent on {target}")
    if not report["kept"]:
        log(
            f"not kept: the pruned model is not faster than its parent on {target} "
            f"({speedup:.2f}x); it is at {report['checkpoint']}, {out} was not written"
        )
    return report


def _finetune(
    model: ShuffleNetV2,
    data: DataSplits,
    config: TrainConfig,
    out: Path,
    device: str,
    progress: bool,
    teacher: ShuffleNetV2 | None,
) -> ShuffleNetV2:
    train(
        model.arch,
        data,
        config,
        out,
        device=device,
        progress=progress,
        report_test=False,
        log=lambda _: None,
        initial=model.state_dict(),
        layout=model.layout,
        resume=(out / STATE).exists(),
        teacher=teacher,
    )
    tuned = model_from_checkpoint(load_checkpoint(out / FINAL["model"], kind="model"))
    return tuned


def _speedup(before: dict[str, Any], after: dict[str, Any]) -> float | None:
    if before.get("latency") and after.get("latency"):
        return float(before["latency"]["latency_ms"] / after["latency"]["latency_ms"])
    return None


def _line(m: dict[str, Any]) -> str:
    lat = f"  latency {m['latency']['latency_ms']:.3f} ms" if m.get("latency") else ""
    return (
        f"params {m['params'] / 1e6:.3f}M  FLOPs {m['flops'] / 1e6:.1f}M  val acc "
        f"{m['val_acc']:.4f}  test acc {m['test_acc']:.4f}{lat}"
    )
