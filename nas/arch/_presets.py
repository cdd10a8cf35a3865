"""torchvision's ShuffleNet V2 variants as ``ArchConfig`` presets, in both stems."""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType

from nas._errors import ConfigError
from nas.arch._config import ArchConfig

# (stage widths, last conv channels) from torchvision.models.shufflenetv2; repeats 4-8-4.
_TORCHVISION = {
    "x0_5": ((48, 96, 192), 1024),
    "x1_0": ((116, 232, 464), 1024),
    "x1_5": ((176, 352, 704), 1024),
    "x2_0": ((244, 488, 976), 2048),
}


def _build() -> dict[str, ArchConfig]:
    presets = {}
    for mult, (widths, last) in _TORCHVISION.items():
        base = ArchConfig(widths=widths, repeats=(4, 8, 4), last_channels=last)
        presets[f"shufflenet_v2_{mult}"] = base
        presets[f"shufflenet_v2_{mult}_cifar"] = base.replace(
            stem="cifar", resolution=32, num_classes=10
        )
    return presets


#: ``shufflenet_v2_x{0_5,1_0,1_5,2_0}`` (ImageNet stem, 224 px, 1000 classes) and the same
#: names with ``_cifar`` (CIFAR stem, 32 px, 10 classes).
PRESETS = MappingProxyType(_build())


def preset(name: str, **changes: object) -> ArchConfig:
    """A preset by name, optionally with fields changed (e.g. ``num_classes=100``)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    arch = PRESETS[name]
    return arch.replace(**changes) if changes else arch


def load_arch(spec: str | os.PathLike[str]) -> ArchConfig:
    """Resolve ``spec`` as a preset name or a path to an arch YAML file."""
    text = os.fspath(spec)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return ArchConfig.from_yaml(path)
    raise ConfigError(
        f"unknown arch {text!r}: give a preset ({', '.join(PRESETS)}) or a path to an arch YAML"
    )
