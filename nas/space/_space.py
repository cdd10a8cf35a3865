"""``SearchSpace``: the choices for every architecture axis, loaded from YAML."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas._errors import ConfigError
from nas._yaml import read_yaml_mapping, write_yaml_atomic
from nas.arch import STAGE_NAMES, ArchConfig, param_names

if TYPE_CHECKING:
    import optuna

_STAGE_KEYS = {
    "widths": "width",
    "repeats": "repeats",
    "split_ratios": "split_ratio",
    "kernels": "kernel",
}
_TOP_KEYS = ("resolution", "stem", "stem_channels", "last_channels", "num_classes", "in_channels")


class SearchSpace:
    """Choices per architecture axis; each axis is one flat :class:`ArchConfig` parameter.

    An axis with one choice is fixed; the others are searched. Choices are validated when
    the space is built (every single value must make a valid arch), kept sorted, and
    exposed as uniform sampling, Optuna categorical distributions and min/max archs.
    """

    def __init__(self, name: str, choices: Mapping[str, Sequence[Any]], description: str = ""):
        self.name = name
        self.description = description
        known = param_names()
        unknown = [k for k in choices if k not in known]
        if unknown:
            raise ConfigError(f"search space {name!r}: unknown axes {unknown} (known: {known})")
        missing = [k for k in known if k not in choices]
        if missing:
            raise ConfigError(f"search space {name!r}: no choices given for {missing}")
        self.choices: dict[str, tuple[Any, ...]] = {}
        for key in known:
            values = list(choices[key])
            if not values:
                raise ConfigError(f"search space {name!r}: {key} has no choices")
            if len(set(values)) != len(values):
                raise ConfigError(f"search space {name!r}: {key} lists a choice twice: {values}")
            try:
                self.choices[key] = tuple(sorted(values))
            except TypeError:
                raise ConfigError(
                    f"search space {name!r}: {key} mixes value types: {values}"
                ) from None
        # Every single choice must give a valid arch; ArchConfig says what is wrong.
        base = {k: v[0] for k, v in self.choices.items()}
        for key, options in self.choices.items():
            for value in options:
                try:
                    ArchConfig.from_params({**base, key: value})
                except ConfigError as exc:
                    raise ConfigError(
                        f"search space {name!r}: {key} choice {value!r}: {exc}"
                    ) from None

    # -- derived --------------------------------------------------------------------------

    @property
    def searchable(self) -> dict[str, tuple[Any, ...]]:
        """Axes with more than one choice."""
        return {k: v for k, v in self.choices.items() if len(v) > 1}

    @property
    def fixed(self) -> dict[str, Any]:
        """Axes with a single choice, and that choice."""
        return {k: v[0] for k, v in self.choices.items() if len(v) == 1}

    @cached_property
    def min_arch(self) -> ArchConfig:
        """The smallest arch: the least choice on every axis."""
        return ArchConfig.from_params({k: v[0] for k, v in self.choices.items()})

    @cached_property
    def max_arch(self) -> ArchConfig:
        """The largest arch: the greatest choice on every axis."""
        return ArchConfig.from_params({k: v[-1] for k, v in self.choices.items()})

    @property
    def size(self) -> int:
        """Number of distinct archs in the space."""
        return math.prod(len(v) for v in self.choices.values())

    @cached_property
    def hash(self) -> str:
        """Stable hash of the choices (the name and description do not count)."""
        blob = json.dumps({k: list(v) for k, v in self.choices.items()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    # -- sampling -------------------------------------------------------------------------

    def sample(self, rng: random.Random | int | None = None) -> ArchConfig:
        """An arch drawn uniformly and independently on every axis."""
        if not isinstance(rng, random.Random):
            rng = random.Random(rng)
        return ArchConfig.from_params({k: rng.choice(v) for k, v in self.choices.items()})

    def distributions(self) -> dict[str, optuna.distributions.CategoricalDistribution]:
        """Optuna distributions of the searched axes."""
        from optuna.distributions import CategoricalDistribution

        return {k: CategoricalDistribution(v) for k, v in self.searchable.items()}

    def suggest(self, trial: optuna.Trial) -> ArchConfig:
        """Ask ``trial`` for every searched axis and return the arch."""
        params = {k: trial.suggest_categorical(k, v) for k, v in self.searchable.items()}
        return self.arch_from_params(params)

    def arch_from_params(self, params: Mapping[str, Any]) -> ArchConfig:
        """Arch from the searched axes' values (as in ``trial.params``); fixed axes filled in."""
        arch = ArchConfig.from_params({**self.fixed, **params})
        self.check(arch)
        return arch

    def neighbours(self, arch: ArchConfig) -> list[ArchConfig]:
        """The archs one choice away from ``arch`` (in this space) on one searched axis,
        down before up, axes in order: the local moves around an arch."""
        self.check(arch)
        params = arch.to_params()
        found = []
        for key, options in self.searchable.items():
            at = options.index(params[key])
            for step in (-1, 1):
                if 0 <= at + step < len(options):
                    found.append(ArchConfig.from_params({**params, key: options[at + step]}))
        return found

    def with_fixed(self, **values: Any) -> SearchSpace:
        """A copy with some axes fixed to one value, e.g. ``num_classes=3`` for a dataset."""
        return SearchSpace(
            self.name, {**self.choices, **{k: [v] for k, v in values.items()}}, self.description
        )

    def adapt(self, arch: ArchConfig) -> ArchConfig:
        """``arch`` with this space's class count and input channels: the axes the data
        sets, not the design (e.g. a preset built for 10 classes, searched on 100)."""
        data_axes = ("num_classes", "in_channels")
        return arch.replace(**{k: v for k, v in self.fixed.items() if k in data_axes})

    # -- membership -----------------------------------------------------------------------

    def check(self, arch: ArchConfig) -> None:
        """Raise :class:`ConfigError` naming the first axis where ``arch`` leaves the space."""
        for key, value in arch.to_params().items():
            if value not in self.choices[key]:
                raise ConfigError(
                    f"arch {arch.hash} is outside search space {self.name!r}: {key} = {value!r} "
                    f"is not one of {list(self.choices[key])}"
                )

    def __contains__(self, arch: object) -> bool:
        if not isinstance(arch, ArchConfig):
            return False
        try:
            self.check(arch)
        except ConfigError:
            return False
        return True

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, searched={list(self.searchable)}, size={self.size})"

    # -- YAML -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        def out(values: tuple[Any, ...]) -> Any:
            return values[0] if len(values) == 1 else list(values)

        data: dict[str, Any] = {"name": self.name}
        if self.description:
            data["description"] = self.description
        for key in _TOP_KEYS:
            data[key] = out(self.choices[key])
        data["stages"] = {
            stage: {
                field: out(self.choices[f"{stage}.{param}"]) for field, param in _STAGE_KEYS.items()
            }
            for stage in STAGE_NAMES
        }
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], default_name: str = "space") -> SearchSpace:
        name = str(data.get("name", default_name))
        allowed = ("name", "description", "stages", *_TOP_KEYS)
        for key in data:
            if key not in allowed:
                raise ConfigError(
                    f"search space {name!r}: unknown key {key!r} (known: {', '.join(allowed)})"
                )
        stages = data.get("stages")
        if not isinstance(stages, Mapping):
            raise ConfigError(
                f"search space {name!r}: 'stages' must map "
                f"{', '.join(STAGE_NAMES)} to their choices"
            )
        if sorted(stages) != sorted(STAGE_NAMES):
            raise ConfigError(
                f"search space {name!r}: 'stages' must have exactly "
                f"{', '.join(STAGE_NAMES)}, got {', '.join(map(str, stages))}"
            )
        choices: dict[str, list[Any]] = {}
        for key in _TOP_KEYS:
            if key not in data:
                raise ConfigError(f"search space {name!r}: missing key {key!r}")
            choices[key] = _as_list(data[key])
        for stage in STAGE_NAMES:
            fields = stages[stage]
            if not isinstance(fields, Mapping):
                raise ConfigError(f"search space {name!r}: {stage} must be a mapping")
            for field in fields:
                if field not in _STAGE_KEYS:
                    raise ConfigError(
                        f"search space {name!r}: unknown key {field!r} in {stage} "
                        f"(known: {', '.join(_STAGE_KEYS)})"
                    )
            for field, param in _STAGE_KEYS.items():
                if field not in fields:
                    raise ConfigError(f"search space {name!r}: {stage} is missing {field!r}")
                choices[f"{stage}.{param}"] = _as_list(fields[field])
        return cls(name, choices, description=str(data.get("description", "")))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> SearchSpace:
        data = read_yaml_mapping(path, "search space")
        return cls.from_dict(data, default_name=Path(path).stem)

    def to_yaml(self, path: str | os.PathLike[str]) -> None:
        write_yaml_atomic(path, self.to_dict())


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def load_space(spec: str | os.PathLike[str] | None = None) -> SearchSpace:
    """A shipped space by name (default ``shufflenetv2_cifar``) or a space YAML file."""
    import search_spaces

    text = os.fspath(spec) if spec is not None else search_spaces.DEFAULT
    if text in search_spaces.available():
        return SearchSpace.from_yaml(search_spaces.path(text))
    path = Path(text)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return SearchSpace.from_yaml(path)
    raise ConfigError(
        f"unknown search space {text!r}: give a shipped space "
        f"({', '.join(search_spaces.available())}) or a path to a space YAML"
    )
