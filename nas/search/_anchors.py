"""Nets to beat (``--anchor``): each measured on the target when the search starts, and per
net the arch with the best supernet estimate among those that spend most of its latency,
delivered beside the front.

Why not the front alone: supernet estimates of similar archs differ by less than their
noise (``benchmarks/supernet_ranking.py``: 57% signal), so which archs end up on the
estimated Pareto front is largely chance. One lucky fast arch dominates every slower one,
and the front can stop far below a hand-designed net's latency; trained, the archs that use
that latency win (``benchmarks/search.py``, whose per-budget searches pick near the
budget, beats x1.0 by 4.9 points). An anchor asks for that arch explicitly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import optuna

from nas.arch import ArchConfig
from nas.latency import LatencyMeter, Measurement, PassSummary, format_ms, measure_passes
from nas.models import ReferenceNet, load_network
from nas.search._evaluator import Evaluation
from nas.search._front import FrontEntry, evaluated_archs
from nas.search._prepare import SearchContext
from nas.train import fit_to_data

#: An anchor's arch is chosen among the archs the search measured within this share of the
#: net's latency. The upper end leaves room for the spread between passes (3-4% median on
#: the shipped targets), so that measured again the arch stays no slower than the net; the
#: lower end makes it spend the latency it is given.
WINDOW = (0.8, 0.97)
#: Candidates measured end to end per anchor, best estimate first, until one is no slower.
TRIES = 3


@dataclass(frozen=True)
class Anchor:
    name: str
    passes: PassSummary

    @property
    def latency_ms(self) -> float:
        return self.passes.latency_ms


def measure_anchors(ctx: SearchContext, meter: LatencyMeter) -> list[Anchor]:
    """Each ``--anchor`` net, fitted to the data, measured in passes like the front."""
    anchors = []
    for name in ctx.options.anchors:
        net = fit_to_data(load_network(name), ctx.data)
        if isinstance(net, ArchConfig):
            passes = measure_passes(meter.measure_arch, net)
        else:
            passes = measure_passes(_measure_reference, meter, net)
        anchors.append(Anchor(name, passes))
    ctx.extra["anchors"] = [
        {"name": a.name, "latency_ms": a.latency_ms, "passes_ms": list(a.passes.medians)}
        for a in anchors
    ]
    return anchors


def _measure_reference(meter: LatencyMeter, net: ReferenceNet, repeat: int = 0) -> Measurement:
    shape = (1, net.in_channels, net.resolution, net.resolution)
    key = f"net:{json.dumps(net.to_dict(), sort_keys=True)}:{repeat}"
    return meter.measure_module(net.build().eval(), shape, key=key)


def candidates(searched: list[tuple[str, float, float]], latency_ms: float) -> list[str]:
    """Of ``searched`` archs ``(hash, estimate, search latency)``, the ones to try for a
    net of ``latency_ms``, best estimate first: those within :data:`WINDOW` of its latency,
    or, if none lies there, every one below the window's upper end."""
    lo, hi = (share * latency_ms for share in WINDOW)
    below = [(h, est) for h, est, ms in searched if ms <= hi]
    inside = [(h, est) for h, est, ms in searched if lo <= ms <= hi]
    return [h for h, _ in sorted(inside or below, key=lambda c: -c[1])]


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
    searched: dict[str, tuple[int, Evaluation, float]] = {}  # hash -> trial, evaluation, ms
    for arch_hash, (number, ev) in evaluated_archs(study).items():
        ms = ev.latency_ms if ev.latency_ms is not None else ev.predicted_ms
        # a FLOPs search measures no trial; an arch over the budget is never delivered
        if ms is not None and ms <= ceiling:
            searched[arch_hash] = (number, ev, ms)
    figures = [(h, ev.val_acc, ms) for h, (_, ev, ms) in searched.items()]
    entries = {e.evaluation.arch.hash: e for e in front}
    for anchor, note in zip(anchors, ctx.extra["anchors"], strict=True):
        note["window_ms"] = [share * anchor.latency_ms for share in WINDOW]
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
