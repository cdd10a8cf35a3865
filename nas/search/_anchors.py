"""Nets to beat (``--anchor``): each measured on the target when the search starts, and per
net the arch with the best supernet estimate among those that spend most of its latency,
delivered beside the front.

Why not the front alone: supernet estimates of similar archs differ by less than their
noise (``benchmarks/supernet_ranking.py``: 57% signal), so which archs end up on the
estimated Pareto front is largely chance. One lucky fast arch dominates every slower one,
and the front can stop far below a hand-designed net's latency; trained, the archs that use
that latency win (``benchmarks/search.py``, whose per-budget searches pick near the
budget, beats x1.0 by 4.9 points). An anchor asks for that arch explicitly.

And where the search drew (almost) nothing near a net's latency, the anchor draws there
itself: TPE at a budget that admits the whole space samples little of its fast corner
(``benchmarks/results/mbv3-slot-ort``: 1 of 40 trials near MobileNetV3-small, while the
smallest arch's one-step neighbours, all that fast, trained 1-3 points better).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import optuna

from nas.arch import ArchConfig
from nas.latency import (
    LatencyMeter,
    Measurement,
    PassSummary,
    format_ms,
    measure_passes,
    measure_spaced,
)
from nas.models import ReferenceNet, load_network
from nas.search._evaluator import Evaluation, Evaluator
from nas.search._front import FrontEntry, evaluated_archs
from nas.search._objective import run_waiting, waiting_trials
from nas.search._prepare import SearchContext
from nas.train import fit_to_data

#: An anchor's arch is chosen among the archs the search measured within this share of the
#: net's latency. The upper end leaves room for the spread between passes (3-4% median on
#: the shipped targets), so that measured again the arch stays no slower than the net; the
#: lower end makes it spend the latency it is given.
WINDOW = (0.8, 0.97)
#: Candidates measured end to end per anchor, best estimate first, until one is no slower.
TRIES = 3
#: An anchor whose window holds fewer searched archs than this is explored: the neighbours
#: (one choice away on one axis) of the best arch in the window, or of the arch nearest it,
#: are evaluated as extra trials of the study, at most two per searched axis.
EXPLORE_BELOW = 3

_S = TypeVar("_S", bound=tuple[Any, ...])


@dataclass(frozen=True)
class Anchor:
    name: str
    passes: PassSummary

    @property
    def latency_ms(self) -> float:
        return self.passes.latency_ms


def measure_anchors(ctx: SearchContext, meter: LatencyMeter) -> list[Anchor]:
    """Each ``--anchor`` net, fitted to the data, measured in passes like the front."""
    measures: dict[str, Callable[..., Measurement]] = {}
    for name in ctx.options.anchors:
        net = fit_to_data(load_network(name), ctx.data)
        if isinstance(net, ArchConfig):
            measures[name] = partial(meter.measure_arch, net)
        else:
            assert isinstance(net, ReferenceNet)  # load_network gives no space
            measures[name] = partial(_measure_reference, meter, net)
    measured = measure_spaced(measures, gap_s=meter.target.pass_gap_s)
    anchors = [Anchor(name, measured[name]) for name in measures]
    ctx.extra["anchors"] = [
        {"name": a.name, "latency_ms": a.latency_ms, "passes_ms": list(a.passes.medians)}
        for a in anchors
    ]
    return anchors


def _measure_reference(meter: LatencyMeter, net: ReferenceNet, repeat: int = 0) -> Measurement:
    shape = (1, net.in_channels, net.resolution, net.resolution)
    key = f"net:{json.dumps(net.to_dict(), sort_keys=True)}:{repeat}"
    return meter.measure_module(net.build().eval(), shape, key=key)


def explore(
    ctx: SearchContext,
    study: optuna.Study,
    evaluator: Evaluator,
    budget: float,
    anchors: list[Anchor],
) -> None:
    """Per anchor whose window holds fewer than :data:`EXPLORE_BELOW` searched archs, the
    neighbours of :func:`explore_from`'s arch run as trials of ``study``. The plan is kept
    in the study (``explore:<net>``), so a resumed search runs what is left of the same one."""
    for anchor, note in zip(anchors, ctx.extra["anchors"], strict=True):
        key = f"explore:{anchor.name}"
        plan = study.user_attrs.get(key)
        if plan is None:
            plan = _plan(ctx, study, anchor.latency_ms)
            before = len(waiting_trials(study))
            for params in plan.pop("params"):
                # nothing twice: not an arch a trial of any state (a failed one too) holds
                study.enqueue_trial(params, {"explore": anchor.name}, skip_if_exists=True)
            if plan["from"] is not None:
                plan["trials"] = len(waiting_trials(study)) - before
            study.set_user_attr(key, plan)
        note["explored"] = plan
        if plan["from"] is None:
            continue
        ran = run_waiting(ctx, study, evaluator, budget, f"explore {anchor.name}")
        if ran:
            ctx.log(
                f"anchor {anchor.name}: {plan['in_window']} searched archs in its window; "
                f"{ran} neighbours of {plan['from']} evaluated"
            )


def _plan(ctx: SearchContext, study: optuna.Study, latency_ms: float) -> dict[str, Any]:
    evaluated = evaluated_archs(study)
    searched = [(ev.arch, ev.val_acc, ms) for _, ev, ms in _deliverable(ctx, evaluated).values()]
    seed = explore_from(searched, latency_ms)
    in_window = len(_inside(searched, latency_ms))
    plan: dict[str, Any] = {"from": None, "in_window": in_window, "params": []}
    if seed is not None and in_window < EXPLORE_BELOW and ctx.options.explore != 0:
        fresh = [a for a in ctx.space.neighbours(seed) if a.hash not in evaluated]
        cap = ctx.options.explore
        if cap is not None and len(fresh) > cap:  # a fair draw, in the neighbours' order
            keep = set(random.Random(ctx.options.seed).sample(range(len(fresh)), cap))
            fresh = [a for i, a in enumerate(fresh) if i in keep]
        names = ctx.space.searchable
        plan["from"] = seed.hash
        plan["params"] = [{k: v for k, v in a.to_params().items() if k in names} for a in fresh]
    return plan


def _deliverable(
    ctx: SearchContext, evaluated: dict[str, tuple[int, Evaluation]]
) -> dict[str, tuple[int, Evaluation, float]]:
    """Of the study's ``evaluated`` archs, those an anchor may deliver, by hash: trial
    number, evaluation and search latency (measured, or a lookup table's prediction); a
    FLOPs search measures none, and an arch over the budget is never delivered."""
    ceiling = ctx.options.latency_budget_ms
    out = {}
    for arch_hash, (number, ev) in evaluated.items():
        ms = ev.latency_ms if ev.latency_ms is not None else ev.predicted_ms
        if ms is not None and ms <= ceiling:
            out[arch_hash] = (number, ev, ms)
    return out


def _window(latency_ms: float) -> tuple[float, float]:
    return WINDOW[0] * latency_ms, WINDOW[1] * latency_ms


def _inside(searched: list[_S], latency_ms: float) -> list[_S]:
    """The ``searched`` archs (tuples whose third item is the latency) in the window."""
    lo, hi = _window(latency_ms)
    return [s for s in searched if lo <= s[2] <= hi]


def explore_from(
    searched: list[tuple[ArchConfig, float, float]], latency_ms: float
) -> ArchConfig | None:
    """Of ``searched`` archs ``(arch, estimate, search latency)``, the one to explore around
    for a net of ``latency_ms``: the best estimate within :data:`WINDOW` of its latency, or
    the arch whose latency lies nearest the window (by ratio)."""
    if not searched:
        return None
    lo, hi = _window(latency_ms)
    inside = _inside(searched, latency_ms)
    if inside:
        return max(inside, key=lambda s: s[1])[0]
    return min(searched, key=lambda s: max(lo / s[2], s[2] / hi))[0]


def candidates(searched: list[tuple[str, float, float]], latency_ms: float) -> list[str]:
    """Of ``searched`` archs ``(hash, estimate, search latency)``, the ones to try for a
    net of ``latency_ms``, best estimate first: those within :data:`WINDOW` of its latency,
    or, if none lies there, every one below the window's upper end."""
    hi = _window(latency_ms)[1]
    pool = _inside(searched, latency_ms) or [s for s in searched if s[2] <= hi]
    return [h for h, _, _ in sorted(pool, key=lambda c: -c[1])]


def anchored(
    ctx: SearchContext,
    study: optuna.Study,
    meter: LatencyMeter,
    front: list[FrontEntry],
    anchors: list[Anchor],
) -> list[FrontEntry]:
    """``front`` and, per anchor, the first of its :func:`candidates` (at most
    :data:`TRIES`) that measures end to end no slower than the anchor nor the budget; an
    arch already in ``front`` counts as the anchor's and is not added twice."""
    if not anchors:
        return front
    ceiling = ctx.options.latency_budget_ms
    searched = _deliverable(ctx, evaluated_archs(study))
    figures = [(h, ev.val_acc, ms) for h, (_, ev, ms) in searched.items()]
    entries = {e.evaluation.arch.hash: e for e in front}
    for anchor, note in zip(anchors, ctx.extra["anchors"], strict=True):
        note["window_ms"] = list(_window(anchor.latency_ms))
        note["arch_hash"] = None
        for arch_hash in candidates(figures, anchor.latency_ms)[:TRIES]:
            number, ev, _ = searched[arch_hash]
            entry = entries.get(arch_hash)
            if entry is None:
                passes = measure_passes(meter.measure_arch, ev.arch)
                entry = FrontEntry(number, ev, passes, shortlisted=True)
            if entry.latency_ms <= min(anchor.latency_ms, ceiling):
                entries.setdefault(arch_hash, entry)
                note["arch_hash"], note["arch_latency_ms"] = arch_hash, entry.latency_ms
                break
        found = entries.get(note["arch_hash"] or "")
        ctx.log(
            f"anchor {anchor.name} ({format_ms(anchor.latency_ms)}): "
            + (
                f"{found.evaluation.arch.short_name()} at {format_ms(found.latency_ms)}, "
                f"estimate {found.evaluation.val_acc:.3f}"
                if found
                else "no arch of the search measures no slower"
            )
        )
    return sorted(entries.values(), key=lambda e: e.latency_ms)
