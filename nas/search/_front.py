"""The final front: every candidate near the budget measured end to end, then the Pareto
set of those measured within it."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from tqdm.auto import tqdm

from nas.latency import LatencyMeter, PassSummary, measure_passes
from nas.search._evaluator import PROXIES, Evaluation
from nas.search._objective import complete_trials
from nas.search._pareto import pareto_front
from nas.search._prepare import SearchContext


@dataclass
class FrontEntry:
    trial: int
    evaluation: Evaluation
    measured: PassSummary

    @property
    def latency_ms(self) -> float:
        return self.measured.latency_ms


def final_front(
    ctx: SearchContext, study: optuna.Study, meter: LatencyMeter, budget: float
) -> list[FrontEntry]:
    """Every candidate measured end to end in several passes (passes that disagree are
    measured again, see ``measure_passes``); the front is the Pareto set of those within
    the latency budget by measurement."""
    trials = [t for t in complete_trials(study) if "val_acc" in t.user_attrs]
    o = ctx.options
    slack = PROXIES[o.proxy].slack  # a proxy may be off near the budget
    near = [t for t in trials if t.values[1] <= budget * slack]
    points = [(t.values[0], t.values[1]) for t in near]
    candidates = [near[i] for i in pareto_front(points)]
    entries = []
    for t in tqdm(candidates, desc="measure front", unit="arch", disable=not o.progress):
        ev = Evaluation.from_attrs(t.user_attrs, t.values[1])
        passes = measure_passes(meter.measure_arch, ev.arch)
        entries.append(FrontEntry(t.number, ev, passes))
    remeasured = [e for e in entries if e.measured.remeasured]
    noisy = [e for e in entries if e.measured.noisy]
    if remeasured or noisy:
        ctx.extra["front_remeasured"], ctx.extra["front_noisy"] = len(remeasured), len(noisy)
        ctx.log(
            f"front candidates: {len(remeasured)} of {len(entries)} measured again (their "
            f"passes disagreed), {len(noisy)} flagged noisy (passes that still disagree, or "
            "a pass whose own runs varied beyond the target's cv)"
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
