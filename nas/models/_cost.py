"""Parameter and FLOP counts of an arch, computed on the meta device (no memory, no math)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from nas.arch import ArchConfig
from nas.models._shufflenetv2 import ShuffleNetV2


@lru_cache(maxsize=4096)
def _param_count(arch: ArchConfig) -> int:
    with torch.device("meta"):  # shapes only: no memory, no math
        return sum(p.numel() for p in ShuffleNetV2(arch).parameters())


def _conv_macs(c_in: int, c_out: int, kernel: int, size: int, groups: int = 1) -> int:
    return c_in // groups * c_out * kernel * kernel * size * size


def _analytic_flops(arch: ArchConfig) -> int:
    """The MACs ``FlopCounterMode`` counts for ``ShuffleNetV2(arch)``, from the unit
    shapes alone (microseconds instead of a traced forward pass; equal, tested)."""
    stem_size = -(-arch.resolution // (2 if arch.stem == "imagenet" else 1))
    macs = _conv_macs(arch.in_channels, arch.stem_channels, 3, stem_size)
    size = arch.stem_out_size()
    for u in arch.units():
        out = -(-u.in_size // u.stride)
        b, other = u.branch_channels, u.out_channels - u.branch_channels
        if u.stride == 2:  # shortcut: depthwise stride 2, then 1x1
            macs += _conv_macs(u.in_channels, u.in_channels, u.kernel, out, u.in_channels)
            macs += _conv_macs(u.in_channels, other, 1, out)
        branch_in = u.in_channels if u.stride == 2 else b
        macs += _conv_macs(branch_in, b, 1, u.in_size)
        macs += _conv_macs(b, b, u.kernel, out, b) + _conv_macs(b, b, 1, out)
        size = out
    macs += _conv_macs(arch.widths[-1], arch.last_channels, 1, size)
    return macs + arch.last_channels * arch.num_classes


def count_params(arch: ArchConfig) -> int:
    """Number of trainable parameters of ``ShuffleNetV2(arch)``."""
    return _param_count(arch)


def count_flops(arch: ArchConfig) -> int:
    """FLOPs of one image at ``arch.resolution``, counted as multiply-accumulates (MACs).

    Counted by ``torch.utils.flop_counter`` (convolutions and the classifier; BatchNorm,
    ReLU and pooling are not counted), halved to MACs: the convention of torchvision's
    published numbers (x0.5: 41M, x1.0: 146M at 224 px). Computed from the unit shapes,
    which gives the counter's figure exactly (tested), in microseconds.
    """
    return _analytic_flops(arch)


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
