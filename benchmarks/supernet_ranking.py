"""Supernet ranking quality: does the supernet order archs as training them alone would?

    python benchmarks/supernet_ranking.py --scale cpu

For ``--archs`` archs (default 20), the supernet's estimate (validation accuracy of the
extracted sub-net after BatchNorm recalibration, as the search scores it) is compared
with the validation accuracy of the same arch trained from scratch with the benchmark
recipe: Kendall tau over the archs, how much of the estimates' spread is validation sampling
noise (the two halves of the validation split scored separately), and each estimate as a
fraction of the standalone
accuracy (the issue's goal: >= 90% for a supernet whose training costs <= 3x training
x1.0 alone). That cost is measured side by side here, not read from the two trainings'
logs (which ran at other times, on other loads): ``--cost-rounds`` interleaved rounds of
``--cost-steps`` training steps of the supernet recipe and of x1.0's standalone recipe,
same batch, same seed (so the supernet samples the same sub-nets each round); the ratio
of their summed step times is the ratio of the two full trainings' wall times, which run
the same epochs at the same batch. The archs: ShuffleNetV2 x0.5 and x1.0 (trained by
benchmarks/baselines.py), the picks search.py retrained, the archs of the last committed
ranking, then archs sampled from the space at evenly spaced FLOPs quantiles up to
``--max-mflops`` (default: 1.5x the FLOPs of x1.0, the region the searches' budgets
reach), trained here. Standalone figures whose checkpoints are gone come from
results/standalone_<scale>.json, where every standalone net used is recorded
(``--standalone-only`` trains and records them without the supernet). Shares ``--work``
with search.py (supernet, retrained nets). Writes results/supernet_ranking_<scale>.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cifar
import _standalone
from _common import SCALES, publish
from baselines import MODELS, train_baselines

from nas import ConfigError, preset
from nas.arch import ArchConfig
from nas.checkpoint import load_checkpoint, supernet_from_checkpoint
from nas.data import DataSplits, Split
from nas.latency import kendall_tau
from nas.models import count_flops
from nas.space import SearchSpace
from nas.train import FINAL, TrainConfig, evaluate, loader_for, subnet_model, train

POOL_PER_ARCH = 25  # random archs drawn per arch wanted (FLOPs counting costs ~0.15 s each)


def spread_archs(
    space: SearchSpace, count: int, max_flops: float, exclude: set[str], seed: int = 0
) -> list[ArchConfig]:
    """``count`` archs at evenly spaced FLOPs quantiles of random archs under ``max_flops``."""
    if count <= 0:
        return []
    rng = random.Random(seed)
    pool: dict[str, tuple[int, ArchConfig]] = {}
    for _ in range(POOL_PER_ARCH * count):
        arch = space.sample(rng)
        flops = count_flops(arch)
        if flops <= max_flops and arch.hash not in exclude:
            pool[arch.hash] = (flops, arch)
    ordered = [a for _, a in sorted(pool.values(), key=lambda p: p[0])]
    if len(ordered) < count:
        raise RuntimeError(f"only {len(ordered)} distinct archs under {max_flops / 1e6:.0f} MFLOPs")
    step = (len(ordered) - 1) / max(1, count - 1)
    return [ordered[round(i * step)] for i in range(count)]


def members(
    args: argparse.Namespace, work: Path, space: SearchSpace, bank: dict[str, dict[str, Any]]
) -> dict[str, tuple[str, ArchConfig]]:
    """The archs compared, by hash, with where each comes from: the two baselines, the
    picks of the finished measured-latency searches in ``work``, the archs of the last
    committed ranking (so a re-run compares the same nets), then spread archs up to
    ``--archs``."""
    chosen: dict[str, tuple[str, ArchConfig]] = {}
    for label, name in MODELS.items():
        if name in _cifar.BUDGET_BASELINES.values():
            arch = preset(name)
            chosen[arch.hash] = (label, arch)
    # Not every net under retrain/: the spread archs trained there must not change the
    # spread on a resume.
    for run in sorted((work / "searches").glob("*-measured")):
        if (run / "summary.json").exists():
            arch, _ = _cifar.chosen(run)
            if (work / "retrain" / arch.hash / FINAL["model"]).exists():
                chosen.setdefault(arch.hash, ("search pick", arch))
    last = args.results / f"supernet_ranking_{args.scale}.json"
    if last.exists():
        for row in json.loads(last.read_text())["rows"]:
            if len(chosen) >= args.archs:
                break
            net = bank.get(row["arch_hash"])
            arch = (
                ArchConfig.from_params(net["arch_params"])
                if net
                else _cifar.parse_short_name(row["arch"], space)
            )
            chosen.setdefault(arch.hash, (row["source"], arch))
    max_flops = _max_flops(args)
    for arch in spread_archs(space, args.archs - len(chosen), max_flops, set(chosen)):
        chosen[arch.hash] = ("spread", arch)
    return chosen


def halves(split: Split) -> tuple[Split, Split]:
    """The two halves of ``split``: alternate images of each class, in order."""
    picks: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    for c in split.labels.unique():
        members = (split.labels == c).nonzero().flatten()
        picks[0].append(members[0::2])
        picks[1].append(members[1::2])
    a, b = (torch.cat(p).sort().values for p in picks)
    return Split(split.images[a], split.labels[a]), Split(split.images[b], split.labels[b])


def estimate_noise(rows: list[dict[str, Any]]) -> dict[str, float]:
    """How much of the supernet estimates' spread across archs is validation sampling
    noise: each estimate's noise variance is var(half a - half b) / 4 (the whole split
    averages two independent halves), the archs' own variance what remains."""
    a = [r["supernet_half_a"] for r in rows]
    b = [r["supernet_half_b"] for r in rows]
    total = statistics.variance([r["supernet_val_acc"] for r in rows])
    noise = statistics.variance([x - y for x, y in zip(a, b, strict=True)]) / 4
    between = max(0.0, total - noise)
    return {
        "split_half_tau": kendall_tau(a, b),
        "noise_var": noise,
        "between_var": between,
        "reliability": between / total if total > 0 else 0.0,
    }


