"""What pruning and quantization share: loading a model checkpoint with its data, the
metrics recorded before and after, latency on a target."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from nas import CheckpointError, ConfigError
from nas.arch import ArchConfig
from nas.checkpoint import arch_of, load_checkpoint, model_from_checkpoint
from nas.data import BatchLoader, DataSpec, DataSplits, load_data
from nas.latency import Measurement
from nas.models import ShuffleNetV2, count_model
from nas.train import evaluate, loader_for


def load_source(
    checkpoint: Path, data: DataSpec | None
) -> tuple[dict[str, Any], ShuffleNetV2, DataSplits]:
    """A model checkpoint, the model rebuilt from it and its data (the one it was trained
    on unless ``data`` says otherwise)."""
    payload = load_checkpoint(checkpoint, kind="model")
    arch = arch_of(payload)
    model = model_from_checkpoint(payload)
    if data is None:
        if "data" not in payload:
            raise CheckpointError(f"{checkpoint} records no data source; pass --data")
        data = DataSpec.from_dict(payload["data"]["spec"])
    splits = load_data(data)
    if (splits.num_classes, splits.channels) != (arch.num_classes, arch.in_channels):
        raise ConfigError(
            f"{checkpoint} classifies {arch.num_classes} classes of "
            f"{arch.in_channels}-channel images; the data has "
            f"{splits.num_classes} classes of {splits.channels}"
        )
    return payload, model, splits


def model_metrics(model: ShuffleNetV2, data: DataSplits, device: str = "cpu") -> dict[str, Any]:
    """Parameters, MACs, validation and test accuracy of ``model``."""
    arch = model.arch
    params, flops = count_model(model, input_shape(arch))
    val = evaluate(model, loader_for(data.val, data, arch, 256, device))["acc"]
    test = evaluate(model, loader_for(data.test, data, arch, 256, device))["acc"]
    return {"params": params, "flops": flops, "val_acc": val, "test_acc": test}


def input_shape(arch: ArchConfig, batch_size: int = 1) -> tuple[int, int, int, int]:
    return (batch_size, arch.in_channels, arch.resolution, arch.resolution)


def train_batches(
    data: DataSplits, arch: ArchConfig, batch_size: int, seed: int, augment: bool = False
) -> BatchLoader:
    return BatchLoader(
        data.train,
        batch_size,
        mean=data.mean,
        std=data.std,
        shuffle=True,
        augment=augment,
        resolution=arch.resolution,
        seed=seed,
    )


def latency_record(target: str, *measurements: Measurement) -> dict[str, Any]:
    """One subject's latency on ``target``: the median over its rounds of each round's
    median (one round: that measurement), with every round kept."""
    if not measurements:
        raise ValueError("latency_record needs at least one measurement")
    stats = [m.stats for m in measurements]
    return {
        "target": target,
        "latency_ms": statistics.median(s.median_ms for s in stats),
        "latency_p90_ms": statistics.median(s.p90_ms for s in stats),
        "latency_cv": max(s.cv for s in stats),
        "noisy": any(s.noisy for s in stats),
        "cached": any(m.cached for m in measurements),
        "rounds_ms": [s.median_ms for s in stats],
    }
