"""``Supernet(space)``: one set of shared weights that runs every arch of a search space."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nas.arch import STAGE_NAMES, ArchConfig, split_channels
from nas.models._blocks import channel_shuffle
from nas.models._dynamic import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear, crop_kernel
from nas.models._shufflenetv2 import ShuffleNetV2
from nas.space import SearchSpace

# Version of the shared-weight layout, recorded in supernet checkpoints. v2: a stride-1
# branch's first conv indexes its weight columns by input channel position (v1 started
# them at the branch's first channel, whatever the split).
SUPERNET_LAYOUT = 2


def _pointwise(in_channels: int, out_channels: int) -> DynamicConv2d:
    return DynamicConv2d(in_channels, out_channels, 1, 1, 0, bias=False)


def _depthwise(channels: int, kernel_size: int, stride: int) -> DynamicConv2d:
    return DynamicConv2d(
        channels, channels, kernel_size, stride, kernel_size // 2, groups=channels, bias=False
    )


class _SuperUnit(nn.Module):
    """A ``ShuffleUnit`` sized for the largest choices, run at any smaller choice."""

    def __init__(
        self,
        in_max: int,
        other_max: int,
        branch_max: int,
        stride: int,
        kernel_max: int,
        other_min: int = 0,
    ) -> None:
        super().__init__()
        self.stride = stride
        # Stride 1: the branch reads input channels [other, width); its first conv has one
        # weight column per input *position* from the smallest pass-through on (see forward).
        self.other_min = other_min if stride == 1 else 0
        if stride == 2:
            self.branch1 = nn.Sequential(
                _depthwise(in_max, kernel_max, stride),
                DynamicBatchNorm2d(in_max),
                _pointwise(in_max, other_max),
                DynamicBatchNorm2d(other_max),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            _pointwise(in_max - self.other_min, branch_max),
            DynamicBatchNorm2d(branch_max),
            nn.ReLU(inplace=True),
            _depthwise(branch_max, kernel_max, stride),
            DynamicBatchNorm2d(branch_max),
            _pointwise(branch_max, branch_max),
            DynamicBatchNorm2d(branch_max),
            nn.ReLU(inplace=True),
        )

    @staticmethod
    def _run(
        layers: nn.Sequential, x: Tensor, out_channels: int, kernel: int, in_offset: int = 0
    ) -> Tensor:
        for i, layer in enumerate(layers):
            if isinstance(layer, DynamicConv2d):
                offset = in_offset if i == 0 else 0
                x = layer(x, out_channels, kernel if layer.groups > 1 else 1, offset)
            else:
                x = layer(x)
        return x

    def branch_offset(self, out_channels: int, ratio: float) -> int:
        """Weight column of the branch's first input channel (stride 1; 0 for stride 2)."""
        return split_channels(out_channels, ratio)[0] - self.other_min if self.stride == 1 else 0

    def forward(self, x: Tensor, out_channels: int, ratio: float, kernel: int) -> Tensor:
        other, branch = split_channels(out_channels, ratio)
        if self.stride == 1:
            offset = self.branch_offset(out_channels, ratio)
            out = torch.cat(
                (x[:, :other], self._run(self.branch2, x[:, other:], branch, kernel, offset)),
                dim=1,
            )
        else:
            out = torch.cat(
                (
                    self._run(self.branch1, x, other, kernel),
                    self._run(self.branch2, x, branch, kernel),
                ),
                dim=1,
            )
        return channel_shuffle(out, 2)


