"""``ShuffleNetV2(arch)``: a plain, standalone, torchvision-compatible model."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from nas.arch import STAGE_NAMES, ArchConfig
from nas.models._blocks import ShuffleUnit


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2 built from an :class:`~nas.arch.ArchConfig`.

    Module and parameter names follow ``torchvision.models.ShuffleNetV2`` (``conv1``,
    ``maxpool``, ``stage2``-``stage4``, ``conv5``, ``fc``), so a torchvision state dict of
    the same shape loads as is. The ``cifar`` stem is a stride-1 ``conv1`` and no max-pool.
    """

    def __init__(self, arch: ArchConfig, unit: Callable[..., nn.Module] = ShuffleUnit) -> None:
        super().__init__()
        self.arch = arch
        stem_stride = 2 if arch.stem == "imagenet" else 1
        self.conv1 = nn.Sequential(
            nn.Conv2d(arch.in_channels, arch.stem_channels, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(arch.stem_channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool: nn.Module = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            if arch.stem == "imagenet"
            else nn.Identity()
        )
        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        in_channels = arch.stem_channels
        for s, name in enumerate(STAGE_NAMES):
            width, ratio, kernel = arch.widths[s], arch.split_ratios[s], arch.kernels[s]
            units = [unit(in_channels, width, 2, ratio, kernel)]
            units += [unit(width, width, 1, ratio, kernel) for _ in range(arch.repeats[s] - 1)]
            setattr(self, name, nn.Sequential(*units))
            in_channels = width
        self.conv5 = nn.Sequential(
            nn.Conv2d(in_channels, arch.last_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(arch.last_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(arch.last_channels, arch.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x)
        return self.fc(x.mean((2, 3)))
