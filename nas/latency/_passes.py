"""Several separate measurements of one model (passes), and what to make of them.

Load from other processes on a shared CPU only ever slows a pass down, so passes that
disagree, or that the contention guard flagged (``contended``), are measured again, up to a
few extra passes, and the latency is the median of the fastest ``passes`` of them (passes
not flagged first); if those still disagree by more than ``max_spread`` the
result says so (``noisy``) instead of passing a disturbed figure off as a quiet one. Each
pass is its own cache entry (``repeat`` = its index), so measuring again re-uses them.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nas.latency._meter import Measurement

PASSES = 3
EXTRA_PASSES = 3
MAX_PASS_SPREAD = 0.10  # (max - min) / median of the kept passes


@dataclass(frozen=True)
class PassSummary:
    """The passes of one model: every pass's median (in measured order) and the summary of
    the fastest ``kept`` of them."""

    medians: tuple[float, ...]
    kept: int  # how many of the fastest passes the figures below summarise
    latency_ms: float  # median of the kept passes
    min_ms: float
    max_ms: float
    p90_ms: float  # median of the kept passes' p90
    spread: float  # (max - min) / latency_ms of the kept passes
    noisy: bool  # kept passes still disagree, or one of them was noisy itself

    @property
    def remeasured(self) -> int:
        """How many passes were added because the first ones disagreed."""
        return len(self.medians) - self.kept


def pass_spread(medians: list[float]) -> float:
    """(max - min) / median: 0.1 means the passes lie within 10% of their median."""
    middle = statistics.median(medians)
    return (max(medians) - min(medians)) / middle if middle > 0 else 0.0


def measure_passes(
    measure: Callable[..., Measurement],
    *args: Any,
    passes: int = PASSES,
    extra: int = EXTRA_PASSES,
    max_spread: float = MAX_PASS_SPREAD,
    **kwargs: Any,
) -> PassSummary:
    """``measure(*args, **kwargs, repeat=r)`` for r = 0..passes-1, then more while the
    fastest ``passes`` disagree by more than ``max_spread`` (at most ``extra`` more), e.g.
    ``measure_passes(meter.measure_arch, arch)``."""
    if passes < 1 or extra < 0:
        raise ValueError("passes must be >= 1 and extra >= 0")
    runs = [measure(*args, **kwargs, repeat=r) for r in range(passes)]

    def fastest() -> list[Measurement]:
        # passes read while the shared memory was busy (the contention guard's flag) only
        # where too few others exist
        quiet = [r for r in runs if not r.stats.contended]
        return sorted(quiet if len(quiet) >= passes else runs, key=lambda r: r.median_ms)[:passes]

    def disagree() -> bool:
        kept = fastest()
        spread = pass_spread([r.median_ms for r in kept])
        return spread > max_spread or any(r.stats.contended for r in kept)

    while disagree() and len(runs) < passes + extra:
        runs.append(measure(*args, **kwargs, repeat=len(runs)))
    kept = fastest()
    medians = [r.median_ms for r in kept]
    spread = pass_spread(medians)
    return PassSummary(
        medians=tuple(r.median_ms for r in runs),
        kept=len(kept),
        latency_ms=statistics.median(medians),
        min_ms=min(medians),
        max_ms=max(medians),
        p90_ms=statistics.median(r.stats.p90_ms for r in kept),
        spread=spread,
        noisy=spread > max_spread or any(r.stats.noisy for r in kept),
    )


# Rounds of a side-by-side comparison: each round measures every subject once, in turn, so
# a change of the host's speed (a shared VM's speed moves by a quarter within minutes,
# issue 25) falls on all of them alike instead of on whichever was measured then.
SIDE_BY_SIDE_ROUNDS = 3


def side_by_side(
    measures: dict[str, Callable[[], Measurement]], rounds: int = SIDE_BY_SIDE_ROUNDS
) -> dict[str, list[Measurement]]:
    """Every subject measured once per round, rounds in turn: ``{name: [per round]}``."""
    out: dict[str, list[Measurement]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            out[name].append(measure())
    return out
