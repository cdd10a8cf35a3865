"""Pruning to a latency goal on a target: how many channels to remove is found by
measurement, not asked for as a share.

The goal is relative to the parent (``0.6x``: 60% of its latency measured on the target)
or absolute (``3ms``). Each candidate is the parent pruned by the usual ranking (so which
channels go is still the importance's choice; with ``--global`` the per-layer widths
follow the ranking, not a uniform share) and measured on the target; a bisection over the
number of channels removed stops when a candidate lies within the tolerance of the goal.
Latency falls with the channels removed but not smoothly (kernels change with the widths),
so the bisection keeps the best candidate it measured: the one closest to the goal from
below, else the fastest. With ``allocation="latency"`` the per-layer widths are weighed by
latency as well: each layer's cost per channel is measured on the target first
(``compress.prune._cost``), and every candidate ranks channels by importance per cost.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from torch import Tensor

from compress._common import input_shape
from compress.prune._cost import layer_costs
from compress.prune._groups import channel_groups
from compress.prune._prune import (
    NEEDS_GRADIENTS,
    PruneConfig,
    count_channels,
    in_scope,
    layout_of,
    prune_once,
)
from nas import ConfigError
from nas.env import cpu_flags
from nas.latency import HardwareTarget, LatencyMeter, parse_latency
from nas.models import ShuffleNetV2

TOLERANCE = 0.05  # a candidate within 5% of the goal ends the bisection
MAX_PROBES = 10
# The most a latency goal may remove, as a share of the channels in scope. Where a
# runtime's latency barely falls with channels (torch eager at batch 1 and 32 px: 87% of
# x1.0's channels removed for 0.6x, at -14 validation points), a goal is better refused
# than reached by gutting the model.
MAX_REMOVED = 0.6

_FACTOR = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*x\s*$")


class GoalOutOfReach(ConfigError):
    """A latency goal that pruning within ``max_removed`` did not reach on the target."""


@dataclass(frozen=True)
class LatencyGoal:
    """``value`` x the parent's latency (``relative``), or ``value`` milliseconds, to be
    reached by removing at most ``max_removed`` of the channels in scope."""

    value: float
    relative: bool
    max_removed: float = MAX_REMOVED

    def __post_init__(self) -> None:
        if not 0.0 < self.max_removed < 1.0:
            raise ConfigError(
                f"--max-removed {self.max_removed:g}: a share of the channels, strictly "
                "between 0 and 1 (0.6: at most 60% removed)"
            )

    @classmethod
    def parse(cls, text: str, max_removed: float = MAX_REMOVED) -> LatencyGoal:
        """``0.6x`` (of the parent's latency, strictly between 0 and 1) or a time (``3ms``)."""
        match = _FACTOR.match(str(text))
        if match:
            factor = float(match.group(1))
            if not 0.0 < factor < 1.0:
                raise ConfigError(
                    f"--latency {text!r}: a factor of the parent's latency must lie strictly "
                    "between 0 and 1 (0.6x: 60% of it, 1.67x faster)"
                )
            return cls(factor, relative=True, max_removed=max_removed)
        try:
            return cls(parse_latency(text), relative=False, max_removed=max_removed)
        except ConfigError as error:
            raise ConfigError(
                f"--latency {text!r}: give a factor of the parent's latency (0.6x) or a time "
                f"(3ms) ({error})"
            ) from None

    def ms(self, parent_ms: float) -> float:
        return self.value * parent_ms if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}x" if self.relative else f"{self.value:g}ms"


def block_size(target: HardwareTarget) -> int:
    """The channel multiple ``target``'s runtime needs for its fast kernels: ONNX Runtime's
    NCHWc convolutions on a CPU block channels by 16 with AVX-512 and by 8 with AVX2 (a
    conv with other counts falls back to slower kernels); 1 where no such rule is known."""
    if target.runtime != "onnxruntime" or target.device != "cpu":
        return 1
    flags = set(cpu_flags())
    if "avx512f" in flags:
        return 16
    return 8 if "avx2" in flags else 1


@dataclass(frozen=True)
class Probe:
    removed: int
    latency_ms: float


def search_removal(
    latency_of: Callable[[int], float],
    goal_ms: float,
    removable: int,
    tolerance: float = TOLERANCE,
    max_probes: int = MAX_PROBES,
) -> tuple[Probe, list[Probe]]:
    """The number of channels to remove (0 < n <= ``removable``) whose measured latency
    ``latency_of(n)`` lies within ``tolerance`` of ``goal_ms``, by bisection; returns the
    chosen probe and every probe in order. When no probe lands within the tolerance, the
    choice is the closest one at or under the goal, else the fastest one measured; when
    every probe was too slow, ``removable`` itself is measured as well, so a goal out of
    reach is told apart from probes that ran out before reaching it."""
    if removable < 1:
        raise ConfigError("nothing to prune: no layer in scope has channels to spare")
    low, high = 0, removable
    probes: list[Probe] = []
    while low < high and len(probes) < max_probes:
        middle = (low + high + 1) // 2
        probe = Probe(middle, latency_of(middle))
        probes.append(probe)
        if abs(probe.latency_ms / goal_ms - 1.0) <= tolerance:
            return probe, probes
        if probe.latency_ms > goal_ms:
            low = middle  # still too slow: remove more
        else:
            high = middle - 1  # fast enough: try removing less
    under = [p for p in probes if p.latency_ms <= goal_ms]
    if not under and all(p.removed < removable for p in probes):
        probes.append(Probe(removable, latency_of(removable)))
        if probes[-1].latency_ms <= goal_ms * (1.0 + tolerance):
            return probes[-1], probes
    best = (
        max(under, key=lambda p: p.latency_ms) if under else min(probes, key=lambda p: p.latency_ms)
    )
    return best, probes


