"""One training step's losses (standalone, with or without a teacher; a supernet's
sub-nets), the optimiser and the epoch line: the pieces of the loop with no state."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas.train._config import TrainConfig
from nas.train._strategies import Draw


def autocast(cuda: bool) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()


def model_step(
    net: nn.Module,
    teacher: nn.Module | None,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    cuda: bool,
) -> tuple[float, torch.Tensor]:
    """Backward of a standalone net's loss: label-smoothed cross-entropy, plus
    ``kd_ratio`` times the cross-entropy against a teacher's softmax; loss and logits."""
    with autocast(cuda):
        logits = net(x).float()
    loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
    if teacher is not None:
        with torch.no_grad(), autocast(cuda):
            soft = teacher(x).float().softmax(1)
        loss = loss + config.kd_ratio * F.cross_entropy(logits, soft)
    loss.backward()
    return float(loss.detach()), logits.detach()


def supernet_step(
    net: nn.Module,
    draws: Sequence[Draw],
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    cuda: bool,
    distributed: bool,
) -> tuple[float, torch.Tensor]:
    """Backward of every drawn sub-net's loss (gradients accumulate); the first one's loss
    and logits. The teacher learns from the labels, smoothed (regularisation stays on
    it); with ``config.distill`` the others learn from its softmax (in-place distillation)."""
    soft: torch.Tensor | None = None
    first: tuple[float, torch.Tensor] | None = None
    for i, draw in enumerate(draws):
        arch = draw.arch
        xi = (
            x
            if x.shape[-1] == arch.resolution
            else F.interpolate(
                x, size=(arch.resolution, arch.resolution), mode="bilinear", antialias=True
            )
        )
        # gradients of all sub-nets accumulate locally and are all-reduced once, at the end
        sync: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if distributed and i < len(draws) - 1:
            assert isinstance(net, nn.parallel.DistributedDataParallel)
            sync = net.no_sync()
        with sync:
            with autocast(cuda):
                logits = net(xi, arch).float()
            if soft is None:
                loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            else:
                loss = F.cross_entropy(logits, soft)
            loss.backward()
        if first is None:
            first = (float(loss.detach()), logits.detach())
        if draw.teacher and config.distill and soft is None:
            soft = logits.detach().softmax(1)
    assert first is not None
    return first


def rate(images_per_step: int, step_times: list[float]) -> float:
    if not step_times:
        return 0.0
    ordered = sorted(step_times)
    return images_per_step / max(ordered[len(ordered) // 2], 1e-9)


def sgd(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # BatchNorm and biases
    return torch.optim.SGD(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
    )


def epoch_summary(row: dict[str, Any], epochs: int) -> str:
    parts = [
        f"epoch {row['epoch']}/{epochs}",
        f"loss {row['train_loss']:.3f}",
        f"train acc {row['train_acc']:.3f}",
        f"{row['img_per_s']:.0f} img/s",
    ]
    parts += [f"{k.replace('_', ' ')} {v:.3f}" for k, v in row.items() if k.startswith("val_acc")]
    return "  ".join(parts)
