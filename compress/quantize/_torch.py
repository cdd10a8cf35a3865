"""Eager-mode int8 for PyTorch (x86 / fbgemm kernels): the ShuffleNetV2 rewritten with
explicit quant stubs, fused conv-BN-ReLU and a quantized concat.

Generic graph tracing (FX) breaks on the channel shuffle; here the model's structure is
known, so fusion and quantization are spelled out: the shuffle and the split run on
quantized tensors as plain view/transpose/slice ops, each concat requantizes its inputs
to one scale.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.ao import quantization as tq
from torch.ao.nn.quantized import FloatFunctional

from nas.models import ShuffleNetV2, ShuffleUnit, channel_shuffle

ENGINE = "x86"


class QuantUnit(nn.Module):
    """A :class:`ShuffleUnit` whose concat is a quantizable ``FloatFunctional``."""

    def __init__(self, unit: ShuffleUnit) -> None:
        super().__init__()
        self.stride = unit.stride
        self.passthrough = unit.passthrough
        self.branch1 = unit.branch1
        self.branch2 = unit.branch2
        self.permutation: Tensor | None
        self.register_buffer("permutation", unit.permutation, persistent=False)
        self.cat = FloatFunctional()

    def fuse(self, qat: bool) -> None:
        fuse = tq.fuse_modules_qat if qat else tq.fuse_modules
        fuse(self.branch2, [["0", "1", "2"], ["3", "4"], ["5", "6", "7"]], inplace=True)
        if self.stride == 2:
            fuse(self.branch1, [["0", "1"], ["2", "3", "4"]], inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            keep = self.passthrough
            if keep == 0:
                out = self.branch2(x)
            else:
                out = self.cat.cat([x[:, :keep], self.branch2(x[:, keep:])], dim=1)
        else:
            out = self.cat.cat([self.branch1(x), self.branch2(x)], dim=1)
        if self.permutation is None:
            return channel_shuffle(out, 2)
        return out.index_select(1, self.permutation)


class QuantShuffleNet(nn.Module):
    """A :class:`ShuffleNetV2` (any layout) ready for eager-mode static quantization."""

    def __init__(self, model: ShuffleNetV2) -> None:
        super().__init__()
        model = copy.deepcopy(model)
        self.arch = model.arch
        self.layout = model.layout
        self.quant = tq.QuantStub()
        self.conv1 = model.conv1
        self.maxpool = model.maxpool
        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        for name in ("stage2", "stage3", "stage4"):
            setattr(self, name, nn.Sequential(*(QuantUnit(u) for u in getattr(model, name))))
        self.conv5 = model.conv5
        self.fc = model.fc
        self.dequant = tq.DeQuantStub()

    def fuse(self, qat: bool = False) -> QuantShuffleNet:
        fuse = tq.fuse_modules_qat if qat else tq.fuse_modules
        fuse(self.conv1, [["0", "1", "2"]], inplace=True)
        fuse(self.conv5, [["0", "1", "2"]], inplace=True)
        for name in ("stage2", "stage3", "stage4"):
            for unit in getattr(self, name):
                unit.fuse(qat)
        return self

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(self.quant(x)))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x)
        return self.dequant(self.fc(x.mean((2, 3))))


def qconfig(qat: bool = False) -> tq.QConfig:
    """x86 defaults: per-channel int8 weights, uint8 activations with reduce_range (7-bit),
    which keeps the u8 x s8 multiply-adds of AVX2 without VNNI from saturating."""
    if qat:
        return tq.get_default_qat_qconfig(ENGINE)
    return tq.get_default_qconfig(ENGINE)


def prepare(model: ShuffleNetV2, qat: bool = False) -> QuantShuffleNet:
    """Fused, observed copy of ``model``: run calibration batches (``qat``: train) through it,
    then :func:`convert`."""
    torch.backends.quantized.engine = ENGINE
    net = QuantShuffleNet(model)
    net.train(qat)
    net.fuse(qat)
    net.qconfig = qconfig(qat)  # type: ignore[assignment]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if qat:
            return tq.prepare_qat(net, inplace=True)
        return tq.prepare(net, inplace=True)


def convert(prepared: QuantShuffleNet) -> QuantShuffleNet:
    torch.backends.quantized.engine = ENGINE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tq.convert(prepared.eval(), inplace=False)


def int8_skeleton(model: ShuffleNetV2) -> QuantShuffleNet:
    """A converted int8 model of ``model``'s structure, to load an int8 state dict into."""
    prepared = prepare(model)
    with torch.no_grad():
        arch = model.arch
        prepared(torch.zeros(1, arch.in_channels, arch.resolution, arch.resolution))
    return convert(prepared)


_FUSED_BN = re.compile(r"^(.*)\.(\d+)\.bn\.(\w+)$")


def float_model(prepared: QuantShuffleNet, like: ShuffleNetV2) -> ShuffleNetV2:
    """The float ShuffleNetV2 inside a QAT model: its fine-tuned weights, with the BatchNorm
    of each fused conv put back in its own module (the exported graph folds it again)."""
    state = {}
    for key, value in prepared.state_dict().items():
        if "fake_quant" in key or "activation_post_process" in key:
            continue
        match = _FUSED_BN.match(key)
        if match:
            prefix, index, rest = match.groups()
            key = f"{prefix}.{int(index) + 1}.{rest}"
        state[key] = value
    model = ShuffleNetV2(like.arch, layout=like.layout)
    model.load_state_dict(state)
    return model.eval()


def load_int8(path: str | Path) -> QuantShuffleNet:
    """The int8 model of an ``int8`` checkpoint (rebuilt from its arch and layout, weights
    loaded with ``weights_only``)."""
    from nas.arch import ArchConfig
    from nas.checkpoint import load_checkpoint
    from nas.models import ModelLayout

    payload = load_checkpoint(path, kind="int8")
    arch = ArchConfig.from_dict(payload["arch"])
    layout = ModelLayout.from_dict(payload["layout"]) if payload.get("layout") else None
    model = int8_skeleton(ShuffleNetV2(arch, layout=layout))
    model.load_state_dict(payload["state_dict"])
    return model.eval()
