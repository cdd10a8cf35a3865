"""Final training of searched archs: from scratch, or from inherited supernet weights with
and without distillation, compared at equal wall time (issue 23: which one is the default).

    python benchmarks/final_training.py --scale cpu

Starts from the search benchmark's work folder (its supernet and the pick of each of its
searches; run ``benchmarks/search.py`` first, or this runs them). Every distinct pick is
trained by ``nas.final``'s ``FrontTrainer`` with each recipe, on the scale's data:

- ``scratch``: the arch's own initialisation, lr 0.1, the scale's epochs (this is the
  search benchmark's standalone recipe, so its retrained pick is reused, not trained twice);
- ``inherit``: its supernet weights (BatchNorm recalibrated), lr 0.02, the same epochs;
- ``inherit + distillation``: the same, taught by the supernet's largest sub-net too; a
  step costs the teacher's forward more, so it gets the epochs that fit in scratch's wall
  time, from one training step of each timed side by side before anything trains.

Validation accuracy (carved from training images) is what compares them; test accuracy is
measured once per finished model and only reported. Each training is kept in
``<work>/final/`` and resumed when interrupted.
Writes results/final_training_<scale>.{json,md}.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cifar
from _common import SCALES, add_targets_argument, publish

from nas.arch import ArchConfig
from nas.checkpoint import load_checkpoint, supernet_from_checkpoint
from nas.data import BatchLoader
from nas.final import FinalTraining, FrontTrainer
from nas.models import ShuffleNetV2
from nas.train import LOG, evaluate, loader_for

VARIANTS: dict[str, dict[str, Any]] = {
    "scratch": {"init": "scratch"},
    "inherit": {"init": "inherit"},
    "inherit + distillation": {"init": "inherit", "distill": True},
}
TIMED_STEPS = 5


def step_seconds(arch: ArchConfig, teacher: torch.nn.Module | None, x, y) -> float:
    """Median seconds of one training step of ``arch`` (forward, loss, backward, SGD), with
    the teacher's forward and the distillation term when ``teacher`` is given."""
    net = ShuffleNetV2(arch).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    times = []
    for i in range(TIMED_STEPS + 1):  # the first warms up
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits = net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=0.1)
        if teacher is not None:
            with torch.no_grad():
                soft = teacher(x).softmax(1)
            loss = loss + F.cross_entropy(logits, soft)
        loss.backward()
        optimizer.step()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = _cifar.argument_parser(__doc__)
    add_targets_argument(parser)
    args = parser.parse_args()
    started = time.time()
    s = SCALES[args.scale]
    work, trials, data, searches, supernet_path = _cifar.prepare(args)
    picks: dict[str, ArchConfig] = {}
    for case in searches:
        arch, _ = _cifar.chosen(_cifar.search(args.scale, work, case, supernet_path, trials, data))
        picks.setdefault(arch.hash, arch)
    supernet = supernet_from_checkpoint(load_checkpoint(supernet_path, kind="supernet"))

    def trainer(final: FinalTraining) -> FrontTrainer:
        return FrontTrainer(
            final,
            supernet,
            data,
            work / "final",
            bn_batches=s.bn_batches,
            device=s.device,
            progress=True,
        )

    base = {"batch_size": s.batch_size, "steps_per_epoch": s.steps_per_epoch}
    rows: list[dict[str, Any]] = []
    for arch in picks.values():
        loader = BatchLoader(
            data.train, s.batch_size, mean=data.mean, std=data.std, resolution=arch.resolution
        )
        x, y = next(iter(loader))
        teacher = trainer(FinalTraining(**base)).teacher().cpu().eval()
        plain, taught = step_seconds(arch, None, x, y), step_seconds(arch, teacher, x, y)
        for name, changes in VARIANTS.items():
            epochs = s.epochs
            if changes.get("distill"):  # equal wall time: fewer epochs for a dearer step
                epochs = max(1, round(s.epochs * plain / taught))
            final = FinalTraining(epochs=epochs, **base, **changes)
            if final.init == "scratch" and final.recipe(0) == s.recipe():
                # the search benchmark's own retraining: same recipe, seed and data
                path = _cifar.retrain(args.scale, work, arch, data)
                folder = path.parent
                model = ShuffleNetV2(arch)
                model.load_state_dict(load_checkpoint(path, kind="model")["state_dict"])
                model = model.to(s.device).eval()
            else:
                t = trainer(final)
                model, _ = t.train(arch)
                folder = t.root / arch.hash
            history = [json.loads(line) for line in (folder / LOG).read_text().splitlines()]
            test = evaluate(model, loader_for(data.test, data, arch, 256, s.device))["acc"]
            rows.append(
                {
                    "arch": arch.short_name(),
                    "arch_hash": arch.hash,
                    "recipe": name,
                    "epochs": epochs,
                    "lr": final.recipe(0).lr,
                    "val_acc": history[-1]["val_acc"],
                    "test_acc": test,
                    "val_acc_first_epoch": history[0].get("val_acc"),
                    "train_s": round(sum(r["train_seconds"] for r in history), 1),
                    "step_s_timed": round(taught if changes.get("distill") else plain, 4),
                }
            )
            print(rows[-1], flush=True)
    for row in rows:
        scratch = next(
            r for r in rows if r["arch_hash"] == row["arch_hash"] and r["recipe"] == "scratch"
        )
        row["val_gain_points"] = round(100 * (row["val_acc"] - scratch["val_acc"]), 2)
        row["wall_vs_scratch"] = round(row["train_s"] / max(scratch["train_s"], 1e-9), 2)
    means = {
        name: statistics.fmean(r["val_acc"] for r in rows if r["recipe"] == name)
        for name in VARIANTS
    }
    best = max(means, key=lambda n: means[n])
    columns = list(rows[0])
    notes = (
        f"{len(picks)} archs (the picks of the search benchmark's searches), each trained "
        f"with every recipe on the {args.scale} scale's data (batch {s.batch_size}, "
        "one-cycle schedule, validation every epoch). `wall_vs_scratch`: summed training "
        "seconds (validation excluded) against scratch for the same arch; the distilled "
        "recipe's epochs come from one step of each timed side by side (`step_s_timed`). "
        f"Mean validation accuracy: "
        + ", ".join(f"{n} {v:.4f}" for n, v in means.items())
        + f"; best: **{best}**. Test accuracy is reported, never used to choose."
    )
    extra = {
        "supernet": str(supernet_path),
        "mean_val_acc": means,
        "best": best,
        "wall_s": round(time.time() - started, 1),
    }
    publish("final_training", args.scale, rows, extra, columns, notes, args.results)


if __name__ == "__main__":
    main()
