"""Weight-sharing ablation: what does sharing each axis of the space cost a supernet?

    python benchmarks/supernet_sharing.py --scale cpu

Trains short supernets with the shared recipe, one per variant of the scale's search space,
with the same data, recipe and seed. In each variant some axes stay searchable and the
rest are fixed to a reference arch (the choices nearest ShuffleNetV2 x1.0, at the
smallest depth so the runs stay short):

    one arch         nothing shared: the reference trained alone as a standalone
                     ShuffleNetV2 with its own init and the standalone recipe (the ceiling)
    one-arch supernet  nothing shared either: a supernet over the reference alone, with
                     the supernet's init, layout and recipe (the control that separates
                     what the supernet's own machinery costs from what sharing costs)
    widths           per-stage widths shared
    split ratios     per-stage split ratios shared
    widths + ratios  both
    depth + kernels  repeats and depthwise kernels shared (widths and ratios fixed)

Each supernet is then scored as the search scores it: validation accuracy of
``--subnets`` sub-nets drawn from its variant (the same draws for every run of the
script), each after BatchNorm recalibration. The gap to "one arch" is what sharing
that axis costs at this training length. Resumable: finished supernets and sub-net
scores are kept in ``--work``. Writes results/supernet_sharing_<scale>.{json,md}.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cifar
from _common import SCALES, Scale, publish

from nas import preset
from nas.arch import STAGE_NAMES, ArchConfig
from nas.checkpoint import load_checkpoint, supernet_from_checkpoint
from nas.data import DataSplits
from nas.io import write_json_atomic
from nas.space import SearchSpace
from nas.train import FINAL, LOG, STATE, TrainConfig, subnet_accuracy, train

SCORES = "subnet_scores_bn{}.json"  # per variant and recalibration: val accuracy by arch hash
EPOCHS = {"cpu": 3, "gpu": 5, "tiny": 1}
VARIANTS = {
    "one arch": (),
    "one-arch supernet": (),
    "widths": ("width",),
    "split ratios": ("split_ratio",),
    "widths + ratios": ("width", "split_ratio"),
    "depth + kernels": ("repeats", "kernel"),
    "depth": ("repeats",),
    "kernels": ("kernel",),
}
# Sub-nets are scored twice, after BatchNorm recalibration on the scale's batches and on
# this many: a cost that shrinks with more batches is the statistics', not the weights'.
# (tiny, the CI smoke scale: 4, enough to exercise the second scoring)
WIDE_BN_BATCHES = {"cpu": 32, "gpu": 32, "tiny": 4}


def reference_values(space: SearchSpace) -> dict[str, Any]:
    """Every searchable axis at the choice nearest ShuffleNetV2 x1.0 (repeats: smallest)."""
    x1 = preset(_cifar.BUDGET_BASELINES["x1.0"]).to_params()
    values: dict[str, Any] = {}
    for key, choices in space.searchable.items():
        if key.endswith(".repeats"):
            values[key] = min(choices)
        else:
            values[key] = min(choices, key=lambda c, k=key: abs(c - x1[k]))  # type: ignore[misc]
    return values


def variant(space: SearchSpace, reference: dict[str, Any], shared: tuple[str, ...]) -> SearchSpace:
    """``space`` with every axis but the per-stage ones in ``shared`` fixed to ``reference``."""
    fixed = {
        key: value
        for key, value in reference.items()
        if not (key.startswith(STAGE_NAMES) and key.split(".", 1)[1] in shared)
    }
    return space.with_fixed(**fixed)


def _scores(out: Path, bn_batches: int) -> dict[str, dict[str, float]]:
    """Sub-net scores kept from an earlier run on this supernet (same recalibration)."""
    path = out / SCORES.format(bn_batches)
    if not path.exists():
        return {}
    kept = json.loads(path.read_text())
    return kept["scores"] if kept.get("bn_batches") == bn_batches else {}


def _save_scores(out: Path, bn_batches: int, scores: dict[str, dict[str, float]]) -> None:
    write_json_atomic(out / SCORES.format(bn_batches), {"bn_batches": bn_batches, "scores": scores})


def _standalone(
    arch: ArchConfig, data: DataSplits, s: Scale, epochs: int, out: Path
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The reference arch trained alone as a ``ShuffleNetV2`` (the standalone recipe at
    the ablation's epochs), scored on the validation split."""
    if not (out / FINAL["model"]).exists():
        print(f"== one arch: training {arch.short_name()} alone into {out}")
        recipe = s.recipe(epochs=epochs, eval_every=epochs)
        train(arch, data, recipe, out, device=s.device, resume=(out / STATE).exists())
    payload = load_checkpoint(out / FINAL["model"], kind="model")
    return payload, {arch.hash: {"acc": payload["metrics"]["val_acc"]}}


def _supernet_scores(
    sub: SearchSpace,
    archs: dict[str, ArchConfig],
    data: DataSplits,
    recipe: TrainConfig,
    s: Scale,
    out: Path,
    wide_bn: int,
) -> tuple[dict[str, Any], dict[int, dict[str, dict[str, float]]]]:
    """A supernet over ``sub`` (trained once) and its scores of ``archs``, by the number of
    batches that recalibrated BatchNorm."""
    if not (out / FINAL["supernet"]).exists():
        print(f"== training a supernet over {sub.size} archs into {out}")
        for old in out.glob(SCORES.format("*")):  # scores of an earlier supernet
            old.unlink()
        train(sub, data, recipe, out, device=s.device, resume=(out / STATE).exists())
    payload = load_checkpoint(out / FINAL["supernet"], kind="supernet")
    net = supernet_from_checkpoint(payload)
    by_bn: dict[int, dict[str, dict[str, float]]] = {}
    for bn in (s.bn_batches, wide_bn):
        scores = by_bn[bn] = _scores(out, bn)
        for arch_hash, arch in archs.items():
            if arch_hash not in scores:
                scores[arch_hash] = subnet_accuracy(
                    net, arch, data, bn, s.score_batch, device=s.device
                )
                _save_scores(out, bn, scores)
    return payload, by_bn


