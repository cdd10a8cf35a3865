"""The final front: every candidate near the budget measured end to end, then the Pareto
set of those measured within it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import optuna
from tqdm.auto import tqdm

from nas.arch import ArchConfig
from nas.latency import PASSES, LatencyMeter, PassSummary, measure_spaced
from nas.search._evaluator import PROXIES, Evaluation
from nas.search._objective import complete_trials
from nas.search._pareto import pareto_front
from nas.search._prepare import SearchContext


@dataclass
class FrontEntry:
    trial: int
    evaluation: Evaluation
    measured: PassSummary
    shortlisted: bool = False  # added by the shortlist, not on the estimated front

    @property
    def latency_ms(self) -> float:
        return self.measured.latency_ms


def final_front(
    ctx: SearchContext, study: optuna.Study, meter: LatencyMeter, budget: float
) -> list[FrontEntry]:
    """Every candidate measured end to end in several passes, in rounds spread over time
    (passes that disagree are measured again, see ``measure_spaced``); the front is the
    Pareto set of those within the latency budget by measurement."""
    trials = [t for t in complete_trials(study) if "val_acc" in t.user_attrs]
    o = ctx.options
    slack = PROXIES[o.proxy].slack  # a proxy may be off near the budget
    near = [t for t in trials if t.values[1] <= budget * slack]
    points = [(t.values[0], t.values[1]) for t in near]
    candidates = [near[i] for i in pareto_front(points)]
    evaluations = [Evaluation.from_attrs(t.user_attrs, t.values[1]) for t in candidates]
    measured = measure_archs(meter, [ev.arch for ev in evaluations], "measure front", o.progress)
    entries = [
        FrontEntry(t.number, ev, passes)
        for t, ev, passes in zip(candidates, evaluations, measured, strict=True)
    ]
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


def measure_archs(
    meter: LatencyMeter, archs: list[ArchConfig], desc: str, progress: bool
) -> list[PassSummary]:
    """The passes of ``archs``, in rounds the target's ``pass_gap_s`` apart (every arch
    once per round), each arch's summary in order."""
    with tqdm(total=len(archs) * PASSES, desc=desc, unit="pass", disable=not progress) as bar:
        summaries = measure_spaced(
            {i: partial(meter.measure_arch, arch) for i, arch in enumerate(archs)},
            gap_s=meter.target.pass_gap_s,
            progress=bar.update,
        )
    return [summaries[i] for i in range(len(archs))]


def evaluated_archs(study: optuna.Study) -> dict[str, tuple[int, Evaluation]]:
    """Every arch the study evaluated, by hash: its first trial's number and evaluation."""
    evaluations: dict[str, tuple[int, Evaluation]] = {}
    for t in complete_trials(study):
        if "val_acc" in t.user_attrs:
            ev = Evaluation.from_attrs(t.user_attrs, t.values[1])
            evaluations.setdefault(ev.arch.hash, (t.number, ev))
    return evaluations


def rivals(
    front: list[tuple[str, float]], trials: list[tuple[str, float, float]], size: int
) -> list[str]:
    """Per front arch ``(hash, latency)``, the ``size - 1`` best-estimated other archs of
    ``trials`` ``(hash, estimate, latency)`` no slower than it, each arch once, front
    order first (all latencies in the search's own figure)."""
    taken = {arch for arch, _ in front}
    chosen: list[str] = []
    for _, ceiling in front:
        faster = sorted((t for t in trials if t[2] <= ceiling), key=lambda t: -t[1])
        added = 0
        for arch, _, _ in faster:
            if added == size - 1:
                break
            if arch not in taken:
                taken.add(arch)
                chosen.append(arch)
                added += 1
    return chosen


def shortlist(
    ctx: SearchContext,
    study: optuna.Study,
    meter: LatencyMeter,
    front: list[FrontEntry],
    size: int,
) -> list[FrontEntry]:
    """``front`` and, per front arch, its :func:`rivals`: the next ``size - 1`` best
    supernet estimates no slower than it by the search's latency figure, measured end to
    end (those over the budget dropped). The estimates of similar archs differ by less
    than their noise (``benchmarks/supernet_ranking.py``), so training a few per slot and
    choosing on trained validation accuracy beats trusting the best estimate."""
    if size <= 1 or not front:
        return front
    evaluations = evaluated_archs(study)
    chosen = rivals(
        [(e.evaluation.arch.hash, e.evaluation.objective) for e in front],
        [(h, ev.val_acc, ev.objective) for h, (_, ev) in evaluations.items()],
        size,
    )
    o = ctx.options
    picked = [evaluations[arch_hash] for arch_hash in chosen]
    measured = measure_archs(meter, [ev.arch for _, ev in picked], "measure shortlist", o.progress)
    extra = [
        FrontEntry(number, ev, passes, shortlisted=True)
        for (number, ev), passes in zip(picked, measured, strict=True)
        if passes.latency_ms <= o.latency_budget_ms
    ]
    ctx.log(
        f"shortlist: {len(extra)} more archs to train beside the {len(front)} of the "
        f"estimated front ({len(chosen) - len(extra)} measured over the budget)"
    )
    return sorted(front + extra, key=lambda e: e.latency_ms)
