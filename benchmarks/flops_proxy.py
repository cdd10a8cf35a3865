"""Measured latency against the FLOPs proxy: the same search, two latency models.

    python benchmarks/flops_proxy.py --scale cpu

For each CPU target and budget (the measured latency of ShuffleNetV2 x0.5 and x1.0 on
that target), the search of benchmarks/search.py (measured latency) is compared with the
same search run with ``--proxy flops`` (budget: the FLOPs of the largest arch measured
within the latency budget), on the same supernet, trials and seed. Both final fronts are
measured on the target, so they are compared on measured latency: hypervolume (accuracy x
ms up to the budget) and each front's pick. FLOPs misranking: over every arch the
measured search evaluated (each measured on the target), the Kendall tau between FLOPs
and latency and the pairs FLOPs orders the wrong way round by the widest margin.
Shares ``--work`` with search.py (supernet, budgets, searches). Writes
results/flops_proxy_<scale>.{json,md}.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cifar
from _common import add_targets_argument, publish

from nas.latency import kendall_tau
from nas.search import hypervolume

MISRANKED_SHOWN = 5


def misranked(trials: pd.DataFrame, shown: int = MISRANKED_SHOWN) -> list[dict[str, Any]]:
    """Pairs (a, b) with fewer FLOPs in a but a longer measured latency, widest first.

    The margin is how much slower the arch with fewer FLOPs is (latency ratio).
    """
    rows = trials.dropna(subset=["latency_ms", "flops"]).drop_duplicates("arch_hash")
    records = rows.to_dict("records")
    pairs = []
    for a in records:
        for b in records:
            if a["flops"] < b["flops"] and a["latency_ms"] > b["latency_ms"]:
                pairs.append(
                    {
                        "fewer_flops": a["arch_hash"],
                        "fewer_mflops": a["flops"] / 1e6,
                        "its_ms": a["latency_ms"],
                        "more_flops": b["arch_hash"],
                        "more_mflops": b["flops"] / 1e6,
                        "their_ms": b["latency_ms"],
                        "slower_by": a["latency_ms"] / b["latency_ms"],
                    }
                )
    pairs.sort(key=lambda p: -p["slower_by"])
    return pairs[:shown]


def front_summary(run: Path, budget_ms: float) -> dict[str, Any]:
    rows = _cifar.front(run)
    points = list(zip(rows["val_acc"], rows["latency_ms"], strict=True))
    best = rows.sort_values(["val_acc", "latency_ms"], ascending=[False, True]).head(1)
    return {
        "front_size": len(rows),
        "hypervolume": hypervolume(points, budget_ms),
        "best_val_acc": float(best["val_acc"].iloc[0]) if len(best) else None,
        "best_ms": float(best["latency_ms"].iloc[0]) if len(best) else None,
        "best": str(best["name"].iloc[0]) if len(best) else None,
    }


def main() -> None:
    parser = _cifar.argument_parser(__doc__)
    add_targets_argument(parser)
    args = parser.parse_args()
    started = time.time()
    work, trials, data, measured_cases, supernet = _cifar.prepare(args)

    rows: list[dict[str, Any]] = []
    details: dict[str, dict[str, Any]] = {}
    for measured in measured_cases:
        proxy = _cifar.SearchCase(measured.target, measured.baseline, "flops", measured.budget_ms)
        runs = {
            c.proxy: _cifar.search(args.scale, work, c, supernet, trials, data)
            for c in (measured, proxy)
        }
        evaluated = _cifar.trials(runs["measured"])
        timed = evaluated.dropna(subset=["latency_ms", "flops"])
        tau = kendall_tau(timed["flops"], timed["latency_ms"]) if len(timed) > 1 else None
        pairs = misranked(evaluated)
        for name, run in runs.items():
            rows.append(
                {
                    "target": Path(measured.target).stem,
                    "budget": f"{measured.baseline} ({measured.budget_ms:.2f} ms)",
                    "latency_model": name,
                    **front_summary(run, measured.budget_ms),
                    "flops_latency_tau": tau,
                    "archs_timed": len(timed),
                }
            )
        details[measured.name] = {"misranked": pairs, "runs": {k: str(v) for k, v in runs.items()}}
    columns = [
        "target",
        "budget",
        "latency_model",
        "front_size",
        "hypervolume",
        "best_val_acc",
        "best_ms",
        "best",
        "flops_latency_tau",
    ]
    lines = []
    for name, d in details.items():
        for p in d["misranked"]:
            lines.append(
                f"| {name} | {p['fewer_flops']} ({p['fewer_mflops']:.1f} M) | {p['its_ms']:.2f} | "
                f"{p['more_flops']} ({p['more_mflops']:.1f} M) | {p['their_ms']:.2f} | "
                f"{p['slower_by']:.2f}x |"
            )
    notes = (
        "Both fronts measured on the target (median of 3 passes); hypervolume in accuracy x ms "
        "from (0, budget). best: the front arch with the best supernet validation accuracy. "
        "flops_latency_tau: Kendall tau of FLOPs vs measured latency over every arch the "
        "measured search evaluated.\n\nArchs FLOPs ranks the wrong way round (fewer FLOPs, "
        "yet slower), widest margins:\n\n| search | fewer FLOPs | ms | more FLOPs | ms | "
        "slower by |\n| --- | --- | --- | --- | --- | --- |\n" + "\n".join(lines)
    )
    extra = {
        "work": str(work),
        "trials": trials,
        "details": details,
        "wall_s": time.time() - started,
    }
    publish("flops_proxy", args.scale, rows, extra, columns, notes, args.results)


if __name__ == "__main__":
    main()
