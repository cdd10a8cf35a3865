"""``Supernet(space)``: one set of shared weights that runs every arch of a search space."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nas._errors import ConfigError
from nas.arch import STAGE_NAMES, ArchConfig, split_channels
from nas.models._blocks import channel_shuffle
from nas.models._dynamic import DynamicBatchNorm2d, DynamicConv2d, DynamicLinear, crop_kernel
from nas.models._shufflenetv2 import ShuffleNetV2
from nas.space import SearchSpace

# Version of the shared-weight layout, recorded in supernet checkpoints. v3: convs that
# read channels coming through splits and shuffles index their weights by channel id (v2
# by channel position counted from a stage's smallest pass-through; v1 from the branch's
# first channel).
SUPERNET_LAYOUT = 3
# Initial scale of every stride-1 branch's last BatchNorm (see Supernet.scale_branches).
BRANCH_SCALE = 0.1
# How a conv that reads channels coming through splits and shuffles finds its weight entry
# per input channel (see Supernet): by the channel's id (layout v3), or by its position.
CHANNEL_MATCHES = ("id", "position")


def _pointwise(in_channels: int, out_channels: int) -> DynamicConv2d:
    return DynamicConv2d(in_channels, out_channels, 1, 1, 0, bias=False)


def _depthwise(channels: int, kernel_size: int, stride: int) -> DynamicConv2d:
    return DynamicConv2d(
        channels, channels, kernel_size, stride, kernel_size // 2, groups=channels, bias=False
    )


def _read_by_id(conv: DynamicConv2d, fan_in: int) -> DynamicConv2d:
    """``conv`` (a 1x1 conv with one weight column per channel id) initialised as
    ``nn.Conv2d`` initialises a conv of ``fan_in`` inputs, the most a sub-net feeds it.
    Initialised by its column count (up to 25x more ids than inputs), the weights would
    start that much smaller, and behind BatchNorm a small weight trains at a large
    effective learning rate."""
    bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)), as nn.Conv2d
    nn.init.uniform_(conv.weight, -bound, bound)
    return conv


def shuffle_ids(ids: Tensor) -> Tensor:
    """The channel ids after ``channel_shuffle(x, 2)`` of channels that carry ``ids``."""
    return ids.view(2, -1).t().reshape(-1)


def check_supernet_options(branch_scale: float, channel_match: str) -> None:
    """Raise ``ConfigError`` unless ``Supernet(space, branch_scale, channel_match)`` is valid
    (shared with the training config, which checks before anything is built)."""
    if not (branch_scale > 0 and math.isfinite(branch_scale)):
        raise ConfigError(
            f"branch_scale must be a positive number, got {branch_scale}: at 0 a branch's "
            "ReLU passes no gradient and the branch never trains"
        )
    if channel_match not in CHANNEL_MATCHES:
        raise ConfigError(
            f"unknown channel_match {channel_match!r}: choose {' or '.join(CHANNEL_MATCHES)}"
        )


class _SuperUnit(nn.Module):
    """A ``ShuffleUnit`` sized for the largest choices, run at any smaller choice.

    ``in_ids``: how many channel ids can reach the unit's input (its input convs have a
    weight entry per id); ``in_max``: the most input channels a sub-net feeds them.
    ``first_id``: the id of the first channel the unit's main branch makes; a stride-2
    unit's shortcut branch makes ids ``[0, other)``. Channels matched by position: ``ids``
    is ``None`` throughout and ``in_ids == in_max``.
    """

    def __init__(
        self,
        in_ids: int,
        in_max: int,
        other_max: int,
        branch_max: int,
        stride: int,
        kernel_max: int,
        first_id: int,
    ) -> None:
        super().__init__()
        self.stride, self.first_id = stride, first_id
        if stride == 2:
            self.branch1 = nn.Sequential(
                _depthwise(in_ids, kernel_max, stride),
                DynamicBatchNorm2d(in_ids),
                _read_by_id(_pointwise(in_ids, other_max), in_max),
                DynamicBatchNorm2d(other_max),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            _read_by_id(_pointwise(in_ids, branch_max), in_max),
            DynamicBatchNorm2d(branch_max),
            nn.ReLU(inplace=True),
            _depthwise(branch_max, kernel_max, stride),
            DynamicBatchNorm2d(branch_max),
            _pointwise(branch_max, branch_max),
            DynamicBatchNorm2d(branch_max),
            nn.ReLU(inplace=True),
        )

    def wiring(self, ids: Tensor, out_channels: int, ratio: float) -> tuple[Tensor, Tensor]:
        """Ids of the channels entering the main branch, and of the unit's output channels,
        for input channels that carry ``ids``."""
        other, branch = split_channels(out_channels, ratio)
        made = torch.arange(self.first_id, self.first_id + branch, device=ids.device)
        if self.stride == 1:
            return ids[other:], shuffle_ids(torch.cat((ids[:other], made)))
        return ids, shuffle_ids(torch.cat((torch.arange(other, device=ids.device), made)))

    def forward(
        self, x: Tensor, ids: Tensor | None, out_channels: int, ratio: float, kernel: int
    ) -> tuple[Tensor, Tensor | None]:
        """The unit's output and the ids of its channels (``None``: matched by position)."""
        other, branch = split_channels(out_channels, ratio)
        branch_ids, out_ids = (None, None) if ids is None else self.wiring(ids, out_channels, ratio)
        if self.stride == 1:
            main = self._main(x[:, other:], branch_ids, branch, kernel)
            out = torch.cat((x[:, :other], main), dim=1)
        else:
            dw, bn, pw, bn_out, relu = self.branch1
            short = relu(bn_out(pw(bn(dw(x, None, kernel, ids), ids), other, None, ids)))
            out = torch.cat((short, self._main(x, ids, branch, kernel)), dim=1)
        return channel_shuffle(out, 2), out_ids

    def _main(self, x: Tensor, ids: Tensor | None, branch: int, kernel: int) -> Tensor:
        pw_in, bn_in, relu_in, dw, bn_dw, pw_out, bn_out, relu_out = self.branch2
        x = relu_in(bn_in(pw_in(x, branch, None, ids)))
        return relu_out(bn_out(pw_out(bn_dw(dw(x, None, kernel)), branch)))


