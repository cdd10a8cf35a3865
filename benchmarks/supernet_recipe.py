"""Supernet recipe A/B: branch liveness (init scale, clipping, lr), training strategy and
weight layout (convs behind splits and shuffles matched to channels by id or by position).

    python benchmarks/supernet_recipe.py --scale cpu

Trains one short supernet per variant on the scale's data, same seed, and scores each as
the search does (validation accuracy of a sub-net after BatchNorm recalibration) on the
archs of the committed ranking benchmark (results/supernet_ranking_<scale>.json), whose
standalone validation accuracies were measured by training each arch alone: standalone
training never used the supernet, so those figures stand whatever the supernet's init.
Per variant: mean estimate, Kendall tau against standalone validation accuracy, the
largest sub-net's gradient norm at initialisation, and how many parameter tensors the
largest sub-net uses got an all-zero gradient at the end (dead ones), the supernet's
parameter count, and the time of one spos step measured side by side (the variants run
and those ``--time-with`` names, as freshly initialised supernets: a step's time depends on
the shapes, not the values), the steps interleaved on the same sub-nets and batch.

The control is the old init (every stride-1 branch's last BatchNorm scale at 0), given to
the trainer as initial weights; the trainer itself refuses a zero scale. Variants run a
fixed number of epochs chosen so that their wall time is comparable (a sandwich step runs
four sub-nets); the table records each one's training seconds. Resumable: finished
supernets and scores are kept in ``--work``. Writes results/supernet_recipe_<scale>.{json,md}.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cifar
from _common import SCALES, publish

from nas.arch import ArchConfig
from nas.checkpoint import load_checkpoint, space_of, supernet_from_checkpoint
from nas.io import write_json_atomic
from nas.latency import kendall_tau
from nas.models import BRANCH_SCALE, Supernet
from nas.space import SearchSpace
from nas.train import FINAL, LOG, STATE, subnet_accuracy, train

SCORES = "subnet_scores.json"
# name: (recipe changes, branch scale at init (0: the old dead init), epochs)
VARIANTS: dict[str, tuple[dict[str, Any], float, int]] = {
    "dead branches (old), spos lr 0.02": ({"strategy": "spos", "lr": 0.02}, 0.0, 3),
    "scale 0.1, spos lr 0.02": ({"strategy": "spos", "lr": 0.02}, 0.1, 3),
    "scale 0.1, spos lr 0.1 clip 1": ({"strategy": "spos", "lr": 0.1, "grad_clip": 1.0}, 0.1, 3),
    "scale 1, spos lr 0.1 clip 1": ({"strategy": "spos", "lr": 0.1, "grad_clip": 1.0}, 1.0, 3),
    "scale 0.1, sandwich lr 0.1 clip 1": (
        {"strategy": "sandwich", "lr": 0.1, "grad_clip": 1.0},
        0.1,
        1,
    ),
    "scale 0.1, spos lr 0.1 clip 1, channels by position": (
        {"strategy": "spos", "lr": 0.1, "grad_clip": 1.0, "channel_match": "position"},
        0.1,
        3,
    ),
}
STEP_ROUNDS, STEPS_PER_ROUND = 5, 4


def reference_archs(scale: str, space: SearchSpace, results: Path) -> list[dict[str, Any]]:
    """The ranking benchmark's archs with their standalone validation accuracy."""
    path = results / f"supernet_ranking_{scale}.json"
    if not path.exists():  # tiny: no committed ranking; score the extremes and a sample
        archs = [space.min_arch, space.max_arch, space.sample(0)]
        return [{"arch": a, "standalone_val_acc": None} for a in archs]
    rows = json.loads(path.read_text())["rows"]
    out = []
    for row in rows:
        arch = _cifar.parse_short_name(row["arch"], space)
        if arch.hash != row["arch_hash"]:
            raise RuntimeError(f"{row['arch']}: hash {arch.hash} != {row['arch_hash']}")
        out.append({"arch": arch, "standalone_val_acc": row["standalone_val_acc"]})
    return out


