"""``TrainConfig``: the training recipe, recorded in every checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nas._errors import ConfigError
from nas.io import Record
from nas.models import BRANCH_SCALE, check_supernet_options
from nas.train._strategies import STRATEGIES

SCHEDULES = ("onecycle", "cosine")


@dataclass(frozen=True)
class TrainConfig(Record):
    """Recipe for standalone and supernet training (SGD with Nesterov momentum).

    Supernet only: ``strategy`` names a registered :class:`~nas.train.Strategy` (which
    sub-nets a step trains; ``num_random``, ``distill`` and ``width_warmup`` tune it),
    ``branch_scale`` the initial scale of the stride-1 branches (see
    :meth:`nas.models.Supernet.scale_branches`), ``channel_match`` how convs behind
    splits and shuffles share weights (see :class:`~nas.models.Supernet`).
    ``grad_clip``: the gradient norm is clipped to it before each step (off by default;
    :meth:`supernet` turns it on).
    The defaults are a standalone recipe; :meth:`supernet` gives the supernet recipe that
    ``nas.train --space``, ``nas.search`` and the pipeline share.
    """

    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    schedule: str = "onecycle"
    warmup: float = 0.15  # fraction of all steps
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    strategy: str = "sandwich"
    num_random: int = 2
    distill: bool = True
    width_warmup: float = 0.0  # fraction of training with every stage at its largest width
    branch_scale: float = BRANCH_SCALE
    channel_match: str = "id"
    grad_clip: float | None = None
    kd_ratio: float = 1.0  # standalone with a teacher: weight of its soft targets
    seed: int = 0
    bn_batches: int = 8  # batches used to re-estimate BatchNorm statistics of a sub-net
    eval_every: int = 1  # epochs between validation passes, and after the last (0: never)
    steps_per_epoch: int | None = None  # cap, for short schedules and tests
    checkpoint_minutes: float = 5.0  # resume state is also saved mid-epoch this often

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch size must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule {self.schedule!r}: choose {' or '.join(SCHEDULES)}"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}"
            )
        check_supernet_options(self.branch_scale, self.channel_match)
        if self.grad_clip is not None and not (
            self.grad_clip > 0 and math.isfinite(self.grad_clip)
        ):
            raise ConfigError(f"grad_clip must be a positive number, got {self.grad_clip}")
        if not (self.kd_ratio >= 0 and math.isfinite(self.kd_ratio)):
            raise ConfigError(f"kd_ratio must be a number >= 0, got {self.kd_ratio}")
        if not 0.0 <= self.width_warmup < 1.0:
            raise ConfigError(f"width_warmup must be a fraction in [0, 1), got {self.width_warmup}")
        if self.num_random < 0:
            raise ConfigError(f"num_random must be >= 0, got {self.num_random}")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"warmup must be a fraction in [0, 1), got {self.warmup}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError("steps_per_epoch must be >= 1")

    @classmethod
    def supernet(cls, **changes: Any) -> TrainConfig:
        """The supernet recipe (see ``SUPERNET_RECIPE``), with ``changes``."""
        return cls(**{**SUPERNET_RECIPE, **changes})


# The supernet recipe shared by ``nas.train --space``, ``nas.search`` and the pipeline.
# Measured by benchmarks/supernet_recipe.py on the CIFAR space (cpu scale, 234 steps,
# same seed; mean validation accuracy of 10 sub-nets): spos at lr 0.1 with the gradient
# norm clipped to 1 reached 0.239, at lr 0.02 0.198; sandwich at 2.3x the wall time 0.110
# (four sub-nets a step, the 32-unit largest among them: 7.0x a spos step on a CPU; it
# barely learns in 78 steps). The branch scale at 1 instead of 0.1: 0.147.
SUPERNET_RECIPE: dict[str, Any] = {
    "strategy": "spos",
    "lr": 0.1,
    "grad_clip": 1.0,
}


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    """Learning rate at ``step`` of ``total``: a pure function, so resuming needs no state.

    ``onecycle``: cosine ramp from ``lr/25`` up to ``lr`` over the warm-up, then cosine down
    to ``lr/25/1e4`` (torch's ``OneCycleLR`` without momentum cycling). ``cosine``: linear
    warm-up from 0, then cosine to 0.
    """
    if config.schedule == "onecycle":
        # torch.optim.lr_scheduler.OneCycleLR's phases (cycle_momentum=False), step for step
        low, high, end = config.lr / 25.0, config.lr, config.lr / 25.0 / 1e4
        warm_end = config.warmup * total - 1
        if step <= warm_end:
            return _cos(low, high, step / warm_end)
        start = max(warm_end, 0.0) if warm_end > 0 else 0.0
        return _cos(high, end, (step - start) / max(total - 1 - start, 1e-12))
    warm = int(config.warmup * total)
    if step < warm:
        return config.lr * (step + 1) / warm
    return _cos(config.lr, 0.0, (step - warm) / max(1, total - warm))


def _cos(start: float, end: float, pct: float) -> float:
    pct = min(max(pct, 0.0), 1.0)
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
