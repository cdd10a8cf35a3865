"""``ShuffleNetV2(arch)``: a plain, standalone, torchvision-compatible model."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from nas.arch import STAGE_NAMES, ArchConfig
from nas.models._blocks import ShuffleUnit
from nas.models._layout import ModelLayout


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2 built from an :class:`~nas.arch.ArchConfig`.

    Module and parameter names follow ``torchvision.models.ShuffleNetV2`` (``conv1``,
    ``maxpool``, ``stage2``-``stage4``, ``conv5``, ``fc``), so a torchvision state dict of
    the same shape loads as is. The ``cifar`` stem is a stride-1 ``conv1`` and no max-pool.
    With a ``layout`` (a pruned model) the channel counts come from it instead of the
    arch's widths and split ratios.
    """

    def __init__(
        self,
        arch: ArchConfig,
        unit: Callable[..., nn.Module] = ShuffleUnit,
        layout: ModelLayout | None = None,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.layout = layout
        if layout is not None:
            layout.check(arch)
        stem_stride = 2 if arch.stem == "imagenet" else 1
        stem = layout.stem if layout is not None else arch.stem_channels
        self.conv1 = nn.Sequential(
            nn.Conv2d(arch.in_channels, stem, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(stem),
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
        in_channels = stem
        for s, name in enumerate(STAGE_NAMES):
            if layout is not None:
                units: list[nn.Module] = [ShuffleUnit.from_layout(u) for u in layout.stages[s]]
                in_channels = layout.stages[s][-1].out_channels
            else:
                width, ratio, kernel = arch.widths[s], arch.split_ratios[s], arch.kernels[s]
                units = [unit(in_channels, width, 2, ratio, kernel)]
                units += [unit(width, width, 1, ratio, kernel) for _ in range(arch.repeats[s] - 1)]
                in_channels = width
            setattr(self, name, nn.Sequential(*units))
        last = layout.last if layout is not None else arch.last_channels
        self.conv5 = nn.Sequential(
            nn.Conv2d(in_channels, last, 1, 1, 0, bias=False),
            nn.BatchNorm2d(last),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(last, arch.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x)
        return self.fc(x.mean((2, 3)))
