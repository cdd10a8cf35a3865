"""``ArchConfig``: one ShuffleNet V2 architecture as plain, validated, hashable data."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from nas._errors import ConfigError
from nas._yaml import read_yaml_mapping, write_yaml_atomic

#: Module names of the three searchable stages, as in torchvision.
STAGE_NAMES: tuple[str, str, str] = ("stage2", "stage3", "stage4")
STEMS: tuple[str, ...] = ("imagenet", "cifar")
KERNEL_SIZES: tuple[int, ...] = (3, 5, 7)
IN_CHANNELS: tuple[int, ...] = (1, 3)

_PER_STAGE = ("widths", "repeats", "split_ratios", "kernels")
_PARAM_SUFFIX = {
    "widths": "width",
    "repeats": "repeats",
    "split_ratios": "split_ratio",
    "kernels": "kernel",
}
_SCALARS = ("resolution", "stem", "stem_channels", "last_channels", "num_classes", "in_channels")


def split_channels(channels: int, ratio: float) -> tuple[int, int]:
    """Split ``channels`` into ``(other, branch)`` with ``branch = round(ratio * channels)``.

    Rounding is half-up and the branch is clamped to ``[1, channels - 1]`` so both parts
    exist. ``ratio = 0.5`` on an even count gives two equal halves, as torchvision.
    """
    branch = math.floor(ratio * channels + 0.5)
    branch = min(max(branch, 1), channels - 1)
    return channels - branch, branch


class UnitSpec(NamedTuple):
    """Shape of one ShuffleNet V2 unit inside an arch (what its latency depends on)."""

    stage: int  # 0, 1, 2 for stage2..stage4
    position: int  # index inside the stage; 0 is the stride-2 unit
    in_channels: int
    out_channels: int
    branch_channels: int  # channels through the main (1x1-dw-1x1) branch
    stride: int
    kernel: int
    in_size: int  # spatial size of the unit's (square) input


def conv_out(size: int, stride: int) -> int:
    # Every strided layer here pads by kernel // 2 with an odd kernel: ceil(size / stride).
    return -(-size // stride)


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    """One ShuffleNet V2 architecture.

    Per stage (torchvision's ``stage2``, ``stage3``, ``stage4``): output width, number of
    units, split ratio and depthwise kernel size; plus input resolution, stem kind
    (``imagenet``: 3x3 stride-2 conv + max-pool, as torchvision; ``cifar``: 3x3 stride-1
    conv, no max-pool), stem and last-conv channels, classes and input channels.

    Split ratio ``r``: in a stride-1 unit with ``c`` channels the main branch processes
    ``round(r * c)`` channels and the rest pass through unchanged; in the stride-2 unit the
    main branch produces ``round(r * out)`` of the output channels and the shortcut branch
    the rest. ``r = 0.5`` is exactly torchvision's unit. Widths must be even because the
    channel shuffle after the concat uses two groups.

    Instances are immutable and hashable, round-trip exactly through :meth:`to_dict` /
    :meth:`from_dict` (YAML) and :meth:`to_params` / :meth:`from_params` (Optuna), and have
    a stable short :attr:`hash`.
    """

    widths: tuple[int, int, int]
    repeats: tuple[int, int, int]
    split_ratios: tuple[float, float, float] = (0.5, 0.5, 0.5)
    kernels: tuple[int, int, int] = (3, 3, 3)
    resolution: int = 224
    stem: str = "imagenet"
    stem_channels: int = 24
    last_channels: int = 1024
    num_classes: int = 1000
    in_channels: int = 3

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "widths", _int_triple("widths", self.widths, minimum=2))
        set_(self, "repeats", _int_triple("repeats", self.repeats, minimum=1))
        set_(self, "split_ratios", _ratio_triple(self.split_ratios))
        set_(self, "kernels", _int_triple("kernels", self.kernels, minimum=1))
        for stage, width in zip(STAGE_NAMES, self.widths, strict=True):
            if width % 2:
                raise ConfigError(
                    f"{stage} width {width} is odd: the channel shuffle needs an even number "
                    f"of channels (use {width - 1} or {width + 1})"
                )
        for stage, kernel in zip(STAGE_NAMES, self.kernels, strict=True):
            if kernel not in KERNEL_SIZES:
                raise ConfigError(
                    f"{stage} kernel {kernel} is not supported: choose one of {list(KERNEL_SIZES)}"
                )
        set_(self, "resolution", _int("resolution", self.resolution, minimum=1))
        if self.stem not in STEMS:
            raise ConfigError(f"unknown stem {self.stem!r}: choose one of {list(STEMS)}")
        set_(self, "stem_channels", _int("stem_channels", self.stem_channels, minimum=1))
        set_(self, "last_channels", _int("last_channels", self.last_channels, minimum=1))
        set_(self, "num_classes", _int("num_classes", self.num_classes, minimum=1))
        set_(self, "in_channels", _int("in_channels", self.in_channels, minimum=1))
        if self.in_channels not in IN_CHANNELS:
            raise ConfigError(
                f"in_channels {self.in_channels} is not supported: choose 1 (grayscale) or 3"
            )

    # -- derived shapes -------------------------------------------------------------------

    @property
    def stem_stride(self) -> int:
        """Downsampling of the stem: 4 for ``imagenet`` (conv + max-pool), 1 for ``cifar``."""
        return 4 if self.stem == "imagenet" else 1

    def stem_out_size(self) -> int:
        size = self.resolution
        if self.stem == "imagenet":
            size = conv_out(conv_out(size, 2), 2)
        return size

    def units(self) -> Iterator[UnitSpec]:
        """Yield the shape of every unit, stage by stage, in forward order."""
        in_ch, size = self.stem_channels, self.stem_out_size()
        for s in range(3):
            out_ch, ratio, kernel = self.widths[s], self.split_ratios[s], self.kernels[s]
            branch = split_channels(out_ch, ratio)[1]
            for i in range(self.repeats[s]):
                stride = 2 if i == 0 else 1
                yield UnitSpec(s, i, in_ch, out_ch, branch, stride, kernel, size)
                in_ch, size = out_ch, conv_out(size, stride)

    # -- identity -------------------------------------------------------------------------

    @property
    def hash(self) -> str:
        """Stable 10-hex-digit hash of the architecture (same arch, same hash, any run)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def short_name(self) -> str:
        """Compact human-readable summary, e.g. ``w48-96-192 r4-8-4 s.5-.5-.5 k3-3-3 @32``."""

        def ratio(r: float) -> str:
            return f"{r:g}".removeprefix("0")

        return (
            f"w{'-'.join(map(str, self.widths))} r{'-'.join(map(str, self.repeats))} "
            f"s{'-'.join(ratio(r) for r in self.split_ratios)} "
            f"k{'-'.join(map(str, self.kernels))} @{self.resolution}"
        )

    # -- YAML -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of YAML/JSON types (lists for the per-stage fields)."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        """Build from a mapping such as :meth:`to_dict` returns; unknown keys are errors."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"an arch must be a mapping, got {type(data).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown arch key {key!r}{_did_you_mean(key, known)}")
        for required in ("widths", "repeats"):
            if required not in data:
                raise ConfigError(f"arch is missing the required key {required!r}")
        return cls(**dict(data))

    def to_yaml(self, path: str | os.PathLike[str]) -> None:
        write_yaml_atomic(path, self.to_dict())

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> ArchConfig:
        data = read_yaml_mapping(path, "arch")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    # -- Optuna ---------------------------------------------------------------------------

    def to_params(self) -> dict[str, Any]:
        """Flat dict of scalars, e.g. ``{"stage2.width": 116, ..., "resolution": 224}``."""
        params: dict[str, Any] = {}
        for s, stage in enumerate(STAGE_NAMES):
            for field in _PER_STAGE:
                params[f"{stage}.{_PARAM_SUFFIX[field]}"] = getattr(self, field)[s]
        for field in _SCALARS:
            params[field] = getattr(self, field)
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ArchConfig:
        """Inverse of :meth:`to_params`; every key must be present and known."""
        expected = param_names()
        for key in params:
            if key not in expected:
                raise ConfigError(f"unknown arch parameter {key!r}{_did_you_mean(key, expected)}")
        missing = [k for k in expected if k not in params]
        if missing:
            raise ConfigError(f"arch parameters are missing {missing}")
        fields: dict[str, Any] = {
            field: [params[f"{stage}.{_PARAM_SUFFIX[field]}"] for stage in STAGE_NAMES]
            for field in _PER_STAGE
        }
        fields.update({field: params[field] for field in _SCALARS})
        return cls(**fields)

    def replace(self, **changes: Any) -> ArchConfig:
        """A copy with some fields changed (validated like a new instance)."""
        return dataclasses.replace(self, **changes)


def param_names() -> list[str]:
    """Names of the flat Optuna parameters of an arch, in a fixed order."""
    names = [f"{stage}.{_PARAM_SUFFIX[field]}" for stage in STAGE_NAMES for field in _PER_STAGE]
    return names + list(_SCALARS)


# -- validation helpers ---------------------------------------------------------------------


def _did_you_mean(key: object, known: list[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (known: {', '.join(known)})"


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _triple(name: str, value: Any) -> tuple[Any, Any, Any]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ConfigError(f"{name} must be a list of 3 values (one per stage), got {value!r}")
    items = tuple(value)
    if len(items) != 3:
        raise ConfigError(f"{name} must have 3 values (one per stage), got {len(items)}")
    return items[0], items[1], items[2]


def _int_triple(name: str, value: Any, minimum: int) -> tuple[int, int, int]:
    a, b, c = _triple(name, value)
    return (
        _int(f"{name}[0]", a, minimum),
        _int(f"{name}[1]", b, minimum),
        _int(f"{name}[2]", c, minimum),
    )


def _ratio(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be strictly between 0 and 1, got {value}")
    return value


def _ratio_triple(value: Any) -> tuple[float, float, float]:
    a, b, c = _triple("split_ratios", value)
    return (
        _ratio("split_ratios[0]", a),
        _ratio("split_ratios[1]", b),
        _ratio("split_ratios[2]", c),
    )
