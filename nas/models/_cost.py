"""Parameter and FLOP counts of an arch, computed on the meta device (no memory, no math)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from nas.arch import ArchConfig
from nas.models._shufflenetv2 import ShuffleNetV2


@lru_cache(maxsize=4096)
def _counts(arch: ArchConfig) -> tuple[int, int]:
    with torch.device("meta"):
        model = ShuffleNetV2(arch).eval()
        x = torch.empty(1, arch.in_channels, arch.resolution, arch.resolution)
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    # torch counts a multiply-accumulate as 2 FLOPs; report MACs, like torchvision and the
    # ShuffleNet papers (ShuffleNetV2 x1.0 at 224 px: 146M).
    return params, counter.get_total_flops() // 2


def count_params(arch: ArchConfig) -> int:
    """Number of trainable parameters of ``ShuffleNetV2(arch)``."""
    return _counts(arch)[0]


def count_flops(arch: ArchConfig) -> int:
    """FLOPs of one image at ``arch.resolution``, counted as multiply-accumulates (MACs).

    Counted by ``torch.utils.flop_counter`` (convolutions and the classifier; BatchNorm,
    ReLU and pooling are not counted), halved to MACs: the convention of torchvision's
    published numbers (x0.5: 41M, x1.0: 146M at 224 px).
    """
    return _counts(arch)[1]


def count_model(model: torch.nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Parameters and MACs (as :func:`count_flops`) of any model instance, e.g. a pruned
    one, for one input of ``input_shape`` (batch 1)."""
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(*input_shape, device=device))
    model.train(was_training)
    return params, counter.get_total_flops() // 2
