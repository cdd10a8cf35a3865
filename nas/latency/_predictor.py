"""``LatencyPredictor``: per-block lookup table plus a fitted overhead, built on a target."""

from __future__ import annotations

import datetime
import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from nas._errors import ConfigError
from nas.arch import ArchConfig
from nas.data import cache_root
from nas.io import write_json_atomic
from nas.latency._blocks import arch_blocks, space_blocks
from nas.latency._meter import LatencyMeter
from nas.latency._target import HardwareTarget
from nas.space import SearchSpace

FIT_SEED = 1_000  # archs measured to fit the overhead; validation uses other seeds


@dataclass
class LatencyPredictor:
    """``predict(arch) = slope * sum(block latencies) + per_mparam * params + intercept``.

    The table holds the median latency (ms) of every distinct block of a space, each
    measured alone on the target. The fitted overhead absorbs what isolated blocks miss,
    fitted on archs measured end to end (minimising relative error): a block timed alone
    runs with its weights hot in cache, inside a network they arrive cold, a cost that
    grows with the weights (``per_mparam``, ms per million parameters); ``intercept``
    covers fixed per-call costs.
    """

    target: dict[str, Any]
    target_hash: str
    space: str
    space_hash: str
    environment: dict[str, Any]
    table: dict[str, float]
    slope: float = 1.0
    per_mparam: float = 0.0
    intercept: float = 0.0
    fit: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def block_sum(self, arch: ArchConfig) -> float:
        return self._features(arch)[0]

    def _features(self, arch: ArchConfig) -> tuple[float, float]:
        """Sum of block latencies (ms) and parameters (millions) of ``arch``."""
        blocks = arch_blocks(arch)
        try:
            total = sum(self.table[b.key] for b in blocks)
        except KeyError as exc:
            raise ConfigError(
                f"arch {arch.hash} has block {exc.args[0]} that the lookup table "
                f"for space {self.space!r} lacks; build one for its space"
            ) from None
        return total, sum(b.params for b in blocks) / 1e6

    def predict(self, arch: ArchConfig) -> float:
        block_ms, mparams = self._features(arch)
        return self.slope * block_ms + self.per_mparam * mparams + self.intercept

    def check(self, target: HardwareTarget, environment: dict[str, Any]) -> None:
        """Refuse a table measured for another target, CPU or library versions."""
        if self.target_hash != target.hash:
            raise ConfigError(
                f"lookup table was built for target {self.target['name']!r} "
                f"({self.target_hash}), not {target.name!r} ({target.hash}): "
                "rebuild it with python -m nas.latency build-lut"
            )
        if self.environment != environment:
            diff = {
                k: (self.environment.get(k), v)
                for k, v in environment.items()
                if self.environment.get(k) != v
            }
            raise ConfigError(
                f"lookup table was measured elsewhere (differs in {diff}): "
                "rebuild it with python -m nas.latency build-lut"
            )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def save(self, path: str | os.PathLike[str]) -> Path:
        return write_json_atomic(path, self.to_dict(), sort_keys=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyPredictor:
        path = Path(path)
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise ConfigError(
                f"lookup table not found: {path} (build it with python -m "
                "nas.latency build-lut --target T --space S)"
            ) from None
        except (json.JSONDecodeError, TypeError) as exc:
            raise ConfigError(f"{path} is not a lookup table file: {exc}") from None


def default_lut_path(target: HardwareTarget, space: SearchSpace) -> Path:
    """Next to a user's target file; for shipped targets, in the user's cache."""
    name = f"{target.name}.{space.name}.lut.json"
    package = Path(__file__).resolve().parent
    if target.path is not None and package not in target.path.resolve().parents:
        return target.path.resolve().parent / name
    return cache_root() / "luts" / name


def fit_overhead(
    block_sums: list[float], mparams: list[float], measured: list[float]
) -> tuple[float, float, float]:
    """``(slope, per_mparam, intercept)`` of ``measured ~ slope * block_sum + per_mparam *
    mparams + intercept``, least squares on relative error.

    A fit must make physical sense on the archs it was fitted on (positive slope,
    non-negative cost per parameter, every prediction positive); few or noisy samples can
    break that (a 6-arch fit on a busy machine once predicted -0.1 ms), and then the
    simpler model ``slope * block_sum + intercept``, then ``slope * block_sum``, is used.
    """
    y = np.asarray(measured, dtype=float)
    if len(y) < 3:
        return 1.0, 0.0, 0.0
    sums, params, ones = np.asarray(block_sums, float), np.asarray(mparams, float), np.ones_like(y)
    weights = 1.0 / y
    for columns, slots in (
        ((sums, params, ones), (0, 1, 2)),
        ((sums, ones), (0, 2)),
        ((sums,), (0,)),
    ):
        features = np.column_stack(columns)
        coef, *_ = np.linalg.lstsq(features * weights[:, None], y * weights, rcond=None)
        full = [0.0, 0.0, 0.0]
        for slot, value in zip(slots, coef, strict=True):
            full[slot] = float(value)
        if full[0] > 0 and full[1] >= 0 and bool(np.all(features @ coef > 0)):
            return full[0], full[1], full[2]
    return 1.0, 0.0, 0.0


def build_lut(
    target: HardwareTarget,
    space: SearchSpace,
    meter: LatencyMeter,
    fit_samples: int = 30,
    passes: int = 3,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> LatencyPredictor:
    """Measure every block of ``space`` and ``fit_samples`` random archs, ``passes`` times.

    Each pass measures everything once; passes are minutes apart, and every entry is the
    median over passes, so a brief disturbance of the machine spoils at most one pass of a
    block instead of the block. Blocks and fit archs share each pass (the same machine
    state). Every measurement is cached, so an interrupted build resumes where it stopped.
    """
    blocks = space_blocks(space)
    rng = random.Random(FIT_SEED)
    archs = [space.min_arch, space.max_arch] + [space.sample(rng) for _ in range(fit_samples)]
    block_times: dict[str, list[float]] = {b.key: [] for b in blocks}
    arch_times: list[list[float]] = [[] for _ in archs]
    fresh = 0
    for p in range(passes):
        bar = tqdm(
            blocks,
            desc=f"pass {p + 1}/{passes}: blocks on {target.name}",
            unit="block",
            disable=not progress,
        )
        for block in bar:
            result = meter.measure_block(block, repeat=p)
            block_times[block.key].append(result.median_ms)
            fresh += not result.cached
        for i, arch in enumerate(
            tqdm(archs, desc=f"pass {p + 1}/{passes}: fit archs", unit="arch", disable=not progress)
        ):
            result = meter.measure_arch(arch, repeat=p)
            arch_times[i].append(result.median_ms)
            fresh += not result.cached
    total = passes * (len(blocks) + len(archs))
    log(
        f"{len(blocks)} blocks and {len(archs)} archs x {passes} passes: {fresh} measured now, "
        f"{total - fresh} from the cache"
    )
    predictor = LatencyPredictor(
        target=target.to_dict(),
        target_hash=target.hash,
        space=space.name,
        space_hash=space.hash,
        environment=meter.environment,
        table={k: float(np.median(v)) for k, v in block_times.items()},
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    measured = [float(np.median(t)) for t in arch_times]
    features = [predictor._features(a) for a in archs]
    sums = [f[0] for f in features]
    predictor.slope, predictor.per_mparam, predictor.intercept = fit_overhead(
        sums, [f[1] for f in features], measured
    )
    errors = [abs(predictor.predict(a) - m) / m for a, m in zip(archs, measured, strict=True)]
    predictor.fit = {
        "samples": len(archs),
        "seed": FIT_SEED,
        "passes": passes,
        "mean_abs_pct_error": 100 * float(np.mean(errors)),
        "raw_sum_ratio": float(np.median(np.asarray(measured) / np.asarray(sums))),
    }
    return predictor
