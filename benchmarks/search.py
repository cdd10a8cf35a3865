"""Searched archs against hand-designed ShuffleNetV2 at equal measured latency.

    python benchmarks/search.py --scale cpu

1. Budgets: ShuffleNetV2 x0.5 and x1.0 (CIFAR stem) measured on ``cpu-torch-1t`` and
   ``cpu-ort-1t`` (median of 3 passes).
2. One supernet for the scale (single-path sampling, the scale's data and epochs).
3. One search per target and budget (Optuna, measured latency on that target); the pick of
   each is the front arch with the best supernet validation accuracy.
4. Each pick retrained from scratch with the baselines' recipe (same data, same epochs);
   a pick that is a baseline's own arch is that baseline.
5. Baselines (trained by benchmarks/baselines.py, or here if missing) and picks measured
   side by side on each target, rounds alternating; test accuracy compared at equal or
   lower measured latency. Goal from the issue: >= +1 point over x0.5 and over x1.0.

Selection uses validation accuracy only (carved from training images); test accuracy is
measured once per trained net. Steps are kept in ``--work`` and resumed when interrupted.
Writes results/search_<scale>.{json,md}.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cifar
from _common import SCALES, add_targets_argument, measure_checkpoints, publish
from baselines import MODELS, train_baselines

from nas.checkpoint import arch_of, load_checkpoint


def main() -> None:
    parser = _cifar.argument_parser(__doc__)
    parser.add_argument("--baselines-work", type=Path, help="default runs/bench-baselines-<scale>")
    parser.add_argument("--rounds", type=int, default=7, help="latency rounds per net and target")
    add_targets_argument(parser)
    args = parser.parse_args()
    started = time.time()
    work, trials, data, searches, supernet = _cifar.prepare(args)
    picks = {}
    for case in searches:
        run = _cifar.search(args.scale, work, case, supernet, trials, data)
        picks[case] = _cifar.chosen(run)
    wanted = {k: v for k, v in MODELS.items() if v in _cifar.BUDGET_BASELINES.values()}
    baselines = train_baselines(
        args.scale, args.baselines_work or Path(f"runs/bench-baselines-{args.scale}"), wanted
    )
    # A pick that is a baseline's own arch is that baseline (same recipe, same seed).
    as_trained = {arch_of(load_checkpoint(p, kind="model")).hash: p for p in baselines.values()}
    retrained = {
        c: as_trained.get(arch.hash) or _cifar.retrain(args.scale, work, arch, data)
        for c, (arch, _) in picks.items()
    }
    label_of = {name: label for label, name in MODELS.items()}

    subjects = {label: path for label, path in baselines.items()}
    subjects.update({f"pick {a.hash}": retrained[c] for c, (a, _) in picks.items()})
    samples = measure_checkpoints(
        subjects,
        args.targets,
        args.rounds,
    )

    # the budget baselines as measured before the searches (budgets.json, not re-measured)
    before = _cifar.budgets(work, args.targets)
    rows = []
    for case, (arch, front_row) in picks.items():
        base_label = label_of[_cifar.BUDGET_BASELINES[case.baseline]]
        base = load_checkpoint(baselines[base_label], kind="model")["metrics"]
        mine = load_checkpoint(retrained[case], kind="model")["metrics"]
        pick_ms = samples[(case.target, f"pick {arch.hash}")]
        base_ms = samples[(case.target, base_label)]
        ratios = [p / b for p, b in zip(pick_ms, base_ms, strict=True)]
        gain = 100 * (mine["test_acc"] - base["test_acc"])
        ratio = statistics.median(ratios)
        rows.append(
            {
                "target": Path(case.target).stem,
                "baseline": base_label,
                "budget_ms": case.budget_ms,
                "baseline_ms": statistics.median(base_ms),
                # the baseline measured before the searches over the same net now; 1.0:
                # the same latency
                "budget_vs_baseline": before[case.target][case.baseline]
                / statistics.median(base_ms),
                "baseline_test_acc": base["test_acc"],
                "pick": arch.short_name(),
                "pick_hash": arch.hash,
                "pick_source": "baseline" if arch.hash in as_trained else "retrained",
                "pick_supernet_val_acc": front_row["val_acc"],
                "pick_val_acc": mine["val_acc"],
                "pick_test_acc": mine["test_acc"],
                "pick_ms": statistics.median(pick_ms),
                "latency_ratio": ratio,
                "latency_ratio_min": min(ratios),
                "latency_ratio_max": max(ratios),
                "gain_points": gain,
                "goal_met": bool(gain >= 1.0 and ratio <= 1.0),
                "pick_mflops": front_row["flops"] / 1e6,
            }
        )
    columns = [
        "target",
        "baseline",
        "baseline_ms",
        "budget_vs_baseline",
        "baseline_test_acc",
        "pick",
        "pick_ms",
        "latency_ratio",
        "pick_supernet_val_acc",
        "pick_val_acc",
        "pick_test_acc",
        "gain_points",
        "goal_met",
    ]
    s = SCALES[args.scale]
    sr = s.supernet_recipe()
    notes = (
        f"One supernet ({s.epochs} epochs, {sr.strategy}, lr {sr.lr:g}), "
        f"{trials} Optuna trials per search, budget = the baseline's latency measured on that "
        "target before the search. pick: the front arch with the best supernet validation "
        f"accuracy, retrained from scratch with the baselines' recipe ({s.epochs} epochs, "
        f"batch {s.batch_size}, lr {s.lr}). Latency: batch 1, median over {args.rounds} "
        "rounds, nets alternating within a round, after all training; latency_ratio: pick / "
        "baseline within a round, median over rounds. gain_points: test accuracy "
        "difference (points); goal: >= +1 at a latency ratio <= 1. budget_vs_baseline: "
        "the baseline's latency measured before the searches (the budget, less the scale's "
        f"slack x{s.budget_slack:g}) over its latency in this comparison round; away from 1 "
        "the search ran at a budget that its baseline no longer has (issue 25: within 5%)."
    )
    extra = {
        "work": str(work),
        "trials": trials,
        "budgets_ms": before,
        "data": s.data.to_dict(),
        "supernet_recipe": sr.to_dict(),
        "recipe": s.recipe().to_dict(),
        "rounds": args.rounds,
        "samples": {f"{t}/{m}": v for (t, m), v in samples.items()},
        "picks": {c.name: row for c, (_, row) in picks.items()},
        "wall_s": time.time() - started,
    }
    publish("search", args.scale, rows, extra, columns, notes, args.results)


if __name__ == "__main__":
    main()
