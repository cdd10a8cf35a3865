"""``FinalTraining``: how each arch of a searched front is trained before delivery."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from nas._errors import ConfigError
from nas.io import Record
from nas.train import TrainConfig

INITS = ("scratch", "inherit")
# Peak learning rate by init: the standalone recipe's from scratch; a fifth of it from
# inherited weights, which a full-size first step would throw away.
DEFAULT_LR = {"scratch": 0.1, "inherit": 0.02}


@dataclass(frozen=True)
class FinalTraining(Record):
    """How each front arch is trained before it is delivered.

    ``init``: ``scratch`` (the arch's own initialisation, as SPOS retrains its pick) or
    ``inherit`` (its supernet weights, BatchNorm recalibrated, as Once-for-All fine-tunes
    its specialised sub-nets). ``distill``: the supernet's largest sub-net teaches as
    well (its soft predictions, weight ``kd_ratio``). ``lr``: peak learning rate (default
    0.1 from scratch, 0.02 from inherited weights); the rest is the standalone recipe
    (:class:`~nas.train.TrainConfig`).
    """

    epochs: int = 15
    init: str = "scratch"
    distill: bool = False
    lr: float | None = None
    kd_ratio: float = 1.0
    batch_size: int = 128
    steps_per_epoch: int | None = None  # cap, for short schedules and tests
    # archs trained per front slot: the estimated front arch and the next best supernet
    # estimates no slower than it; the delivered front is the Pareto set of them all, trained
    shortlist: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.shortlist, bool) or not isinstance(self.shortlist, int):
            raise ConfigError(f"final shortlist must be an integer >= 1, got {self.shortlist!r}")
        if self.shortlist < 1:
            raise ConfigError(f"final shortlist must be >= 1, got {self.shortlist}")
        if self.init not in INITS:
            raise ConfigError(f"unknown final init {self.init!r}: choose {' or '.join(INITS)}")
        if self.epochs < 1:
            raise ConfigError(f"final training needs >= 1 epoch, got {self.epochs}")
        self.recipe(0)  # every other value is checked by the recipe itself

    def recipe(self, seed: int) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr if self.lr is not None else DEFAULT_LR[self.init],
            kd_ratio=self.kd_ratio,
            steps_per_epoch=self.steps_per_epoch,
            seed=seed,
        )

    def describe(self) -> str:
        how = self.init + (" + distillation" if self.distill else "")
        shortlist = f", best of {self.shortlist} per front arch" if self.shortlist > 1 else ""
        return f"{how}, {self.epochs} epochs{shortlist}"

    def slug(self) -> str:
        """A folder name for this recipe: models trained with another are never reused
        (the shortlist chooses which archs are trained, not how)."""
        recipe = {k: v for k, v in self.to_dict().items() if k != "shortlist"}
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
        kd = "-kd" if self.distill else ""
        return f"{self.init}{kd}-{self.epochs}ep-{digest[:8]}"
