"""Supernet training strategies: which sub-nets one step trains, and what each learns from.

A strategy is one class, registered by name. Each step the trainer asks it for the
step's sub-nets (:meth:`Strategy.draw`); the first one drawn with ``teacher=True`` learns
from the labels (with label smoothing: the regularisation stays on the teacher) and, with
in-place distillation on, every later sub-net of the step learns from its soft
predictions instead (BigNAS, AttentiveNAS). Without a teacher each sub-net learns from
the labels. Gradients of all sub-nets of a step add up into one optimizer step.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from nas._errors import ConfigError
from nas.arch import ArchConfig
from nas.models import count_flops
from nas.space import SearchSpace

# The axes of a sub-net's width: per-stage widths and split ratios, stem and last conv.
WIDTH_AXES = ("width", "split_ratio", "stem_channels", "last_channels")


@dataclass(frozen=True)
class Draw:
    """One sub-net of a training step; ``teacher``: learns from the labels and teaches the
    sub-nets drawn after it in the same step."""

    arch: ArchConfig
    teacher: bool = False


class Strategy(ABC):
    """How a supernet is trained. ``num_random`` is the number of random sub-nets a
    multi-path step adds; ``width_warmup``: the fraction of training during which every
    drawn sub-net takes the largest width (``WIDTH_AXES``): split-and-shuffle nets train
    their narrow slices better once the wide ones carry features."""

    name: ClassVar[str]
    summary: ClassVar[str]

    def __init__(self, space: SearchSpace, num_random: int = 2, width_warmup: float = 0.0):
        self.space, self.num_random, self.width_warmup = space, num_random, width_warmup

    @abstractmethod
    def _draw(self, rng: random.Random, progress: float) -> list[Draw]:
        """The step's sub-nets at ``progress`` (fraction of training done, in [0, 1))."""

    def draw(self, rng: random.Random, progress: float) -> list[Draw]:
        """The step's sub-nets at ``progress`` (fraction of training done, in [0, 1))."""
        draws = self._draw(rng, progress)
        if progress < self.width_warmup:
            draws = [Draw(pin(self.space, d.arch, WIDTH_AXES), d.teacher) for d in draws]
        return draws

    def sample(self, rng: random.Random) -> ArchConfig:
        """One sub-net drawn uniformly on every axis."""
        return self.space.sample(rng)


STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available as ``TrainConfig(strategy=cls.name)``."""
    if cls.name in STRATEGIES:
        raise ValueError(f"a training strategy named {cls.name!r} is already registered")
    STRATEGIES[cls.name] = cls
    return cls


def make_strategy(name: str, space: SearchSpace, **options: Any) -> Strategy:
    """The registered strategy ``name`` for ``space``."""
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}: choose one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](space, **options)


def pin(space: SearchSpace, arch: ArchConfig, axes: tuple[str, ...]) -> ArchConfig:
    """``arch`` with every axis named in ``axes`` (a per-stage axis such as ``"kernel"``
    for all stages, or a whole-net one such as ``"stem_channels"``) at its largest choice
    in ``space``."""
    params = arch.to_params()
    for key, choices in space.choices.items():
        if key.rsplit(".", 1)[-1] in axes:
            params[key] = choices[-1]
    return ArchConfig.from_params(params)


@register_strategy
class SinglePath(Strategy):
    name = "spos"
    summary = "one sub-net per step, drawn uniformly (SPOS)"

    def _draw(self, rng: random.Random, progress: float) -> list[Draw]:
        return [Draw(self.sample(rng))]


@register_strategy
class Sandwich(Strategy):
    name = "sandwich"
    summary = (
        "the largest, the smallest and num_random uniform sub-nets per step; the largest "
        "learns from the labels, the others from its predictions (BigNAS, AttentiveNAS)"
    )

    def _draw(self, rng: random.Random, progress: float) -> list[Draw]:
        draws = [Draw(self.space.max_arch, teacher=True), Draw(self.space.min_arch)]
        return draws + [Draw(self.sample(rng)) for _ in range(self.num_random)]


@register_strategy
class FlopsStratified(Strategy):
    """Single path, uniform over FLOPs rather than over choices. Uniform choices crowd the
    middle of the FLOPs range (FLOPs add up over many axes: on the CIFAR space the lowest
    and highest fifth of log-FLOPs between the smallest and the largest arch get 1% and
    2% of uniform draws), so the two ends of the front would be trained least. SPOS draws
    uniformly within FLOPs bins for the same reason. Here: one of ``bins`` equal bins of
    log-FLOPs between the smallest and the largest arch is picked uniformly, then archs
    are drawn uniformly until one falls in it (the nearest of ``tries`` otherwise)."""

    name = "flops-stratified"
    summary = "one sub-net per step, uniform within one of 5 log-FLOPs bins picked uniformly"
    bins = 5
    tries = 1000

    def __init__(self, space: SearchSpace, num_random: int = 2, width_warmup: float = 0.0):
        super().__init__(space, num_random, width_warmup)
        self.low = math.log(count_flops(space.min_arch))
        self.width = (math.log(count_flops(space.max_arch)) - self.low) / self.bins

    def position(self, arch: ArchConfig) -> float:
        """Where ``arch``'s log-FLOPs lie, in bins from the smallest arch's."""
        return (math.log(count_flops(arch)) - self.low) / max(self.width, 1e-12)

    def bin_of(self, arch: ArchConfig) -> int:
        return min(max(int(self.position(arch)), 0), self.bins - 1)

    def _draw(self, rng: random.Random, progress: float) -> list[Draw]:
        wanted = rng.randrange(self.bins)
        best, miss = self.sample(rng), math.inf
        for _ in range(self.tries):
            arch = self.sample(rng)
            if self.bin_of(arch) == wanted:
                return [Draw(arch)]
            gap = abs(self.position(arch) - (wanted + 0.5))
            if gap < miss:
                best, miss = arch, gap
        return [Draw(best)]


@register_strategy
class ProgressiveShrinking(Strategy):
    """Once-for-All's progressive shrinking: the largest sub-net alone first, then the
    kernel size, the depth and last the width (with the split ratio) become elastic, each
    phase distilled from the largest. Input resolution is elastic whenever sub-nets are
    drawn."""

    name = "progressive"
    summary = (
        "largest only, then elastic kernel, depth, width (Once-for-All); the largest plus "
        "num_random sub-nets per step, distilled from the largest"
    )
    # (start of the phase as a fraction of training, axes still pinned at their largest)
    phases: ClassVar[tuple[tuple[float, tuple[str, ...]], ...]] = (
        (0.0, ("kernel", "repeats", *WIDTH_AXES)),
        (0.2, ("repeats", *WIDTH_AXES)),
        (0.4, WIDTH_AXES),
        (0.6, ()),
    )

    def pinned(self, progress: float) -> tuple[str, ...]:
        """The axes held at their largest choice at ``progress``."""
        return [axes for start, axes in self.phases if progress >= start][-1]

    def _draw(self, rng: random.Random, progress: float) -> list[Draw]:
        draws = [Draw(self.space.max_arch, teacher=True)]
        pinned = self.pinned(progress)
        if progress < self.phases[1][0]:
            return draws
        return draws + [
            Draw(pin(self.space, self.sample(rng), pinned)) for _ in range(self.num_random)
        ]
