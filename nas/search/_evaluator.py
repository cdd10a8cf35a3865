"""What one trial computes: validation accuracy of a sub-net and its latency proxy."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from nas.arch import ArchConfig
from nas.data import DataSplits
from nas.latency import HardwareTarget, LatencyMeter, LatencyPredictor, LatencyStats
from nas.models import Supernet, count_flops, count_params
from nas.train import subnet_accuracy


class LatencyProxy:
    """The search's second objective for an arch: what stands in for its latency.

    ``unit``: of the objective and the budget; ``slack``: how far over the budget a
    candidate may score and still be measured for the final front (a proxy may be off
    near the budget; the final front is always measured)."""

    name: ClassVar[str]
    unit: ClassVar[str] = "ms"
    slack: ClassVar[float] = 1.15

    def objective(
        self, evaluator: Evaluator, arch: ArchConfig, predicted: float | None, flops: int
    ) -> tuple[float, LatencyStats | None]:
        """The objective, and the measurement when one was made."""
        raise NotImplementedError


PROXIES: dict[str, LatencyProxy] = {}


def register_proxy(cls: type[LatencyProxy]) -> type[LatencyProxy]:
    if cls.name in PROXIES:
        raise ValueError(f"latency proxy {cls.name!r} is registered already")
    PROXIES[cls.name] = cls()
    return cls


@register_proxy
class Measured(LatencyProxy):
    """The median measured on the target (the search's ground truth)."""

    name = "measured"
    slack = 1.0

    def objective(
        self, evaluator: Evaluator, arch: ArchConfig, predicted: float | None, flops: int
    ) -> tuple[float, LatencyStats | None]:
        if evaluator.meter is None:
            raise ValueError("the measured proxy needs a LatencyMeter")
        stats = evaluator.meter.measure_arch(arch).stats
        return stats.median_ms, stats


@register_proxy
class Predicted(LatencyProxy):
    """The lookup-table predictor's latency."""

    name = "predicted"

    def objective(
        self, evaluator: Evaluator, arch: ArchConfig, predicted: float | None, flops: int
    ) -> tuple[float, LatencyStats | None]:
        if predicted is None:
            raise ValueError("the predicted proxy needs a LatencyPredictor")
        return predicted, None


@register_proxy
class Flops(LatencyProxy):
    """Multiply-accumulates (millions): what a FLOPs-driven search would optimise."""

    name = "flops"
    unit = "MFLOPs"

    def objective(
        self, evaluator: Evaluator, arch: ArchConfig, predicted: float | None, flops: int
    ) -> tuple[float, LatencyStats | None]:
        return flops / 1e6, None


@dataclass
class Evaluation:
    """Everything recorded for one arch (stored as trial user attributes)."""

    arch: ArchConfig
    val_acc: float
    objective: float  # the second objective: latency (ms) or FLOPs (M)
    latency_ms: float | None  # measured median, if measured
    latency_p90_ms: float | None
    latency_cv: float | None
    noisy: bool
    predicted_ms: float | None
    flops: int
    params: int

    def attrs(self) -> dict[str, Any]:
        return {
            "arch_hash": self.arch.hash,
            "arch": self.arch.to_dict(),
            "name": self.arch.short_name(),
            "val_acc": self.val_acc,
            "latency_ms": self.latency_ms,
            "latency_p90_ms": self.latency_p90_ms,
            "latency_cv": self.latency_cv,
            "noisy": self.noisy,
            "predicted_ms": self.predicted_ms,
            "flops": self.flops,
            "params": self.params,
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any], objective: float) -> Evaluation:
        return cls(
            ArchConfig.from_dict(attrs["arch"]),
            attrs["val_acc"],
            objective,
            attrs["latency_ms"],
            attrs["latency_p90_ms"],
            attrs["latency_cv"],
            attrs["noisy"],
            attrs["predicted_ms"],
            attrs["flops"],
            attrs["params"],
        )


class Evaluator:
    """Scores archs for the search: accuracy from the supernet, latency from the target.

    Accuracy is the validation accuracy of the sub-net after BatchNorm recalibration on
    training batches (fixed seed, so an arch always scores the same); the test split is
    never touched. The latency proxy is the measured median on the target, the lookup-table
    prediction, or FLOPs. Measurement and evaluation never overlap: the evaluator waits
    for the measuring process before it computes accuracy.
    """

    def __init__(
        self,
        supernet: Supernet,
        data: DataSplits,
        target: HardwareTarget,
        proxy: str,
        meter: LatencyMeter | None,
        predictor: LatencyPredictor | None,
        bn_batches: int,
        batch_size: int = 256,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        if proxy not in PROXIES:
            raise ValueError(f"unknown proxy {proxy!r}")
        self.supernet, self.data, self.target, self.proxy = supernet, data, target, proxy
        self.meter, self.predictor = meter, predictor
        self.bn_batches, self.batch_size, self.device, self.seed = (
            bn_batches,
            batch_size,
            device,
            seed,
        )

    def accuracy(self, arch: ArchConfig) -> float:
        result = subnet_accuracy(
            self.supernet, arch, self.data, self.bn_batches, self.batch_size, self.device, self.seed
        )
        return float(result["acc"])

    def evaluate(
        self, arch: ArchConfig, on_latency: Callable[[float], None] | None = None
    ) -> Evaluation:
        """Latency first (cheap, and the caller may report it early), then accuracy."""
        predicted = self.predictor.predict(arch) if self.predictor is not None else None
        flops, params = count_flops(arch), count_params(arch)
        objective, stats = PROXIES[self.proxy].objective(self, arch, predicted, flops)
        latency = p90 = cv = None
        noisy = False
        if stats is not None:
            latency, p90, cv, noisy = stats.median_ms, stats.p90_ms, stats.cv, stats.noisy
        if on_latency is not None:
            on_latency(objective)
        with torch.inference_mode(False):
            acc = self.accuracy(arch)
        if not math.isfinite(acc):
            raise RuntimeError(f"accuracy of {arch.hash} is not finite")
        return Evaluation(arch, acc, objective, latency, p90, cv, noisy, predicted, flops, params)