class Supernet(nn.Module):
    """Weight-sharing ShuffleNet V2 over a :class:`~nas.space.SearchSpace`.

    Weights are sized for the largest choice on every axis. ``forward(x, arch)`` runs the
    sub-net ``arch`` by slicing: the first ``k`` output channels of every layer, the first
    ``n`` units of every stage, the centre ``k x k`` of every depthwise kernel. ``x`` must
    already be at ``arch.resolution``. :meth:`extract` copies those slices into a
    standalone :class:`ShuffleNetV2` that computes the same function.

    Channel identity: every channel a unit makes has an id (in a stage, the stride-2 unit's
    shortcut rows, then each unit's main-branch rows, in order). Channels travel through
    pass-throughs, concats and shuffles, and where they land depends on the widths, split
    ratios and depths of the sub-net; so every conv that reads them (a unit's input convs,
    a stride-2 unit's shortcut, ``conv5``) has one weight entry per id, and a sub-net
    gathers the entries of the ids at its input positions. A weight entry then always
    meets the same feature, in every sub-net. (Matching by position, as plain slicing does,
    is exact only at split ratio 0.5 and one width: elsewhere the shuffle after the concat
    moves features, and one weight column reads a different feature in each sub-net.)

    ``channel_match="position"`` is the cheaper alternative, kept for comparison: those
    convs read their first entries, as plain slicing does (one entry per input position
    instead of one per id that can reach the conv: 15M shared parameters on the CIFAR
    space instead of 63M). Measured with live branches (benchmarks/README.md, weight
    layout A/B): its sub-nets score 10 points lower and rank archs at Kendall tau 0.16
    against 0.63, for a 1.18x faster step.

    BatchNorm: affine parameters and running statistics are shared by slicing as well. In
    training mode each sub-net normalises with its own batch statistics; the shared running
    statistics are a blend over every sub-net trained, so before a sub-net is evaluated its
    statistics are re-estimated on training batches (``nas.train.recalibrate_bn`` on the
    extracted model), which is what search and evaluation do.
    """

    def __init__(
        self, space: SearchSpace, branch_scale: float = BRANCH_SCALE, channel_match: str = "id"
    ) -> None:
        super().__init__()
        check_supernet_options(branch_scale, channel_match)
        self.space, self.channel_match = space, channel_match
        by_id = channel_match == "id"
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
        in_ids = in_max = top.stem_channels
        for s, name in enumerate(STAGE_NAMES):
            splits = [
                split_channels(w, r) for w in c[f"{name}.width"] for r in c[f"{name}.split_ratio"]
            ]
            other_max = max(o for o, _ in splits)
            branch_max = max(b for _, b in splits)
            kernel_max = top.kernels[s]
            units = [_SuperUnit(in_ids, in_max, other_max, branch_max, 2, kernel_max, other_max)]
            for i in range(1, top.repeats[s]):
                made = other_max + i * branch_max  # ids the units before this one make
                units.append(
                    _SuperUnit(
                        made if by_id else branch_max,
                        branch_max,
                        other_max,
                        branch_max,
                        1,
                        kernel_max,
                        made,
                    )
                )
            setattr(self, name, nn.Sequential(*units))
            in_max = top.widths[s]
            in_ids = other_max + top.repeats[s] * branch_max if by_id else in_max
        self.conv5 = nn.Sequential(
            _read_by_id(_pointwise(in_ids, top.last_channels), in_max),
            DynamicBatchNorm2d(top.last_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = DynamicLinear(top.last_channels, top.num_classes)
        self.scale_branches(branch_scale)

    def branch_norms(self) -> list[DynamicBatchNorm2d]:
        """The last BatchNorm of every stride-1 unit's branch (the one before its ReLU)."""
        norms = []
        for stage in (self.stage2, self.stage3, self.stage4):
            for unit in stage[1:]:  # the stride-1 units
                assert isinstance(unit, _SuperUnit)
                last_bn = unit.branch2[6]
                assert isinstance(last_bn, DynamicBatchNorm2d)
                norms.append(last_bn)
        return norms

    def scale_branches(self, scale: float) -> None:
        """Start every stride-1 unit's branch at ``scale`` times its usual output (its last
        BatchNorm's scale), so a unit starts close to a pass-through of its identity half.

        Why: the pass-through half is ShuffleNet's residual path, the branch its residual.
        With torch's default scale of 1 the gradient norm grows by about 1.3x per unit
        backwards, as in any deep BatchNorm net without a skip (the 32-unit largest sub-net
        of the CIFAR space: ~8,500 at initialisation, torchvision's 16-unit x1.0: ~25); a
        small scale keeps it near the shallow nets'. It must not be 0: the branch ends in a
        ReLU, which passes no gradient where its input is 0, so a zero scale (and zero
        shift) leaves the branch and every layer in it without a gradient for good."""
        check_supernet_options(scale, self.channel_match)
        for last_bn in self.branch_norms():
            nn.init.constant_(last_bn.weight, scale)

    def forward(self, x: Tensor, arch: ArchConfig | None = None) -> Tensor:
        """Run sub-net ``arch`` (default: the largest) on ``x``."""
        if arch is None:
            arch = self.space.max_arch
        else:
            self.space.check(arch)
        conv, bn, relu = self.conv1
        x = self.maxpool(relu(bn(conv(x, arch.stem_channels))))
        ids = (
            torch.arange(arch.stem_channels, device=x.device)
            if self.channel_match == "id"
            else None
        )
        for s, name in enumerate(STAGE_NAMES):
            stage: nn.Sequential = getattr(self, name)
            for unit in stage[: arch.repeats[s]]:
                x, ids = unit(x, ids, arch.widths[s], arch.split_ratios[s], arch.kernels[s])
        conv, bn, relu = self.conv5
        x = relu(bn(conv(x, arch.last_channels, None, ids)))
        return self.fc(x.mean((2, 3)))

    def gathered(self, arch: ArchConfig) -> dict[str, tuple[int, Tensor]]:
        """The weights ``arch`` gathers by channel id: parameter or buffer name ->
        (dimension, the ids of the sub-net's channels in input order). Empty when channels
        are matched by position."""
        self.space.check(arch)
        index: dict[str, tuple[int, Tensor]] = {}
        if self.channel_match == "position":
            return index
        ids = torch.arange(arch.stem_channels, device=self.fc.weight.device)
        for s, name in enumerate(STAGE_NAMES):
            for i, unit in enumerate(getattr(self, name)[: arch.repeats[s]]):
                assert isinstance(unit, _SuperUnit)
                branch_ids, out_ids = unit.wiring(ids, arch.widths[s], arch.split_ratios[s])
                prefix = f"{name}.{i}"
                if unit.stride == 2:
                    for leaf in (
                        "0.weight",
                        "1.weight",
                        "1.bias",
                        "1.running_mean",
                        "1.running_var",
                    ):
                        index[f"{prefix}.branch1.{leaf}"] = (0, ids)
                    index[f"{prefix}.branch1.2.weight"] = (1, ids)
                index[f"{prefix}.branch2.0.weight"] = (1, branch_ids)
                ids = out_ids
        index["conv5.0.weight"] = (1, ids)
        return index

    @torch.no_grad()
    def extract(self, arch: ArchConfig) -> ShuffleNetV2:
        """A standalone :class:`ShuffleNetV2` with copies of ``arch``'s weight slices."""
        index = self.gathered(arch)
        model = ShuffleNetV2(arch)
        shared = self.state_dict()
        model.load_state_dict(
            {
                name: _slice_like(shared[name], like.shape, index.get(name))
                for name, like in model.state_dict().items()
            }
        )
        return model.to(next(self.parameters()).device).train(self.training)


def _slice_like(
    tensor: Tensor, shape: torch.Size, gather: tuple[int, Tensor] | None = None
) -> Tensor:
    """The entries ``gather`` names along its dimension, the first-k slice of every other
    dimension, the centre crop of conv kernels."""
    if gather is not None:
        tensor = tensor.index_select(*gather)
    if tensor.dim() == 4 and tensor.shape[-1] != shape[-1]:
        tensor = crop_kernel(tensor, shape[-1])
    return tensor[tuple(slice(0, n) for n in shape)]