class Supernet(nn.Module):
    """Weight-sharing ShuffleNet V2 over a :class:`~nas.space.SearchSpace`.

    Weights are sized for the largest choice on every axis. ``forward(x, arch)`` runs the
    sub-net ``arch`` by slicing: the first ``k`` channels of every layer, the first ``n``
    units of every stage, the centre ``k x k`` of every depthwise kernel. ``x`` must already
    be at ``arch.resolution``. :meth:`extract` copies those slices into a standalone
    :class:`ShuffleNetV2` that computes the same function.

    Channel alignment: a stride-1 unit passes input channels ``[0, other)`` through and
    feeds ``[other, width)`` to its branch, where ``other`` depends on width and split
    ratio. The branch's first 1x1 conv therefore indexes its weight columns by *input
    channel position*, counted from the stage's smallest pass-through, not from the
    branch's first channel: the same column then meets the same channel position in every
    sub-net, so shared weights see consistent inputs across widths (layout v1 started every
    branch at column 0, so one column read a different channel for each split). Channels
    stay fully aligned at split ratio 0.5; at other ratios the channel shuffle after the
    concat moves the split point, which no slicing can undo.

    BatchNorm: affine parameters and running statistics are shared by slicing as well. In
    training mode each sub-net normalises with its own batch statistics; the shared running
    statistics are a blend over every sub-net trained, so before a sub-net is evaluated its
    statistics are re-estimated on training batches (``nas.train.recalibrate_bn`` on the
    extracted model), which is what search and evaluation do.
    """

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        top = space.max_arch
        c = space.choices
        self.conv1 = nn.Sequential(
            DynamicConv2d(
                top.in_channels,
                top.stem_channels,
                3,
                2 if top.stem == "imagenet" else 1,
                1,
                bias=False,
            ),
            DynamicBatchNorm2d(top.stem_channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool: nn.Module = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            if top.stem == "imagenet"
            else nn.Identity()
        )
        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        in_max = top.stem_channels
        for s, name in enumerate(STAGE_NAMES):
            splits = [
                split_channels(w, r) for w in c[f"{name}.width"] for r in c[f"{name}.split_ratio"]
            ]
            other_max = max(o for o, _ in splits)
            other_min = min(o for o, _ in splits)
            branch_max = max(b for _, b in splits)
            kernel_max = top.kernels[s]
            units = [_SuperUnit(in_max, other_max, branch_max, 2, kernel_max)]
            units += [
                _SuperUnit(top.widths[s], other_max, branch_max, 1, kernel_max, other_min)
                for _ in range(top.repeats[s] - 1)
            ]
            setattr(self, name, nn.Sequential(*units))
            in_max = top.widths[s]
        self.conv5 = nn.Sequential(
            _pointwise(in_max, top.last_channels),
            DynamicBatchNorm2d(top.last_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = DynamicLinear(top.last_channels, top.num_classes)
        self.zero_init_branches()

    def zero_init_branches(self) -> None:
        """Start every stride-1 unit's branch at zero output (its last BatchNorm's scale at 0),
        so each unit starts close to a pass-through of its identity half.

        Why: with torch's default init the gradient norm of the deepest sub-net (32 units)
        is about 4,000 at initialisation against 2-10 for torchvision-sized ones, and one
        supernet step on it at a normal learning rate throws every shared weight off. With
        zero-initialised branches all sub-nets start at a gradient norm of 2-3 (measured on
        the CIFAR space); the branches grow from the loss as in ResNets' zero-init trick."""
        for stage in (self.stage2, self.stage3, self.stage4):
            for unit in stage:
                assert isinstance(unit, _SuperUnit)
                if unit.stride == 1:
                    last_bn = unit.branch2[6]
                    assert isinstance(last_bn, DynamicBatchNorm2d)
                    nn.init.zeros_(last_bn.weight)

    def forward(self, x: Tensor, arch: ArchConfig | None = None) -> Tensor:
        """Run sub-net ``arch`` (default: the largest) on ``x``."""
        if arch is None:
            arch = self.space.max_arch
        else:
            self.space.check(arch)
        conv, bn, relu = self.conv1
        x = self.maxpool(relu(bn(conv(x, arch.stem_channels))))
        for s, name in enumerate(STAGE_NAMES):
            stage: nn.Sequential = getattr(self, name)
            for unit in stage[: arch.repeats[s]]:
                x = unit(x, arch.widths[s], arch.split_ratios[s], arch.kernels[s])
        conv, bn, relu = self.conv5
        x = relu(bn(conv(x, arch.last_channels)))
        return self.fc(x.mean((2, 3)))

    @torch.no_grad()
    def extract(self, arch: ArchConfig) -> ShuffleNetV2:
        """A standalone :class:`ShuffleNetV2` with copies of ``arch``'s weight slices."""
        self.space.check(arch)
        model = ShuffleNetV2(arch)
        shared = self.state_dict()
        offsets = {}  # stride-1 branch inputs: weight columns from the unit's offset
        for s, name in enumerate(STAGE_NAMES):
            for i, unit in enumerate(getattr(self, name)[: arch.repeats[s]]):
                assert isinstance(unit, _SuperUnit)
                offset = unit.branch_offset(arch.widths[s], arch.split_ratios[s])
                offsets[f"{name}.{i}.branch2.0.weight"] = offset
        model.load_state_dict(
            {
                name: _slice_like(shared[name], like.shape, offsets.get(name, 0))
                for name, like in model.state_dict().items()
            }
        )
        return model.to(next(self.parameters()).device).train(self.training)


def _slice_like(tensor: Tensor, shape: torch.Size, in_offset: int = 0) -> Tensor:
    """First-k slice of every dimension (dimension 1 from ``in_offset``), except the centre
    crop of conv kernels."""
    if tensor.dim() == 4 and tensor.shape[-1] != shape[-1]:
        tensor = crop_kernel(tensor, shape[-1])
    starts = [0] * len(shape)
    if in_offset:
        starts[1] = in_offset
    return tensor[tuple(slice(a, a + n) for a, n in zip(starts, shape, strict=True))]
