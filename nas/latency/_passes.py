"""Several separate measurements of one model (passes), and what to make of them.

Load from other processes on a shared CPU only ever slows a pass down, so passes that
disagree, or that the contention guard flagged (``contended``), are measured again, up to a
few extra passes, and the latency is the median of the fastest ``passes`` of them (passes
not flagged first); if those still disagree by more than ``max_spread`` the
result says so (``noisy``) instead of passing a disturbed figure off as a quiet one. Each
pass is its own cache entry (``repeat`` = its index), so measuring again re-uses them.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from nas.latency._meter import Measurement

PASSES = 3
EXTRA_PASSES = 3
MAX_PASS_SPREAD = 0.10  # (max - min) / median of the kept passes

_K = TypeVar("_K", bound=Hashable)


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
    disagree: bool  # kept passes differ by over max_spread, or one was contended

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
    ``measure_passes(meter.measure_arch, arch)``. The passes follow each other at once: see
    :func:`measure_spaced` for several models whose passes are spread over time."""

    one = functools.partial(measure, *args, **kwargs)
    return measure_spaced({0: one}, passes, extra, max_spread, gap_s=0.0)[0]


def measure_spaced(
    measures: Mapping[_K, Callable[..., Measurement]],
    passes: int = PASSES,
    extra: int = EXTRA_PASSES,
    max_spread: float = MAX_PASS_SPREAD,
    *,
    gap_s: float,
    progress: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[_K, PassSummary]:
    """The passes of several models in rounds at least ``gap_s`` apart (a target's
    ``pass_gap_s``, so no default that would ignore it): round r measures
    every model once (``measures[key](repeat=r)``, each pass its own cache entry), the first
    ``passes`` rounds all of them, later ones (at most ``extra``) only those whose fastest
    passes still disagree, as in :func:`measure_passes`.

    A shared host's other tenants slow a model for stretches from under a second to
    minutes (``benchmarks/latency_probe.py``); passes read back to back share one
    stretch, passes a round apart less often (measured: it helped torch eager and not
    ONNX Runtime, so the gap is the target's ``pass_gap_s``). ``progress`` is called after
    each measurement."""
    if passes < 1 or extra < 0:
        raise ValueError("passes must be >= 1 and extra >= 0")
    runs: dict[_K, list[Measurement]] = {key: [] for key in measures}
    pending = list(measures)
    started: float | None = None  # the last round's start, if it measured (not all cached)
    for r in range(passes + extra):
        if r >= passes:
            pending = [key for key in pending if _summary(runs[key], passes, max_spread).disagree]
        if not pending:
            break
        if started is not None:
            sleep(max(0.0, started + gap_s - clock()))
        started = clock()
        for key in pending:
            runs[key].append(measures[key](repeat=r))
            if progress is not None:
                progress()
        if all(runs[key][-1].cached for key in pending):
            started = None
    return {key: _summary(got, passes, max_spread) for key, got in runs.items()}


def _fastest(runs: list[Measurement], passes: int) -> list[Measurement]:
    # passes read while the shared memory was busy (the contention guard's flag) only where
    # too few others exist
    quiet = [r for r in runs if not r.stats.contended]
    return sorted(quiet if len(quiet) >= passes else runs, key=lambda r: r.median_ms)[:passes]


def _summary(runs: list[Measurement], passes: int, max_spread: float) -> PassSummary:
    kept = _fastest(runs, passes)
    medians = [r.median_ms for r in kept]
    spread = pass_spread(medians)
    disagree = spread > max_spread or any(r.stats.contended for r in kept)
    return PassSummary(
        medians=tuple(r.median_ms for r in runs),
        kept=len(kept),
        latency_ms=statistics.median(medians),
        min_ms=min(medians),
        max_ms=max(medians),
        p90_ms=statistics.median(r.stats.p90_ms for r in kept),
        spread=spread,
        noisy=disagree or any(r.stats.noisy for r in kept),
        disagree=disagree,
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
