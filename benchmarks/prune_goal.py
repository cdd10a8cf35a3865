"""Pruning to a latency goal: which allocation of the channels keeps the most accuracy at
the latency asked for (issue 24).

    python benchmarks/prune_goal.py --scale cpu \\
        --checkpoint runs/bench-baselines-cpu/shufflenet_v2_x1_0_cifar/model.pt \\
        --checkpoint runs/bench-search-cpu/retrain/029abd594e/model.pt

Each checkpoint is pruned by ``compress.prune`` to ``--latency`` (default 0.6x of its own
latency) on ``--target`` (default cpu-ort-1t), widths kept to the target runtime's
channel block, with each allocation of the channels to remove:

- ``uniform``: the same share of every layer, lowest importance first: what ``--ratio``
  does, with the share found by measurement;
- ``global``: one importance ranking across layers (``--global``);
- ``latency``: importance per latency cost, each layer's cost measured on the target
  (``--allocate latency``, HALP's knapsack);
- ``latency+kd``: the same allocation, fine-tuned with distillation from the unpruned
  parent (``--distill``): the control for plain fine-tuning;
- ``ratio``: what ``--ratio`` pruning gives at the same latency: the uniform share, widths
  not kept to the channel block (``--ratio``'s default), the share found by the same
  bisection so that the latency is the goal's.

Every arm gets the same fine-tuning (``--finetune`` epochs, lr 0.02, the checkpoint's own
data); only ``latency+kd`` adds the parent's soft predictions. Then the parents and
every pruned model are measured side by side on the target, rounds alternating between
models: speedup is the median of the ratios within a round, the goal error the pruned
latency against goal x parent from the same rounds. Validation accuracy (carved from
training images) compares the arms; test accuracy is only reported. Finished arms are
kept in ``--work`` and not pruned again. Nothing else may run on the machine meanwhile.
Writes results/<name>_<scale>.{json,md} (``--name``, default prune_goal).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, measure_checkpoints, publish

from compress.prune import (
    TOLERANCE,
    LatencyGoal,
    PruneConfig,
    block_size,
    prune_checkpoint,
    recorded_refusal,
    refusal_of,
)
from nas.checkpoint import arch_of, load_checkpoint
from nas.latency import load_target

ARMS: dict[str, tuple[dict[str, Any], bool]] = {  # PruneConfig changes, distill
    "uniform": ({}, False),
    "global": ({"global_ranking": True}, False),
    "latency": ({"allocation": "latency"}, False),
    "latency+kd": ({"allocation": "latency"}, True),
    "ratio": ({"round_to": 1}, False),
}
SETTINGS = {
    "cpu": {"finetune": 3, "rounds": 7, "steps": None},
    "tiny": {"finetune": 1, "rounds": 1, "steps": 2},  # steps: per fine-tuning epoch
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SETTINGS), default="cpu")
    parser.add_argument("--checkpoint", type=Path, action="append", required=True)
    parser.add_argument("--latency", default="0.6x", help="goal: 0.6x (of the parent) or 3ms")
    parser.add_argument("--target", default="cpu-ort-1t")
    parser.add_argument("--scope", default="all", help="all channels or 'internal' ones")
    parser.add_argument("--finetune", type=int, help="fine-tuning epochs after pruning")
    parser.add_argument("--rounds", type=int, help="side-by-side measuring rounds")
    parser.add_argument(
        "--arms", default=",".join(ARMS), help=f"comma-separated, of {', '.join(ARMS)} (all)"
    )
    parser.add_argument("--work", type=Path, default=Path("runs/bench-prune-goal"))
    parser.add_argument(
        "--name", default="prune_goal", help="results/<name>_<scale>.{json,md} (default prune_goal)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    settings = SETTINGS[args.scale]
    finetune = settings["finetune"] if args.finetune is None else args.finetune
    rounds = settings["rounds"] if args.rounds is None else args.rounds
    goal = LatencyGoal.parse(args.latency)
    arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    unknown = sorted(set(arms) - set(ARMS))
    if unknown or not arms:
        parser.error(
            f"--arms: unknown {', '.join(unknown) or 'none given'}; choose from {', '.join(ARMS)}"
        )
    target = load_target(args.target)
    round_to = block_size(target)
    started = time.time()

    reports: dict[tuple[str, str], dict[str, Any]] = {}
    out_of_reach: dict[str, str] = {}  # "<hash> <arm>" -> compress.prune's refusal
    parents: dict[str, Path] = {}
    names: dict[str, str] = {}
    for checkpoint in args.checkpoint:
        arch = arch_of(load_checkpoint(checkpoint, kind="model"))
        parents[arch.hash], names[arch.hash] = checkpoint, arch.short_name()
        for arm in arms:
            out = args.work / arch.hash / f"{arm}.pt"
            refused = recorded_refusal(out)
            if refused is None and not out.with_suffix(".json").exists():
                print(f"== {arch.short_name()} ({arch.hash}): {arm} allocation to {goal}")
                out.parent.mkdir(parents=True, exist_ok=True)
                refused = refusal_of(
                    partial(_prune, checkpoint, out, args, arm, round_to, goal, finetune, settings),
                    out,
                )
                if refused:
                    print(f"   {refused}")
            if refused is not None:
                out_of_reach[f"{arch.hash} {arm}"] = refused
                continue
            reports[arch.hash, arm] = json.loads(out.with_suffix(".json").read_text())

    paths = {f"{h} parent": p for h, p in parents.items()}
    paths |= {f"{h} {arm}": Path(r["checkpoint"]) for (h, arm), r in reports.items()}
    samples = measure_checkpoints(paths, (args.target,), rounds)

    rows = []
    for (h, arm), report in reports.items():
        parent = samples[args.target, f"{h} parent"]
        pruned = samples[args.target, f"{h} {arm}"]
        ratios = [p / m for p, m in zip(parent, pruned, strict=True)]
        errors = [m / goal.ms(p) - 1 for p, m in zip(parent, pruned, strict=True)]
        before, after = report["before"], report["after"]
        record = report["prune"]["latency_goal"]
        rows.append(
            {
                "model": names[h],
                "arch_hash": h,
                "allocation": arm,
                "distill": report["prune"]["distill"],
                "parent_ms": statistics.median(parent),
                "latency_ms": statistics.median(pruned),
                "speedup": statistics.median(ratios),
                "speedup_min": min(ratios),
                "speedup_max": max(ratios),
                "goal_error": statistics.median(errors),
                "goal_met": abs(statistics.median(errors)) <= TOLERANCE,
                "channels_removed": report["ratio_reached"],
                "flops_M": after["flops"] / 1e6,
                "val_acc_parent": before["val_acc"],
                "val_acc": after["val_acc"],
                "val_drop_points": 100 * (before["val_acc"] - after["val_acc"]),
                "test_acc": after["test_acc"],
                "probes": len(record["probes"]) + len(record.get("layer_probes") or {}),
                "kept": report["kept"],
            }
        )
    best = {
        h: max((r for r in rows if r["arch_hash"] == h), key=lambda r: r["val_acc"])["allocation"]
        for h in parents
    }
    notes = (
        f"Goal {goal} on {args.target} (tolerance {TOLERANCE:.0%}), widths in multiples of "
        f"{round_to} (the runtime's block on this CPU; 1 for `ratio`), scope {args.scope}, "
        f"{finetune} "
        "fine-tuning epochs (lr 0.02) for every arm. Latency: median over "
        f"{rounds} rounds alternating between models; speedup and goal error from the ratios "
        "within a round. `probes`: latency measurements the pruning made (bisection, plus one "
        "per layer for the latency allocation). Best allocation by validation accuracy: "
        + ", ".join(f"{h} {a}" for h, a in best.items())
        + "".join(f". Out of reach, {k}: {why}" for k, why in out_of_reach.items())
        + ". Test accuracy is reported, never used to choose."
    )
    extra = {
        "goal": str(goal),
        "target": args.target,
        "round_to": round_to,
        "finetune_epochs": finetune,
        "rounds": rounds,
        "best": best,
        "out_of_reach": out_of_reach,
        "reports": {f"{h} {arm}": r for (h, arm), r in reports.items()},
        "samples": {name: samples[args.target, name] for name in paths},
        "wall_s": round(time.time() - started, 1),
    }
    publish(args.name, args.scale, rows, extra, list(rows[0]), notes, args.results)


def _prune(
    checkpoint: Path,
    out: Path,
    args: argparse.Namespace,
    arm: str,
    round_to: int,
    goal: LatencyGoal,
    finetune: int,
    settings: dict[str, Any],
) -> None:
    changes, distill = ARMS[arm]
    prune_checkpoint(
        checkpoint,
        out,
        PruneConfig(**{"ratio": 0.5, "scope": args.scope, "round_to": round_to} | changes),
        latency=goal,
        finetune_epochs=finetune,
        finetune_steps=settings["steps"],
        distill=distill,
        lr=0.02,
        target=args.target,
    )


if __name__ == "__main__":
    main()
