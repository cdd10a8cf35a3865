"""Pruning and int8 quantization: speedups and accuracy drops, measured side by side.

    python benchmarks/compression.py --scale cpu

Trains a ShuffleNetV2 x1.0 (CIFAR stem) on the embedded data (or takes ``--checkpoint``),
prunes it with fine-tuning to a latency goal on each CPU target (``--latency``, default
0.6x of the parent, widths in multiples of the target's channel block; or ``--ratio`` of
its channels, one pruned model for both targets), quantizes the original and each pruned
model to int8 (ONNX Runtime variants, and torch eager x86), then measures every model on
every CPU target in one run, alternating models per round. Goals (issue 24): the goal
reached within 5% on each target; >= 1.4x at <= 1 point on cpu-ort-1t; pruned + int8
>= 2x; int8 >= 1.5x over the best fp32 runtime with <= 1 point.
Writes results/compression_<scale>.{json,md}. Nothing else may run on the machine
meanwhile: the measurements are the result. Resumable: finished stages are kept in
``--work``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, add_targets_argument, measure_side_by_side, write_results

from compress.prune import (
    LatencyGoal,
    PruneConfig,
    block_size,
    prune_checkpoint,
    recorded_refusal,
    refusal_of,
)
from compress.quantize import quantize_checkpoint
from nas import preset
from nas.checkpoint import load_checkpoint, model_from_checkpoint
from nas.data import load_data
from nas.latency import LatencyMeter, Measurement, load_target
from nas.train import FINAL, STATE, TrainConfig, train


@dataclass(frozen=True)
class Scale:
    epochs: int  # training of the model to compress (when no --checkpoint is given)
    finetune: int  # fine-tuning epochs after pruning
    data: str = "embedded"
    steps_per_epoch: int | None = None  # tiny (CI smoke) runs only
    calib_batches: int = 16  # int8 calibration batches


SCALES = {"cpu": Scale(10, 5), "tiny": Scale(1, 1, steps_per_epoch=2, calib_batches=1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SCALES), default="cpu")
    parser.add_argument("--checkpoint", type=Path, help="a trained model instead of training")
    parser.add_argument("--preset", default="shufflenet_v2_x1_0_cifar")
    parser.add_argument(
        "--latency", default="0.6x", help="latency goal per target, as compress.prune takes it"
    )
    parser.add_argument(
        "--ratio", type=float, help="prune this share of channels instead of a latency goal"
    )
    parser.add_argument(
        "--prune-scope", default="all", help="all channels, or 'internal' (block widths kept)"
    )
    parser.add_argument(
        "--round-to",
        type=int,
        help="pruned layers keep a multiple of this (default: the target's channel block "
        "with a latency goal, 1 with --ratio)",
    )
    parser.add_argument("--work", type=Path, default=Path("runs/bench-compression"))
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument(
        "--name",
        default="compression",
        help="results/<name>_<scale>.{json,md} (default compression)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--variants", default="*", help="ONNX Runtime int8 variants (compress.quantize's)"
    )
    add_targets_argument(parser)
    args = parser.parse_args()
    scale = SCALES[args.scale]
    # target name -> (what to load it by, its spec); int8 runs on each target's runtime
    specs = [(str(t), load_target(t)) for t in args.targets]
    targets = {spec.name: (arg, spec) for arg, spec in specs}
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = work / "base" / FINAL["model"]
        if not checkpoint.exists():
            started = time.time()
            train(
                preset(args.preset),
                load_data(scale.data),
                TrainConfig(
                    epochs=scale.epochs,
                    batch_size=128,
                    lr=0.1,
                    steps_per_epoch=scale.steps_per_epoch,
                ),
                work / "base",
                resume=(work / "base" / STATE).exists(),
            )
            timings["train_s"] = time.time() - started

    goal = None if args.ratio is not None else LatencyGoal.parse(args.latency)
    prune_reports: dict[str, dict[str, Any]] = {}  # per target
    out_of_reach: dict[str, str] = {}  # per target where compress.prune refused the goal
    for target_name, (target_arg, spec) in targets.items():
        pruned = work / ("pruned.pt" if goal is None else f"pruned-{target_name}.pt")
        refused = recorded_refusal(pruned)
        if refused is None and not pruned.with_suffix(".json").exists():
            started = time.time()
            round_to = args.round_to or (1 if goal is None else block_size(spec))
            refused = refusal_of(
                partial(_prune_to, checkpoint, pruned, args, scale, goal, round_to, target_arg),
                pruned,
            )
            timings[f"prune_{target_name}_s"] = time.time() - started
            if refused:
                print(f"{target_name}: {refused}")
        if refused is not None:
            out_of_reach[target_name] = refused
            continue
        prune_reports[target_name] = json.loads(pruned.with_suffix(".json").read_text())

    quantized: dict[str, dict[str, Any]] = {}  # "<base|pruned>/<target>"
    for target_name, (target_arg, spec) in targets.items():
        sources = [("base", checkpoint)]
        if target_name in prune_reports:
            sources.append(("pruned", Path(prune_reports[target_name]["checkpoint"])))
        for name, source in sources:
            out = work / f"int8-{name}-{target_name}"
            if not (out / "quantize.json").exists():
                started = time.time()
                quantize_checkpoint(
                    source,
                    out,
                    runtime=spec.runtime,
                    target=target_arg,
                    calib_batches=scale.calib_batches,
                    variants=args.variants,
                )
                timings[f"quantize_{out.name}_s"] = time.time() - started
            quantized[f"{name}/{target_name}"] = json.loads((out / "quantize.json").read_text())
            quantized[f"{name}/{target_name}"]["dir"] = str(out)

    # Every model on every target, in one run, rounds alternating between models.
    base_payload = load_checkpoint(checkpoint, kind="model")
    counts = base_payload["data"]["counts"]
    base_model = model_from_checkpoint(base_payload)
    arch = base_model.arch
    shape = (1, arch.in_channels, arch.resolution, arch.resolution)

    def subjects_of(target_name: str, runtime: str) -> dict[str, tuple[str, Path]]:
        """Label -> (how to measure it, its file); no pruned models where the goal was
        out of reach."""
        base = Path(quantized[f"base/{target_name}"]["dir"])
        report = prune_reports.get(target_name)
        pruned = Path(quantized[f"pruned/{target_name}"]["dir"]) if report else None
        if runtime == "onnxruntime":
            files = {
                "fp32": ("onnx", base / "fp32.onnx"),
                "pruned fp32": ("onnx", pruned / "fp32.onnx") if pruned else None,
                "int8": ("onnx", base / "int8.onnx"),
                "pruned int8": ("onnx", pruned / "int8.onnx") if pruned else None,
            }
        else:
            files = {
                "fp32": ("checkpoint", checkpoint),
                "pruned fp32": ("checkpoint", Path(report["checkpoint"])) if report else None,
                "int8": ("int8", base / "int8.pt"),
                "pruned int8": ("int8", pruned / "int8.pt") if pruned else None,
            }
        return {label: file for label, file in files.items() if file is not None}

    def measurer(kind: str, path: Path) -> Callable[[LatencyMeter], Measurement]:
        if kind == "checkpoint":
            return lambda meter: meter.measure_checkpoint(path, use_cache=False)
        if kind == "int8":
            return lambda meter: meter.measure_built(
                "compress.quantize._torch:load_int8", path, shape, use_cache=False
            )
        return lambda meter: meter.measure_onnx(path, shape, use_cache=False)

    subjects = {name: subjects_of(name, spec.runtime) for name, (_, spec) in targets.items()}
    samples: dict[tuple[str, str], list[float]] = {}
    for target_name, models in subjects.items():
        target_arg = targets[target_name][0]  # a shipped name or a target YAML's path
        timed = measure_side_by_side(
            {label: measurer(kind, path) for label, (kind, path) in models.items()},
            (target_arg,),
            args.rounds,
        )
        samples |= {(target_name, label): ms for (_, label), ms in timed.items()}

    rows = []
    # Ratios are taken within a round (all models of a target measured within seconds of
    # each other) and the median over rounds is reported: the host's speed drifts between
    # rounds by more than the differences being measured.
    ort = next((n for n, (_, t) in targets.items() if t.runtime == "onnxruntime"), None)
    fp32_ort = samples[(ort, "fp32")] if ort else None
    for target_name, models in subjects.items():
        base_fp32 = quantized[f"base/{target_name}"]["fp32"]
        flops = {"fp32": base_fp32["flops"] / 1e6}
        acc = {"fp32": (base_fp32["val_acc"], base_fp32["test_acc"])}
        if target_name in prune_reports:
            after = prune_reports[target_name]["after"]
            flops["pruned"] = after["flops"] / 1e6
            acc["pruned fp32"] = (after["val_acc"], after["test_acc"])
        for name in ("base", "pruned"):
            if f"{name}/{target_name}" in quantized:
                q = quantized[f"{name}/{target_name}"]["int8"]
                acc["int8" if name == "base" else "pruned int8"] = (q["val_acc"], q["test_acc"])
        fp32 = samples[(target_name, "fp32")]
        for label in models:
            ms = samples[(target_name, label)]
            ratios = [f / m for f, m in zip(fp32, ms, strict=True)]
            goal_error = None
            if goal is not None and label == "pruned fp32":
                goal_error = statistics.median(
                    m / goal.ms(f) - 1 for f, m in zip(fp32, ms, strict=True)
                )
            rows.append(
                {
                    "target": target_name,
                    "model": label,
                    "latency_ms": statistics.median(ms),
                    "speedup": statistics.median(ratios),
                    "speedup_min": min(ratios),
                    "speedup_max": max(ratios),
                    "vs_ort_fp32": None
                    if fp32_ort is None
                    else statistics.median([f / m for f, m in zip(fp32_ort, ms, strict=True)]),
                    "goal_error": goal_error,
                    "flops_M": flops["pruned" if label.startswith("pruned") else "fp32"],
                    "val_acc": acc[label][0],
                    "test_acc": acc[label][1],
                    "val_drop_points": 100 * (acc["fp32"][0] - acc[label][0]),
                }
            )
    extra = {
        "checkpoint": str(checkpoint),
        "latency_goal": None if goal is None else str(goal),
        "prune": prune_reports,
        "out_of_reach": out_of_reach,
        "quantize": quantized,
        "rounds": args.rounds,
        "samples": {f"{t}/{m}": v for (t, m), v in samples.items()},
        "timings_s": timings,
    }
    columns = [
        "target",
        "model",
        "latency_ms",
        "speedup",
        "speedup_min",
        "speedup_max",
        "vs_ort_fp32",
        "goal_error",
        "flops_M",
        "val_acc",
        "test_acc",
        "val_drop_points",
    ]
    notes = (
        (
            f"{args.preset} trained {scale.epochs} epochs on the `{scale.data}` data"
            if args.checkpoint is None
            else f"`{args.checkpoint}`"
        )
        + "; pruning: "
        + (
            f"{args.ratio:.0%} of channels (3 steps)"
            if goal is None
            else f"to {goal} of the parent on each target (goal_error: the pruned model "
            "against goal x parent, median over rounds)"
        )
        + f", {'internal ' if args.prune_scope == 'internal' else ''}channels, group-norm, "
        + "widths in multiples of "
        + ", ".join(f"{t} {r['prune']['round_to']}" for t, r in prune_reports.items())
        + f", {scale.finetune} fine-tuning epochs at lr 0.02; channels removed "
        + ", ".join(f"{t} {r['ratio_reached']:.1%}" for t, r in prune_reports.items())
        + "".join(f"; not pruned on {t}: {why}" for t, why in out_of_reach.items())
        + ". int8 on onnxruntime: the fastest variant within "
        "1 point of validation accuracy ("
        + ", ".join(
            f"{quantized[f'base/{t}']['int8']['name']} on {t}"
            + (
                ""
                if quantized[f"base/{t}"]["int8"]["within_max_drop"]
                else ": none was within, the fastest"
            )
            for t, (_, spec) in targets.items()
            if spec.runtime == "onnxruntime"
        )
        + f" for the original). Latency: median over {args.rounds} rounds of each model's "
        "median, "
        "rounds alternating between models. speedup: vs fp32 on the same target, the median "
        "(min, max) over rounds of the ratio within a round; vs_ort_fp32: vs fp32 on ONNX "
        "Runtime, the fastest fp32 runtime here. int8 FLOPs are the fp32 model's (MACs). "
        f"Accuracy: val ({counts['val']} images, carved from train) decides; test "
        f"({counts['test']} images) is reported only."
    )
    json_path, md_path = write_results(
        args.name, args.scale, rows, extra, columns, notes, args.results
    )
    print(md_path.read_text())
    print(f"-> {json_path}")


def _prune_to(
    checkpoint: Path,
    pruned: Path,
    args: argparse.Namespace,
    scale: Scale,
    goal: LatencyGoal | None,
    round_to: int,
    target: str,
) -> None:
    prune_checkpoint(
        checkpoint,
        pruned,
        PruneConfig(
            args.ratio or 0.5,
            "group-norm",
            global_ranking=False,
            scope=args.prune_scope,
            round_to=round_to,
        ),
        latency=goal,
        steps=3 if goal is None else 1,
        finetune_epochs=scale.finetune,
        finetune_steps=scale.steps_per_epoch,
        lr=0.02,
        target=None if goal is None else target,
    )


if __name__ == "__main__":
    main()
