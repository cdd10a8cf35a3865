"""Architectures as data: :class:`ArchConfig`, presets and the split-ratio rule."""

from nas.arch._config import (
    KERNEL_SIZES,
    STAGE_NAMES,
    STEMS,
    ArchConfig,
    UnitSpec,
    conv_out,
    param_names,
    split_channels,
)
from nas.arch._presets import PRESETS, load_arch, preset

__all__ = [
    "KERNEL_SIZES",
    "PRESETS",
    "STAGE_NAMES",
    "STEMS",
    "ArchConfig",
    "UnitSpec",
    "conv_out",
    "load_arch",
    "param_names",
    "preset",
    "split_channels",
]
