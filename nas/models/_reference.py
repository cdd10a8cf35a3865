"""Hand-designed reference networks that are not ShuffleNetV2 archs: the report's baselines.

A :class:`ReferenceNet` names a builder in :data:`REFERENCE_NETS` plus the data-dependent
fields (classes, input channels, resolution); like an ``ArchConfig`` it is plain data that
a checkpoint stores (under ``network``) and rebuilds. The ShuffleNetV2 baselines need no
entry here: torchvision's x0.5/x1.0 are the ``shufflenet_v2_*`` arch presets.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import nn

from nas._errors import ConfigError
from nas.arch import PRESETS, ArchConfig, load_arch


def _mobilenet_v3(net: ReferenceNet, size: str, cifar: bool) -> nn.Module:
    from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

    build = {"small": mobilenet_v3_small, "large": mobilenet_v3_large}[size]
    model = build(num_classes=net.num_classes)
    # torchvision's BatchNorm momentum 0.01 is tuned for 600 ImageNet epochs; after a short
    # schedule its running statistics still lag (measured: 4 epochs on the embedded data,
    # train accuracy 0.37, validation 0.10). 0.1 is torch's default and ShuffleNetV2's.
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1
    stem = model.features[0][0]
    assert isinstance(stem, nn.Conv2d)
    if cifar or net.in_channels != stem.in_channels:
        # CIFAR stem: stride 1 at 32 px, as the ShuffleNetV2 CIFAR stem drops its stride
        model.features[0][0] = nn.Conv2d(
            net.in_channels, stem.out_channels, 3, 1 if cifar else 2, 1, bias=False
        )
    return model


def _builder(size: str, cifar: bool) -> Callable[[ReferenceNet], nn.Module]:
    return lambda net: _mobilenet_v3(net, size, cifar)


#: name -> builder(net) for every reference network.
REFERENCE_NETS: MappingProxyType[str, Callable[[ReferenceNet], nn.Module]] = MappingProxyType(
    {
        f"mobilenet_v3_{size}{suffix}": _builder(size, cifar=bool(suffix))
        for size in ("small", "large")
        for suffix in ("", "_cifar")
    }
)
_DEFAULTS = {name: (10, 32) if name.endswith("_cifar") else (1000, 224) for name in REFERENCE_NETS}


@dataclass(frozen=True)
class ReferenceNet:
    """A named reference network at a class count, input channel count and resolution."""

    name: str
    num_classes: int = 10
    in_channels: int = 3
    resolution: int = 32

    def __post_init__(self) -> None:
        if self.name not in REFERENCE_NETS:
            raise ConfigError(
                f"unknown reference network {self.name!r}: choose one of "
                f"{', '.join(REFERENCE_NETS)}"
            )
        if self.num_classes < 2 or self.in_channels not in (1, 3) or self.resolution < 16:
            raise ConfigError(
                f"reference network {self.name}: need >= 2 classes, 1 or 3 input channels "
                f"and resolution >= 16, got {self.num_classes}, {self.in_channels}, "
                f"{self.resolution}"
            )

    @classmethod
    def named(cls, name: str) -> ReferenceNet:
        classes, resolution = _DEFAULTS.get(name, (10, 32))
        return cls(name, num_classes=classes, resolution=resolution)

    def build(self) -> nn.Module:
        return REFERENCE_NETS[self.name](self)

    @property
    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def short_name(self) -> str:
        return f"{self.name} @{self.resolution}"

    def replace(self, **changes: Any) -> ReferenceNet:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceNet:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown or "name" not in data:
            raise ConfigError(f"invalid reference network {data!r}: fields are {sorted(known)}")
        return cls(**data)


def load_network(spec: str) -> ArchConfig | ReferenceNet:
    """``spec`` as a reference network name (a :class:`ReferenceNet`), else as an arch
    preset or an arch YAML path (an ``ArchConfig``)."""
    if spec in REFERENCE_NETS:
        return ReferenceNet.named(spec)
    if spec in PRESETS or Path(spec).exists() or Path(spec).suffix in (".yaml", ".yml"):
        return load_arch(spec)
    raise ConfigError(
        f"unknown arch {spec!r}: give a preset ({', '.join(PRESETS)}), a reference network "
        f"({', '.join(REFERENCE_NETS)}) or a path to an arch YAML"
    )
