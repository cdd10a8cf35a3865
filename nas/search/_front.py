"""The final front: every candidate near the budget measured end to end, then the Pareto
set of those measured within it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import optuna
from tqdm.auto import tqdm

from nas.latency import LatencyMeter
from nas.search._evaluator import PROXIES, Evaluation
from nas.search._objective import complete_trials
from nas.search._pareto import pareto_front
from nas.search._prepare import SearchContext

FINAL_PASSES = 3  # every arch on the final front: median of this many measurements


@dataclass
class FrontEntry:
    trial: int
    evaluation: Evaluation
    latency_ms: float
    latency_p90_ms: float
    passes: list[float]


def final_front(
    ctx: SearchContext, study: optuna.Study, meter: LatencyMeter, budget: float
) -> list[FrontEntry]:
    """Every candidate measured end to end (median of several passes); the front is the
    Pareto set of those within the latency budget by measurement."""
    trials = [t for t in complete_trials(study) if "val_acc" in t.user_attrs]
    o = ctx.options
    slack = PROXIES[o.proxy].slack  # a proxy may be off near the budget
    near = [t for t in trials if t.values[1] <= budget * slack]
    points = [(t.values[0], t.values[1]) for t in near]
    candidates = [near[i] for i in pareto_front(points)]
    entries = []
    for t in tqdm(candidates, desc="measure front", unit="arch", disable=not o.progress):
        ev = Evaluation.from_attrs(t.user_attrs, t.values[1])
        runs = [meter.measure_arch(ev.arch, repeat=p).stats for p in range(FINAL_PASSES)]
        medians = [s.median_ms for s in runs]
        entries.append(
            FrontEntry(
                t.number,
                ev,
                float(np.median(medians)),
                float(np.median([s.p90_ms for s in runs])),
                medians,
            )
        )
    feasible = [e for e in entries if e.latency_ms <= o.latency_budget_ms]
    dropped = len(entries) - len(feasible)
    if dropped:
        ctx.extra["dropped_over_budget"] = dropped
        ctx.log(
            f"{dropped} of {len(entries)} front candidates measured over the budget and "
            "were dropped"
        )
    keep = pareto_front([(e.evaluation.val_acc, e.latency_ms) for e in feasible])
    return [feasible[i] for i in keep]
