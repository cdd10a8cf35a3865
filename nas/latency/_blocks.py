"""The pieces of a network whose latencies make up the lookup table: stem, units, head."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nas.arch import STAGE_NAMES, ArchConfig, conv_out, split_channels
from nas.models import ShuffleUnit
from nas.space import SearchSpace


@dataclass(frozen=True)
class Block:
    """One measurable piece: ``stem`` (conv1 + max-pool), ``unit`` or ``head`` (conv5,
    pooling, classifier), with every number its latency depends on."""

    kind: str
    in_channels: int
    out_channels: int
    size: int  # spatial size of the (square) input
    branch_channels: int = 0  # unit only
    stride: int = 1  # unit only
    kernel: int = 3  # unit only
    stem: str = ""  # stem only
    num_classes: int = 0  # head only

    @property
    def key(self) -> str:
        if self.kind == "stem":
            return f"stem:{self.stem}-i{self.in_channels}-o{self.out_channels}@{self.size}"
        if self.kind == "head":
            return f"head:i{self.in_channels}-o{self.out_channels}-c{self.num_classes}@{self.size}"
        return (
            f"unit:i{self.in_channels}-o{self.out_channels}-b{self.branch_channels}"
            f"-s{self.stride}-k{self.kernel}@{self.size}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def params(self) -> int:
        """Parameters of the block in closed form (convs, BatchNorm affine, classifier)."""
        if self.kind == "stem":
            return self.in_channels * self.out_channels * 9 + 2 * self.out_channels
        if self.kind == "head":
            c, n = self.out_channels, self.num_classes
            return self.in_channels * c + 2 * c + c * n + n
        b, k, i, o = self.branch_channels, self.kernel, self.in_channels, self.out_channels
        main = (i if self.stride == 2 else b) * b + b * k * k + b * b + 6 * b
        if self.stride == 1:
            return main
        other = o - b
        return main + i * k * k + 2 * i + i * other + 2 * other

    def build(self) -> nn.Module:
        if self.kind == "stem":
            return _Stem(self.stem, self.in_channels, self.out_channels)
        if self.kind == "head":
            return _Head(self.in_channels, self.out_channels, self.num_classes)
        return ShuffleUnit(
            self.in_channels,
            self.out_channels,
            self.stride,
            kernel_size=self.kernel,
            branch_channels=self.branch_channels,
        )


class _Stem(nn.Sequential):
    def __init__(self, stem: str, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, 2 if stem == "imagenet" else 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity(),
        )


class _Head(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv5 = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(out_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv5(x).mean((2, 3)))


def arch_blocks(arch: ArchConfig) -> list[Block]:
    """The blocks of ``arch`` in forward order (stem, every unit, head)."""
    blocks = [Block("stem", arch.in_channels, arch.stem_channels, arch.resolution, stem=arch.stem)]
    size = arch.stem_out_size()
    for unit in arch.units():
        blocks.append(
            Block(
                "unit",
                unit.in_channels,
                unit.out_channels,
                unit.in_size,
                unit.branch_channels,
                unit.stride,
                unit.kernel,
            )
        )
        size = conv_out(unit.in_size, unit.stride)
    blocks.append(
        Block("head", arch.widths[-1], arch.last_channels, size, num_classes=arch.num_classes)
    )
    return blocks


def space_blocks(space: SearchSpace) -> list[Block]:
    """Every distinct block any arch of ``space`` contains, in a stable order."""
    c = space.choices
    found: dict[str, Block] = {}

    def add(block: Block) -> None:
        found.setdefault(block.key, block)

    for res, stem_ch, in_ch, stem in itertools.product(
        c["resolution"], c["stem_channels"], c["in_channels"], c["stem"]
    ):
        add(Block("stem", in_ch, stem_ch, res, stem=stem))
        probe = space.min_arch.replace(resolution=res, stem=stem)
        size = probe.stem_out_size()
        prev_widths = c["stem_channels"]
        for name in STAGE_NAMES:
            widths, ratios, kernels = (
                c[f"{name}.width"],
                c[f"{name}.split_ratio"],
                c[f"{name}.kernel"],
            )
            splits = {(w, split_channels(w, r)[1]) for w in widths for r in ratios}
            for (w, b), k in itertools.product(sorted(splits), kernels):
                for prev in prev_widths:
                    add(Block("unit", prev, w, size, b, 2, k))
                add(Block("unit", w, w, conv_out(size, 2), b, 1, k))
            size = conv_out(size, 2)
            prev_widths = widths
        for w4, last, classes in itertools.product(
            prev_widths, c["last_channels"], c["num_classes"]
        ):
            add(Block("head", w4, last, size, num_classes=classes))
    return list(found.values())


def example_input(shape: tuple[int, ...]) -> Tensor:
    return torch.randn(*shape)