def _max_flops(args: argparse.Namespace) -> float:
    mflops = args.max_mflops or 1.5 * count_flops(preset(_cifar.BUDGET_BASELINES["x1.0"])) / 1e6
    return mflops * 1e6


def standalone(
    args: argparse.Namespace,
    work: Path,
    data: DataSplits,
    source: str,
    arch: ArchConfig,
    bank: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """``arch``'s standalone figures: from its checkpoint where one is here (the baselines
    script's, or one retrained in ``work``), else from the bank when its recipe is the
    current one, else trained now; recorded in the bank either way."""
    baselines_work = args.baselines_work or Path(f"runs/bench-baselines-{args.scale}")
    paths = [work / "retrain" / arch.hash / FINAL["model"]]
    if source in MODELS:
        paths.insert(0, baselines_work / MODELS[source] / FINAL["model"])
    path = next((p for p in paths if p.exists()), None)
    if path is None and arch.hash in bank:
        return {**bank[arch.hash], "from": f"bank ({bank[arch.hash]['date'][:10]})"}
    if path is None:
        if source in MODELS:
            path = train_baselines(args.scale, baselines_work, {source: MODELS[source]})[source]
        else:
            path = _cifar.retrain(args.scale, work, arch, data)
    metrics = load_checkpoint(path, kind="model")["metrics"]
    net = bank.get(arch.hash)
    if net is None or (net["val_acc"], net["test_acc"]) != (
        metrics["val_acc"],
        metrics["test_acc"],
    ):
        net = _standalone.record(args.results, args.scale, arch, metrics, source)
        bank[arch.hash] = net
    return {**net, "from": "checkpoint"}


def train_cost(
    scale: str,
    data: DataSplits,
    space: SearchSpace,
    rounds: int,
    steps: int,
    changes: dict[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Wall time of training the supernet relative to training x1.0 alone, measured side by
    side: ``rounds`` interleaved rounds of ``steps`` steps of each recipe (the scale's own
    steps per epoch where it has fewer), each round's seconds the sum of its step times
    (data loading, forward, backward, update; not setup or evaluation). ``changes`` to the
    supernet recipe: a variant's epochs scale the ratio (x1.0 trains the scale's epochs)."""
    s = SCALES[scale]
    changes = {**(changes or {})}
    epochs = changes.pop("epochs", s.epochs)
    steps = min(steps, s.steps_per_epoch or steps)
    x10 = preset(_cifar.BUDGET_BASELINES["x1.0"])
    subjects: dict[str, tuple[Any, Any]] = {
        "supernet": (space, s.supernet_recipe(**changes, epochs=1, steps_per_epoch=steps)),
        "x1.0": (x10, s.recipe(epochs=1, steps_per_epoch=steps)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in subjects}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, (subject, recipe) in subjects.items():
                metrics = train(
                    subject,
                    data,
                    recipe,
                    Path(tmp) / f"{name}-{r}",
                    device=device or s.device,
                    progress=False,
                    report_test=False,
                    log=lambda _msg: None,
                )
                seconds[name].append(metrics["train_seconds"])
    ratios = [
        a / b * epochs / s.epochs for a, b in zip(seconds["supernet"], seconds["x1.0"], strict=True)
    ]
    return {
        "cost_ratio": statistics.median(ratios),
        "cost_ratios": ratios,
        "cost_steps": steps,
        "cost_seconds": seconds,
    }


def main() -> None:
    parser = _cifar.argument_parser(__doc__, searches=False)
    parser.add_argument("--baselines-work", type=Path, help="default runs/bench-baselines-<scale>")
    parser.add_argument("--archs", type=int, default=20, help="archs compared (>= 3)")
    parser.add_argument("--max-mflops", type=float, help="largest sampled arch (MFLOPs)")
    parser.add_argument(
        "--standalone-only",
        action="store_true",
        help="train and record the standalone nets only (no supernet, no result file)",
    )
    parser.add_argument(
        "--train-only",
        action="store_true",
        help="train the supernet (and nothing else) and stop: several variants can train "
        "side by side, then be scored and timed one at a time",
    )
    parser.add_argument(
        "--cost-rounds", type=int, default=3, help="rounds of the training-cost measure"
    )
    parser.add_argument(
        "--cost-steps", type=int, default=30, help="training steps per subject and round"
    )
    parser.add_argument(
        "--device",
        help="train and score the supernet there instead of the scale's device (e.g. cuda "
        "at the cpu scale, against the cpu-scale standalone figures); the cost ratio is "
        "measured there too, and the result's name says where",
    )
    parser.add_argument(
        "--bn-batches",
        type=int,
        help="training batches re-estimating a sub-net's BatchNorm (default: the scale's)",
    )
    parser.add_argument(
        "--supernet-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the supernet recipe (a TrainConfig field, e.g. epochs=30 or "
        "grad_clip=5): a control trained into its own folder, results under its own name",
    )
    args = parser.parse_args()
    try:
        changes = recipe_changes(args.supernet_option, args.scale)
    except (ValueError, ConfigError) as exc:
        parser.error(f"--supernet-option: {exc}")
    if args.cost_rounds < 1 or args.cost_steps < 1:
        parser.error("--cost-rounds and --cost-steps must be >= 1")
    if args.bn_batches is not None and args.bn_batches < 1:
        parser.error("--bn-batches must be >= 1")
    if args.archs < 3:
        parser.error("--archs must be >= 3 for a rank correlation")
    started = time.time()
    work = _cifar.work_dir(args.scale, args.work)
    data = _cifar.data_of(args.scale)
    space = _cifar.space_for(args.scale, data)
    s = SCALES[args.scale]
    device = args.device or s.device
    if args.train_only:
        print(f"supernet in {_cifar.supernet(args.scale, work, data, device, **changes)}")
        return
    bank = _standalone.lookup(args.results, args.scale)
    chosen = members(args, work, space, bank)
    figures = {h: standalone(args, work, data, src, a, bank) for h, (src, a) in chosen.items()}
    if args.standalone_only:
        print(
            f"{len(figures)} standalone nets in {_standalone.bank_path(args.results, args.scale)}"
        )
        return
    bn_batches = args.bn_batches or s.bn_batches
    supernet_path = _cifar.supernet(args.scale, work, data, device, **changes)
    max_flops = _max_flops(args)

    supernet = supernet_from_checkpoint(load_checkpoint(supernet_path, kind="supernet"))
    rows: list[dict[str, Any]] = []
    for arch_hash, (source, arch) in chosen.items():
        net = figures[arch_hash]
        model = subnet_model(supernet, arch, data, bn_batches, s.score_batch, device=device)
        half_a, half_b = (
            evaluate(model, loader_for(h, data, arch, s.score_batch, device))
            for h in halves(data.val)
        )
        # the whole split's accuracy from its halves' counts: one pass over the images
        correct = round(half_a["acc"] * half_a["n"]) + round(half_b["acc"] * half_b["n"])
        estimate = correct / (half_a["n"] + half_b["n"])
        rows.append(
            {
                "arch": arch.short_name(),
                "arch_hash": arch_hash,
                "source": source,
                "mflops": count_flops(arch) / 1e6,
                "supernet_val_acc": estimate,
                "supernet_half_a": half_a["acc"],
                "supernet_half_b": half_b["acc"],
                "standalone_val_acc": net["val_acc"],
                "standalone_test_acc": net["test_acc"],
                "of_standalone": estimate / net["val_acc"],
                "standalone_from": net["from"],
            }
        )
    rows.sort(key=lambda r: r["mflops"])
    tau = kendall_tau(
        [r["supernet_val_acc"] for r in rows], [r["standalone_val_acc"] for r in rows]
    )
    tau_test = kendall_tau(
        [r["supernet_val_acc"] for r in rows], [r["standalone_test_acc"] for r in rows]
    )
    tau_flops = kendall_tau([r["mflops"] for r in rows], [r["standalone_val_acc"] for r in rows])
    # The same nets' test accuracy (10,000 other images) against their validation accuracy
    # (1,000 at the cpu scale): a reference for how far the validation figures' own
    # sampling noise lets even a near-perfect estimate agree with them.
    tau_ceiling = kendall_tau(
        [r["standalone_test_acc"] for r in rows], [r["standalone_val_acc"] for r in rows]
    )
    noise = estimate_noise(rows)
    fractions = [r["of_standalone"] for r in rows]
    fraction_mean, at_90 = statistics.mean(fractions), sum(f >= 0.9 for f in fractions)
    cost = train_cost(args.scale, data, space, args.cost_rounds, args.cost_steps, changes, device)
    columns = list(rows[0])
    tag = "-".join(f"{k}{v}" for k, v in sorted(changes.items()))
    sr = s.supernet_recipe(**changes)
    notes = (
        f"**Kendall tau, supernet estimate vs standalone validation accuracy: {tau:.3f}** over "
        f"{len(rows)} archs (vs standalone test accuracy: {tau_test:.3f}; FLOPs alone vs "
        f"standalone validation accuracy: {tau_flops:.3f}, the trivial ranking to beat; "
        f"the same nets' test accuracy vs their validation accuracy: {tau_ceiling:.3f}, what "
        "a near-perfect estimate scores against validation figures this noisy). "
        f"**The estimate is {noise['reliability']:.0%} signal**: of its variance across these "
        f"archs, validation sampling noise is {noise['noise_var']:.2g} and the rest, "
        f"{noise['between_var']:.2g}, is the archs' own difference (from the two halves of the "
        f"validation split, alternate images of each class, scored separately: Kendall tau "
        f"{noise['split_half_tau']:.3f} between them). "
        f"**Sub-nets straight from the supernet reach {fraction_mean:.0%} of "
        f"their standalone validation accuracy on average** (lowest {min(fractions):.0%}; "
        f"{at_90} of {len(rows)} at >= 90%), for a supernet whose "
        f"training costs **{cost['cost_ratio']:.2f}x** the wall time of training x1.0 alone "
        f"(measured side by side: {args.cost_rounds} interleaved rounds of "
        f"{cost['cost_steps']} steps each, round ratios "
        + ", ".join(f"{r:.2f}" for r in cost["cost_ratios"])
        + "). "
        f"Supernet: {sr.epochs} epochs {sr.strategy}, lr {sr.lr:g}, gradient clip "
        f"{sr.grad_clip}{'' if not changes else ' (changed from the shared recipe: ' + tag + ')'}"
        f"; trained, scored and timed on {device}; estimate after recalibrating "
        f"BatchNorm on {bn_batches} training batches. Standalone: {s.epochs} epochs, "
        f"batch {s.batch_size}, "
        f"lr {s.lr}; spread archs drawn at FLOPs quantiles up to {max_flops / 1e6:.0f} MFLOPs."
    )
    extra = {
        "kendall_tau": tau,
        "kendall_tau_test": tau_test,
        "kendall_tau_flops": tau_flops,
        "kendall_tau_val_test": tau_ceiling,
        **noise,
        "of_standalone_mean": fraction_mean,
        "of_standalone_min": min(fractions),
        "at_90pct": at_90,
        **cost,
        "work": str(work),
        "max_mflops": max_flops / 1e6,
        "wall_s": time.time() - started,
        "supernet_changes": changes,
        "supernet_path": str(supernet_path),
        "device": device,
        "bn_batches": bn_batches,
    }
    name = "supernet_ranking" + (f"-{tag}" if changes else "")
    name += "" if device == s.device else f"-{device}"
    name += "" if bn_batches == s.bn_batches else f"-bn{bn_batches}"
    publish(name, args.scale, rows, extra, columns, notes, args.results)


def recipe_changes(options: list[str], scale: str) -> dict[str, Any]:
    """``KEY=VALUE`` options as changes to the supernet recipe (values read as YAML
    scalars), checked by building the recipe."""
    changes: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"{option!r} is not KEY=VALUE with KEY a TrainConfig field")
        changes[key] = yaml.safe_load(value)
    SCALES[scale].supernet_recipe(**changes)  # raises on a bad value
    return changes


if __name__ == "__main__":
    main()
