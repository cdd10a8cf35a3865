"""Channel layouts: the exact channel counts of a (possibly pruned) ShuffleNetV2.

A standard arch has a layout implied by its widths and split ratios. Structured pruning
removes channels anywhere, including block outputs that travel through splits, concats
and shuffles, after which a unit's output order is no longer a 2-group shuffle. A layout
records, per unit, what remains and the output order, so a pruned model is rebuilt from
plain data (and a checkpoint stays loadable with ``weights_only``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nas._errors import ConfigError
from nas.arch import ArchConfig, split_channels


@dataclass
class UnitLayout:
    """One unit. Stride 1: the first ``keep`` input channels pass through, the other
    ``in_channels - keep`` feed branch2; stride 2: branch1 (depthwise, 1x1) makes
    ``short`` channels from all inputs. branch2 is 1x1 -> ``mid`` -> depthwise -> 1x1 ->
    ``branch``. The concat [pass-through or branch1, branch2] is reordered by
    ``permutation`` (indices into the concat); ``None`` is the 2-group channel shuffle."""

    stride: int
    kernel: int
    in_channels: int
    keep: int = 0  # stride 1
    short: int = 0  # stride 2
    mid: int = 0
    branch: int = 0
    permutation: list[int] | None = None

    @property
    def out_channels(self) -> int:
        return (self.keep if self.stride == 1 else self.short) + self.branch

    def check(self) -> None:
        first = self.keep if self.stride == 1 else self.short
        if self.stride == 1 and not 0 <= self.keep < self.in_channels:
            raise ConfigError(
                f"unit layout: keep {self.keep} must be below in_channels {self.in_channels}"
            )
        if min(self.mid, self.branch) < 1 or first < 0:
            raise ConfigError(f"unit layout has an empty branch: {self}")
        if self.permutation is None:
            if self.out_channels % 2:
                raise ConfigError(
                    "a unit without an explicit permutation needs an even number of output channels"
                )
        elif sorted(self.permutation) != list(range(self.out_channels)):
            raise ConfigError(
                f"unit permutation is not a permutation of {self.out_channels} channels"
            )


@dataclass
class ModelLayout:
    stem: int
    stages: list[list[UnitLayout]]
    last: int
    pruned: dict[str, Any] = field(default_factory=dict)  # how it was made (informational)

    @classmethod
    def standard(cls, arch: ArchConfig) -> ModelLayout:
        stages, in_ch = [], arch.stem_channels
        for s in range(3):
            width, kernel = arch.widths[s], arch.kernels[s]
            other, branch = split_channels(width, arch.split_ratios[s])
            units = [UnitLayout(2, kernel, in_ch, short=other, mid=branch, branch=branch)]
            units += [
                UnitLayout(1, kernel, width, keep=other, mid=branch, branch=branch)
                for _ in range(arch.repeats[s] - 1)
            ]
            stages.append(units)
            in_ch = width
        return cls(arch.stem_channels, stages, arch.last_channels)

    def check(self, arch: ArchConfig) -> None:
        if [len(units) for units in self.stages] != list(arch.repeats):
            raise ConfigError("layout does not have the arch's number of units per stage")
        previous = self.stem
        for s, units in enumerate(self.stages):
            for i, unit in enumerate(units):
                unit.check()
                if unit.stride != (2 if i == 0 else 1) or unit.kernel != arch.kernels[s]:
                    raise ConfigError(f"layout unit {s}.{i} does not match the arch")
                if unit.in_channels != previous:
                    raise ConfigError(
                        f"layout unit {s}.{i} takes {unit.in_channels} channels "
                        f"but receives {previous}"
                    )
                previous = unit.out_channels
        if min(self.stem, self.last) < 1:
            raise ConfigError("layout has an empty stem or last conv")

    @property
    def widths(self) -> list[int]:
        return [units[-1].out_channels for units in self.stages]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelLayout:
        try:
            stages = [[UnitLayout(**u) for u in units] for units in data["stages"]]
            return cls(int(data["stem"]), stages, int(data["last"]), dict(data.get("pruned", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid channel layout: {exc}") from None
