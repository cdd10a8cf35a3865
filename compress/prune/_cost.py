"""What each layer's channels cost on the target: latency-aware allocation of a pruning goal.

HALP (Shen et al., 2022) prunes by a knapsack over channel groups, each with an importance
and a latency cost read from a per-layer lookup table. Here the cost is measured on the
target with the whole model, so the runtime's own behaviour (kernel choice by channel
count, fused ops, per-op overhead) is part of it: each layer in scope is cut alone by as
many channels as it may lose (``max_layer_ratio``, kept a multiple of ``round_to``), the
candidate is measured, and the latency it saved, divided by the channels it removed, is
that layer's cost per channel. A layer whose cut saved nothing measurable gets a small
floor instead of zero (a channel is never free), so its channels still go when they are
unimportant enough.

The allocation then ranks every channel in scope together by importance per cost (each
normalised by its mean, as torch-pruning's global ranking normalises importance): among
equally unimportant channels, those of the layers that cost the most latency go first.
That is the greedy solution of HALP's knapsack for a linear latency model.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from compress.prune._groups import branch_inputs, channel_groups
from compress.prune._prune import (
    PruneConfig,
    apply,
    channel_scores,
    in_scope,
    layout_of,
    select,
)
from nas.models import ShuffleNetV2

FLOOR = 0.05  # cost given to a layer that saved nothing: this share of the median cost


def layer_costs(
    model: ShuffleNetV2,
    config: PruneConfig,
    latency_ms: Callable[[ShuffleNetV2], float],
    parent_ms: float,
    log: Callable[[str], None] = print,
    parent_again: Callable[[], float] | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Milliseconds saved per channel removed, for every layer in ``config.scope`` that
    can lose channels, measured by ``latency_ms`` against ``parent_ms``; and per layer
    the record of the probe (channels removed, latency measured, saving).

    ``parent_again``: a fresh measurement of the parent, taken after the probes; how far
    it lies from ``parent_ms`` is the noise the savings are read against, recorded under
    ``"parent"`` and reported when most savings are smaller."""
    layout = layout_of(model)
    layers = in_scope(channel_groups(layout), config.scope)
    scores = channel_scores(model, layers, "l1")  # which channels: only the count matters
    keep_one = branch_inputs(layout)
    probes: dict[str, dict[str, float]] = {}
    for name, layer in layers.items():
        cap = min(len(layer.channels) - 1, int(config.max_layer_ratio * len(layer.channels)))
        if cap < max(1, config.round_to):
            continue
        chosen = select(
            {name: layer},
            {name: scores[name]},
            cap,
            True,
            config.max_layer_ratio,
            keep_one,
            config.round_to,
        )
        removed = sum(len(idxs) for idxs in chosen.values())
        if not removed:
            continue
        ms = latency_ms(apply(model, chosen).eval())
        probes[name] = {"removed": removed, "latency_ms": ms, "saved_ms": parent_ms - ms}
        log(f"  cost of {name}: {removed} channels cut, {parent_ms - ms:+.4f} ms saved")
    if parent_again is not None:
        again = parent_again()
        noise = abs(again - parent_ms)
        probes["parent"] = {"removed": 0, "latency_ms": again, "saved_ms": parent_ms - again}
        savings = [abs(p["saved_ms"]) for n, p in probes.items() if n != "parent"]
        if savings and statistics.median(savings) < noise:
            log(
                f"  warning: the parent measured {parent_ms:.4f} then {again:.4f} ms: most "
                "layers' savings are smaller than that drift, so their costs are noise here"
            )
    raw = {n: p["saved_ms"] / p["removed"] for n, p in probes.items() if n != "parent"}
    positive = [c for c in raw.values() if c > 0]
    floor = FLOOR * statistics.median(positive) if positive else 1.0
    return {name: max(c, floor) for name, c in raw.items()}, probes


__all__ = ["FLOOR", "layer_costs"]