def main() -> None:
    parser = _cifar.argument_parser(__doc__, searches=False)
    parser.add_argument("--subnets", type=int, default=8, help="sub-nets scored per variant")
    parser.add_argument(
        "--own-ceiling",
        action="append",
        default=[],
        choices=[v for v in VARIANTS if v not in ("one arch", "one-arch supernet")],
        help="also train each scored sub-net of this variant alone (standalone recipe, same "
        "epochs): its cost against the same archs' own accuracy, not the reference's "
        "(a deeper or narrower sub-net may train slower alone too); repeatable",
    )
    args = parser.parse_args()
    args.work = args.work or Path(f"runs/bench-sharing-{args.scale}")
    started = time.time()
    s = SCALES[args.scale]
    data = _cifar.data_of(args.scale)
    space = _cifar.space_for(args.scale, data)
    recipe = s.supernet_recipe(epochs=EPOCHS[args.scale])
    wide_bn = WIDE_BN_BATCHES[args.scale]
    reference = reference_values(space)
    rows: list[dict[str, Any]] = []
    own: dict[str, list[dict[str, Any]]] = {}
    for name, shared in VARIANTS.items():
        sub = variant(space, reference, shared)
        out = args.work / name.replace(" + ", "-").replace(" ", "-").replace(",", "")
        rng = random.Random(0)
        archs = {a.hash: a for a in (sub.sample(rng) for _ in range(args.subnets))}
        if name == "one arch":  # the ceiling: the reference arch as a standalone net
            payload, scores = _standalone(sub.max_arch, data, s, recipe.epochs, out)
            wide: list[float] | None = None
        else:
            payload, by_bn = _supernet_scores(sub, archs, data, recipe, s, out, wide_bn)
            scores = by_bn[s.bn_batches]
            wide = [by_bn[wide_bn][h]["acc"] for h in archs]
        last_epoch = json.loads((out / LOG).read_text().splitlines()[-1])
        accs = [scores[h]["acc"] for h in archs]
        mean = statistics.fmean(accs)
        own_ceiling: float | None = None
        if name in args.own_ceiling:
            alone = [
                _standalone(a, data, s, recipe.epochs, out / "standalone" / h)[1][h]["acc"]
                for h, a in archs.items()
            ]
            own_ceiling = statistics.fmean(alone)
            own[name] = [
                {"arch": a.short_name(), "supernet_val_acc": acc, "standalone_val_acc": acc_alone}
                for a, acc, acc_alone in zip(archs.values(), accs, alone, strict=True)
            ]
        rows.append(
            {
                "variant": name,
                "archs_in_space": sub.size,
                "subnets_scored": len(accs),
                "mean_val_acc": mean,
                "min_val_acc": min(accs),
                "max_val_acc": max(accs),
                f"mean_val_acc_bn{wide_bn}": statistics.fmean(wide) if wide else None,
                "final_train_acc": last_epoch["train_acc"],
                "train_s": payload["metrics"]["train_seconds"],
                "own_ceiling_val_acc": own_ceiling,
                "own_cost_points": None if own_ceiling is None else 100 * (own_ceiling - mean),
            }
        )
        print(
            f"{name}: mean sub-net val acc {rows[-1]['mean_val_acc']:.3f} over {len(accs)} "
            f"(final train acc {rows[-1]['final_train_acc']:.3f})"
        )
    ceiling = rows[0]["mean_val_acc"]
    for row in rows:
        row["cost_points"] = 100 * (ceiling - row["mean_val_acc"])
    notes = (
        f"Each supernet: {recipe.epochs} epochs {recipe.strategy}, batch {recipe.batch_size}, lr "
        f"{recipe.lr}, seed {recipe.seed}; sub-nets scored after recalibrating BatchNorm on "
        f"{s.bn_batches} training batches of {s.score_batch} (`mean_val_acc_bn{wide_bn}`: the same "
        f"sub-nets after recalibrating on {wide_bn}). One arch: the reference trained alone as a "
        f"standalone ShuffleNetV2 (its own init, lr {s.lr}, no clipping, same epochs). "
        "`cost_points`: mean validation accuracy below "
        "the reference trained alone; `own_cost_points` (variants given to --own-ceiling): "
        "below the same sub-nets each trained alone (`own_ceiling_val_acc`), the ceiling "
        "that separates what sharing costs from what the sampled archs' own shape costs at "
        "this length. Fixed axes at the reference: "
        + ", ".join(f"{k} {v}" for k, v in reference.items())
        + "."
    )
    extra = {
        "epochs": recipe.epochs,
        "reference": reference,
        "own_ceiling": own,
        "work": str(args.work),
        "wall_s": time.time() - started,
    }
    publish("supernet_sharing", args.scale, rows, extra, list(rows[0]), notes, args.results)


if __name__ == "__main__":
    main()