def dead_tensors(net: Supernet, arch: ArchConfig, x: torch.Tensor, y: torch.Tensor) -> int:
    """Parameter tensors of ``arch``'s sub-net whose gradient is all zero on one batch."""
    model = net.extract(arch).train()
    F.cross_entropy(model(x), y).backward()
    return sum(1 for p in model.parameters() if p.grad is None or not p.grad.any())


def initial_supernet(
    space: SearchSpace, scale: float, seed: int = 0, channel_match: str = "id"
) -> Supernet:
    """A fresh supernet as ``train`` seeds it, branches at ``scale`` (0: the old dead init,
    which ``Supernet`` itself refuses)."""
    torch.manual_seed(seed)
    net = Supernet(space, branch_scale=scale or BRANCH_SCALE, channel_match=channel_match)
    if scale == 0:
        for bn in net.branch_norms():
            torch.nn.init.zeros_(bn.weight)
    return net


def grad_norm_at_init(
    space: SearchSpace, scale: float, x: torch.Tensor, y: torch.Tensor, channel_match: str
) -> float:
    net = initial_supernet(space, scale, channel_match=channel_match).train()
    F.cross_entropy(net(x, space.max_arch), y).backward()
    return float(torch.nn.utils.clip_grad_norm_(net.parameters(), float("inf")))


