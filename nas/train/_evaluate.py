"""BatchNorm recalibration of a sub-net and accuracy on a split."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch import ArchConfig
from nas.data import BatchLoader, DataSplits, Split
from nas.models import ReferenceNet, ShuffleNetV2, Supernet


def recalibrate_bn(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_batches: int
) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics from ``num_batches`` batches:
    torch's ``swa_utils.update_bn`` (statistics reset, then an exact average over the
    batches, in training mode without gradients; the model's mode is kept)."""
    torch.optim.swa_utils.update_bn(itertools.islice(batches, num_batches), model)
    return model


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], autocast: bool = False
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over ``batches`` (model in eval mode)."""
    was_training = model.training
    model.eval()
    correct, total, loss = 0, 0, 0.0
    for x, y in batches:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
        loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
        total += int(y.numel())
    model.train(was_training)
    return {"acc": correct / max(total, 1), "loss": loss / max(total, 1), "n": total}


def loader_for(
    split: Split,
    data: DataSplits,
    arch: ArchConfig | ReferenceNet,
    batch_size: int,
    device: torch.device | str,
    shuffle: bool = False,
    seed: int = 0,
) -> BatchLoader:
    """Evaluation batches of ``split`` at ``arch``'s resolution, no augmentation."""
    return BatchLoader(
        split,
        batch_size,
        mean=data.mean,
        std=data.std,
        shuffle=shuffle,
        resolution=arch.resolution,
        device=device,
        seed=seed,
    )


def subnet_model(
    supernet: Supernet,
    arch: ArchConfig,
    data: DataSplits,
    bn_batches: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> ShuffleNetV2:
    """Extract ``arch`` and re-estimate its BatchNorm statistics on training images.

    Calibration uses ``bn_batches`` shuffled, un-augmented training batches drawn with a
    fixed ``seed``, so the same arch always gets the same statistics.
    """
    model = supernet.extract(arch).to(device)
    calib = loader_for(data.train, data, arch, batch_size, device, shuffle=True, seed=seed)
    recalibrate_bn(model, calib, bn_batches)
    return model.eval()


def subnet_accuracy(
    supernet: Supernet,
    arch: ArchConfig,
    data: DataSplits,
    bn_batches: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> dict[str, float]:
    """Validation accuracy of sub-net ``arch`` after BatchNorm recalibration, in fp32 as
    the supernet trains on every device (every sub-net is new conv shapes: see Trainer)."""
    model = subnet_model(supernet, arch, data, bn_batches, batch_size, device, seed)
    return evaluate(model, loader_for(data.val, data, arch, batch_size, device))