def goal_removal(
    model: ShuffleNetV2,
    config: PruneConfig,
    goal: LatencyGoal,
    target: HardwareTarget,
    batches: Iterable[tuple[Tensor, Tensor]],
    log: Callable[[str], None] = print,
) -> tuple[int, dict[str, Any]]:
    """How many channels (of ``config.scope``) to remove from ``model`` to reach ``goal``
    on ``target``, and the record of how it was found (every probe measured)."""
    layout = layout_of(model)
    layers = in_scope(channel_groups(layout), config.scope)
    removable = sum(
        min(len(layer.channels) - 1, int(config.max_layer_ratio * len(layer.channels)))
        for layer in layers.values()
    )
    original = count_channels(layout, config.scope)
    removable = min(removable, int(goal.max_removed * original))
    batches = list(itertools.islice(batches, 8)) if config.importance in NEEDS_GRADIENTS else []
    shape = input_shape(model.arch, target.batch_size)

    with LatencyMeter(target, cache=False) as meter:

        def latency_ms(candidate: ShuffleNetV2) -> float:
            assert candidate.layout is not None
            key = hashlib.sha256(
                json.dumps([candidate.arch.hash, candidate.layout.to_dict()]).encode()
            ).hexdigest()[:16]
            return meter.measure_module(candidate.eval(), shape, key=f"layout:{key}").median_ms

        parent = ShuffleNetV2(model.arch, layout=layout)
        parent_ms = latency_ms(parent)
        goal_ms = goal.ms(parent_ms)
        if goal_ms >= parent_ms:
            raise ConfigError(
                f"--latency {goal}: {goal_ms:.3f} ms is not below the parent's "
                f"{parent_ms:.3f} ms on {target.name}; ask for less (e.g. 0.7x)"
            )

        costs: dict[str, float] | None = None
        cost_probes: dict[str, dict[str, float]] = {}
        if config.allocation == "latency":
            log(f"measuring each layer's latency cost on {target.name}")
            costs, cost_probes = layer_costs(
                model,
                config,
                latency_ms,
                parent_ms,
                log,
                parent_again=lambda: meter.measure_module(parent.eval(), shape).median_ms,
            )

        def probe(removed: int) -> float:
            trial = replace(config, ratio=min(removed / original, 0.999))
            ms = latency_ms(prune_once(model, trial, removed, batches or None, costs=costs))
            log(f"  {removed} of {original} channels removed: {ms:.3f} ms (goal {goal_ms:.3f})")
            return ms

        log(f"latency goal {goal} on {target.name}: parent {parent_ms:.3f} ms, goal {goal_ms:.3f}")
        chosen, probes = search_removal(probe, goal_ms, removable)
    if chosen.latency_ms > goal_ms * (1.0 + TOLERANCE):
        raise GoalOutOfReach(out_of_reach(goal, target.name, parent_ms, goal_ms, chosen, original))
    return chosen.removed, {
        "goal": str(goal),
        "target": target.name,
        "parent_ms": parent_ms,
        "goal_ms": goal_ms,
        "chosen": asdict(chosen),
        "probes": [asdict(p) for p in probes],
        "tolerance": TOLERANCE,
        "max_removed": goal.max_removed,
        "allocation": config.allocation,
        "layer_costs_ms": costs,
        "layer_probes": cost_probes,
    }


def out_of_reach(
    goal: LatencyGoal, target: str, parent_ms: float, goal_ms: float, best: Probe, original: int
) -> str:
    """One line: the goal, what the most pruning allowed reached, and what to do instead."""
    factor = best.latency_ms / parent_ms
    reachable = math.ceil(factor * 100 - 1e-9) / 100  # the next hundredth up
    ask = (
        f"ask for {reachable:g}x or more"
        if reachable < 1.0
        else "pruning does not make it faster there"
    )
    return (
        f"--latency {goal} is out of reach on {target}: with {best.removed} of {original} "
        f"channels removed ({best.removed / original:.0%}; --max-removed {goal.max_removed:g}) "
        f"the model measures {best.latency_ms:.3f} ms, {factor:.2f}x of its {parent_ms:.3f} ms, "
        f"against {goal_ms:.3f} ms asked: {ask}, raise --max-removed, or start from a "
        "smaller arch"
    )
