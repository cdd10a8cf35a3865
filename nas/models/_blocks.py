"""The ShuffleNet V2 unit with a configurable split ratio and depthwise kernel."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nas._errors import ConfigError
from nas.arch import split_channels
from nas.models._layout import UnitLayout


def channel_shuffle(x: Tensor, groups: int = 2) -> Tensor:
    """Interleave ``groups`` equal channel groups (ShuffleNet's channel shuffle)."""
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def depthwise_conv(channels: int, kernel_size: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(
        channels, channels, kernel_size, stride, kernel_size // 2, groups=channels, bias=False
    )


def pointwise_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False)


class ShuffleUnit(nn.Module):
    """ShuffleNet V2 unit; at ``split_ratio=0.5, kernel_size=3`` exactly torchvision's
    ``InvertedResidual`` (same layers, same parameter names).

    Stride 1 (``in == out == c``): the first ``c - b`` channels pass through, the last
    ``b = round(split_ratio * c)`` go through ``branch2`` (1x1, depthwise kxk, 1x1).
    Stride 2: ``branch1`` (depthwise kxk stride 2, 1x1) makes ``out - b`` channels and
    ``branch2`` makes ``b = round(split_ratio * out)``. Then concat and a 2-group shuffle.
    ``branch_channels`` sets ``b`` directly instead of the ratio. A pruned unit, with any
    channel counts and output order, is built by :meth:`from_layout`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        split_ratio: float = 0.5,
        kernel_size: int = 3,
        branch_channels: int | None = None,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ConfigError(f"stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ConfigError(
                f"a stride-1 unit needs in == out channels, got {in_channels} -> {out_channels}"
            )
        if out_channels % 2:
            raise ConfigError(f"out_channels must be even for the shuffle, got {out_channels}")
        if branch_channels is None:
            other, branch = split_channels(out_channels, split_ratio)
        elif 0 < branch_channels < out_channels:
            other, branch = out_channels - branch_channels, branch_channels
        else:
            raise ConfigError(
                f"branch_channels must be in [1, {out_channels - 1}], got {branch_channels}"
            )
        layout = UnitLayout(
            stride,
            kernel_size,
            in_channels,
            keep=other if stride == 1 else 0,
            short=other if stride == 2 else 0,
            mid=branch,
            branch=branch,
        )
        self._build(layout)

    @classmethod
    def from_layout(cls, layout: UnitLayout) -> ShuffleUnit:
        layout.check()
        unit = cls.__new__(cls)
        nn.Module.__init__(unit)
        unit._build(layout)
        return unit

    def _build(self, layout: UnitLayout) -> None:
        self.layout = layout
        self.stride = layout.stride
        self.passthrough = layout.keep if layout.stride == 1 else 0
        k, i = layout.kernel, layout.in_channels
        if layout.stride == 2:
            self.branch1 = nn.Sequential(
                depthwise_conv(i, k, 2),
                nn.BatchNorm2d(i),
                pointwise_conv(i, layout.short),
                nn.BatchNorm2d(layout.short),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            pointwise_conv(i if layout.stride == 2 else i - layout.keep, layout.mid),
            nn.BatchNorm2d(layout.mid),
            nn.ReLU(inplace=True),
            depthwise_conv(layout.mid, k, layout.stride),
            nn.BatchNorm2d(layout.mid),
            pointwise_conv(layout.mid, layout.branch),
            nn.BatchNorm2d(layout.branch),
            nn.ReLU(inplace=True),
        )
        self.permutation: Tensor | None
        order = None if layout.permutation is None else torch.tensor(layout.permutation)
        self.register_buffer("permutation", order, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            keep = self.passthrough
            if keep == 0:  # a pruned unit can lose its whole pass-through half
                out = self.branch2(x)
            else:
                out = torch.cat((x[:, :keep], self.branch2(x[:, keep:])), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        if self.permutation is None:
            return channel_shuffle(out, 2)
        return out.index_select(1, self.permutation)