def step_seconds(
    nets: dict[str, Supernet],
    space: SearchSpace,
    batch: int,
    rounds: int = STEP_ROUNDS,
    per_round: int = STEPS_PER_ROUND,
) -> dict[str, float]:
    """Median seconds of one spos step (forward, backward, clip, SGD with momentum and
    weight decay) per net, the nets' steps interleaved round by round on the same sub-nets
    and the same random batch, so machine drift hits every net alike."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, space.max_arch.in_channels, 32, 32, generator=gen)
    y = torch.randint(0, space.max_arch.num_classes, (batch,), generator=gen)
    archs = [space.sample(i) for i in range(rounds * per_round)]
    optimizers = {
        name: torch.optim.SGD(
            net.parameters(), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        for name, net in nets.items()
    }
    times: dict[str, list[float]] = {name: [] for name in nets}
    for r in range(rounds + 1):  # round 0 warms up
        for name, net in nets.items():
            net.train()
            for arch in archs[r % rounds :: rounds][:per_round]:
                start = time.perf_counter()
                optimizers[name].zero_grad(set_to_none=True)
                F.cross_entropy(net(x, arch), y).backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizers[name].step()
                if r:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = _cifar.argument_parser(__doc__, searches=False)
    parser.add_argument("--only", help="run only the variants whose name contains this")
    parser.add_argument(
        "--epochs", type=int, help="train every variant this many epochs (a longer run)"
    )
    parser.add_argument(
        "--time-with", help="also time the step of the variants whose name contains this"
    )
    parser.add_argument("--name", help="result file name (default supernet_recipe[_<N>ep])")
    args = parser.parse_args()
    suffix = f"-{args.epochs}ep" if args.epochs else ""
    args.work = args.work or Path(f"runs/bench-recipe-{args.scale}{suffix}")
    started = time.time()
    s = SCALES[args.scale]
    data = _cifar.data_of(args.scale)
    space = _cifar.space_for(args.scale, data)
    refs = reference_archs(args.scale, space, args.results)
    probe = torch.Generator().manual_seed(0)
    x = torch.randn(16, space.max_arch.in_channels, 32, 32, generator=probe)
    y = torch.randint(0, space.max_arch.num_classes, (16,), generator=probe)
    rows: list[dict[str, Any]] = []
    trained: dict[str, Supernet] = {}
    for name, (changes, scale, epochs) in VARIANTS.items():
        if args.only and args.only not in name:
            continue
        epochs = args.epochs or (1 if args.scale == "tiny" else epochs)
        recipe = s.recipe(
            epochs=epochs, eval_every=0, branch_scale=scale or BRANCH_SCALE, **changes
        )
        out = args.work / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        if not (out / FINAL["supernet"]).exists():
            print(f"== {name}: {epochs} epochs into {out}", flush=True)
            (out / SCORES).unlink(missing_ok=True)
            # the dead control starts from zeroed branches; the others from train's own init
            initial = initial_supernet(space, 0, recipe.seed).state_dict() if scale == 0 else None
            train(
                space,
                data,
                recipe,
                out,
                device=s.device,
                resume=(out / STATE).exists(),
                initial=initial,
            )
        payload = load_checkpoint(out / FINAL["supernet"], kind="supernet")
        if scale == 0:  # the dead control, which supernet_from_checkpoint refuses
            net = Supernet(space_of(payload)).eval()
            net.load_state_dict(payload["state_dict"])
        else:
            net = supernet_from_checkpoint(payload)
        trained[name] = net
        kept = json.loads((out / SCORES).read_text()) if (out / SCORES).exists() else {}
        for ref in refs:
            arch = ref["arch"]
            if arch.hash not in kept:
                kept[arch.hash] = subnet_accuracy(
                    net, arch, data, s.bn_batches, s.score_batch, device=s.device
                )
                write_json_atomic(out / SCORES, kept)
        estimates = [kept[r["arch"].hash]["acc"] for r in refs]
        standalone = [r["standalone_val_acc"] for r in refs]
        tau = kendall_tau(estimates, standalone) if None not in standalone else None
        rows.append(
            {
                "variant": name,
                "steps": json.loads((out / LOG).read_text().splitlines()[-1])["step"],
                "train_s": round(payload["metrics"]["train_seconds"], 1),
                "shared_params_M": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
                "grad_norm_init_max": round(
                    grad_norm_at_init(space, scale, x, y, recipe.channel_match), 1
                ),
                "dead_tensors_max_after": dead_tensors(net, space.max_arch, x, y),
                "mean_val_acc": statistics.fmean(estimates),
                "min_val_acc": min(estimates),
                "max_val_acc": max(estimates),
                "kendall_tau": tau,
            }
        )
        print(rows[-1], flush=True)
    timed = {
        name: initial_supernet(
            space, scale or BRANCH_SCALE, channel_match=changes.get("channel_match", "id")
        )
        for name, (changes, scale, _) in VARIANTS.items()
        if name in trained or (args.time_with and args.time_with in name)
    }
    rounds = (1, 1) if args.scale == "tiny" else (STEP_ROUNDS, STEPS_PER_ROUND)  # CI smoke
    steps = step_seconds(timed, space, s.batch_size, *rounds)
    for row in rows:
        row["step_s_side_by_side"] = round(steps[row["variant"]], 3)
    notes = (
        f"Data: the {args.scale} scale's training split, batch {s.batch_size}, one-cycle "
        "schedule over the steps shown (whole epochs), seed 0. Scored on "
        f"{len(refs)} archs (the ranking benchmark's) after recalibrating BatchNorm on "
        f"{s.bn_batches} training batches; `kendall_tau`: estimate vs the committed "
        "standalone validation accuracy of the same archs. `grad_norm_init_max`: gradient "
        "norm of the largest sub-net at initialisation (16 random images); "
        "`dead_tensors_max_after`: parameter tensors of the largest sub-net with an "
        "all-zero gradient after training. `shared_params_M`: parameters the supernet "
        "holds (and SGD updates every step). `step_s_side_by_side`: median seconds of one "
        f"spos step at batch {s.batch_size}, the variants interleaved over "
        f"{rounds[0]} rounds of {rounds[1]} steps on the same sub-nets, freshly "
        "initialised supernets (compare these, not train_s, which other load can inflate): "
        + ", ".join(f"{name} {t:.3f} s" for name, t in steps.items())
        + "."
    )
    extra = {
        "work": str(args.work),
        "wall_s": time.time() - started,
        "step_s_side_by_side": {name: round(t, 3) for name, t in steps.items()},
    }
    result_name = args.name or "supernet_recipe" + suffix.replace("-", "_")
    publish(result_name, args.scale, rows, extra, list(rows[0]), notes, args.results)


if __name__ == "__main__":
    main()
