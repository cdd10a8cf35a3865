"""``FrontTrainer``: trains one front arch with a :class:`FinalTraining` into its folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas._errors import CheckpointError
from nas.arch import ArchConfig
from nas.checkpoint import arch_of, load_checkpoint
from nas.data import DataSplits
from nas.final._config import FinalTraining
from nas.models import ShuffleNetV2, Supernet
from nas.train import FINAL, STATE, subnet_model, train


class FrontTrainer:
    """Trains front archs with ``final``, each into ``<root>/<recipe>/<arch hash>/`` (resumable:
    an unfinished one continues from its resume state, a finished one is loaded).

    The supernet provides the inherited weights (``init="inherit"``) and the teacher
    (``distill``): its largest sub-net, BatchNorm recalibrated like every sub-net, built
    once. The test split is not touched here: the caller reports it once, at the end.
    """

    def __init__(
        self,
        final: FinalTraining,
        supernet: Supernet,
        data: DataSplits,
        root: Path,
        *,
        bn_batches: int = 4,
        device: str = "cpu",
        seed: int = 0,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        self.final, self.supernet, self.data = final, supernet, data
        self.root = root / final.slug()
        self.bn_batches, self.device, self.seed = bn_batches, device, seed
        self.progress, self.log = progress, log
        self._teacher: ShuffleNetV2 | None = None

    def teacher(self) -> ShuffleNetV2:
        if self._teacher is None:
            self._teacher = self._subnet(self.supernet.space.max_arch)
        return self._teacher

    def _subnet(self, arch: ArchConfig) -> ShuffleNetV2:
        return subnet_model(
            self.supernet, arch, self.data, self.bn_batches, device=self.device, seed=self.seed
        )

    def train(self, arch: ArchConfig) -> tuple[ShuffleNetV2, dict[str, Any]]:
        """The trained model of ``arch`` (eval mode) and its final-training metrics."""
        out = self.root / arch.hash
        final = out / FINAL["model"]
        if not final.exists():
            self.log(f"final training {arch.short_name()}: {self.final.describe()} into {out}")
            train(
                arch,
                self.data,
                self.final.recipe(self.seed),
                out,
                device=self.device,
                resume=(out / STATE).exists(),
                progress=self.progress,
                report_test=False,
                log=lambda _: None,
                initial=self._subnet(arch).state_dict() if self.final.init == "inherit" else None,
                teacher=self.teacher() if self.final.distill else None,
            )
        payload = load_checkpoint(final, kind="model")
        if arch_of(payload).hash != arch.hash:
            raise CheckpointError(f"{final} holds another arch; remove {out} and run again")
        model = ShuffleNetV2(arch)
        model.load_state_dict(payload["state_dict"])
        return model.to(self.device).eval(), dict(payload["metrics"])
