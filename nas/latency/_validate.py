"""Predictor validation: measured vs predicted latency of random archs, with diagnostics."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike
from tqdm.auto import tqdm

from nas.arch import ArchConfig
from nas.latency._meter import LatencyMeter
from nas.latency._predictor import LatencyPredictor
from nas.models import count_flops
from nas.space import SearchSpace

if TYPE_CHECKING:  # pandas is imported where it is used: the measuring process never needs it
    import pandas as pd

VALIDATION_SEED = 2_000


def kendall_tau(a: ArrayLike, b: ArrayLike) -> float:
    """Kendall's tau-b rank correlation (ties counted as in scipy's default)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(x)
    if n < 2:
        return float("nan")
    i, j = np.triu_indices(n, k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    concordant_minus_discordant = float((dx * dy).sum())
    pairs_x, pairs_y = float((dx != 0).sum()), float((dy != 0).sum())
    if pairs_x == 0 or pairs_y == 0:
        return float("nan")
    return concordant_minus_discordant / np.sqrt(pairs_x * pairs_y)


def prediction_scores(measured: ArrayLike, predicted: ArrayLike) -> dict[str, float]:
    """How close ``predicted`` lies to ``measured`` (fractions within 5% and 10%, Kendall
    tau, mean absolute percentage error)."""
    m, p = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    rel = np.abs(p - m) / m
    return {
        "samples": len(m),
        "within_5pct": float((rel <= 0.05).mean()),
        "within_10pct": float((rel <= 0.10).mean()),
        "kendall_tau": kendall_tau(m, p),
        "mape_pct": float(100 * rel.mean()),
    }


def validation_archs(
    space: SearchSpace, samples: int, seed: int = VALIDATION_SEED
) -> list[ArchConfig]:
    """The ``samples`` random archs :func:`validate` measures (the same for a given seed)."""
    rng = random.Random(seed)
    return [space.sample(rng) for _ in range(samples)]


def validate(
    predictor: LatencyPredictor,
    meter: LatencyMeter,
    space: SearchSpace,
    samples: int,
    seed: int = VALIDATION_SEED,
    passes: int = 3,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Measure ``samples`` random archs end to end (median of ``passes`` measurements made
    minutes apart, as the table was built) and compare with the predictor.

    Each pass's own median and speed factor are kept beside (``pass<n>_ms``,
    ``pass<n>_speed``): where passes disagree, which pass moved and whether the reference
    followed it."""
    archs = validation_archs(space, samples, seed)
    runs: list[list[Any]] = [[] for _ in archs]
    for p in range(passes):
        for i, arch in enumerate(
            tqdm(
                archs,
                desc=f"pass {p + 1}/{passes}: validate on {meter.target.name}",
                unit="arch",
                disable=not progress,
            )
        ):
            runs[i].append(meter.measure_arch(arch, repeat=p).stats)
    rows: list[dict[str, Any]] = []
    for arch, stats in zip(archs, runs, strict=True):
        medians = [s.median_ms for s in stats]
        rows.append(
            {
                "arch": arch.hash,
                "name": arch.short_name(),
                "measured_ms": float(np.median(medians)),
                "pass_spread_pct": 100 * (max(medians) - min(medians)) / min(medians),
                "cv": max(s.cv for s in stats),
                "noisy": any(s.noisy for s in stats),
                "predicted_ms": predictor.predict(arch),
                "flops": count_flops(arch),
                **{f"pass{n}_ms": s.median_ms for n, s in enumerate(stats, 1)},
                **{f"pass{n}_speed": s.speed for n, s in enumerate(stats, 1)},
                **arch.to_params(),
            }
        )
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame["error_pct"] = 100 * (frame.predicted_ms - frame.measured_ms) / frame.measured_ms
    result = prediction_scores(frame.measured_ms, frame.predicted_ms)
    result["flops_kendall_tau"] = kendall_tau(frame.measured_ms, frame.flops)
    return frame, result


def error_by_axis(frame: pd.DataFrame, space: SearchSpace, top: int = 8) -> pd.DataFrame:
    """Mean signed error per choice of every searched axis: where the table errs."""
    parts = []
    for axis in space.searchable:
        grouped = frame.groupby(axis)["error_pct"].agg(["mean", "count"]).reset_index()
        grouped.columns = ["choice", "mean_error_pct", "archs"]
        grouped.insert(0, "axis", axis)
        parts.append(grouped)
    import pandas as pd

    table = pd.concat(parts, ignore_index=True)
    order = table.mean_error_pct.abs().sort_values(ascending=False).index
    return table.loc[order].head(top).reset_index(drop=True)


def write_report(
    frame: pd.DataFrame,
    result: dict[str, float],
    out: Path,
    title: str,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """CSV of every arch and a measured-vs-predicted scatter PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    csv = out / "validation.csv"
    frame.to_csv(csv, index=False)
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    ax.scatter(frame.measured_ms, frame.predicted_ms, s=14, alpha=0.75)
    lo = float(min(frame.measured_ms.min(), frame.predicted_ms.min())) * 0.9
    hi = float(max(frame.measured_ms.max(), frame.predicted_ms.max())) * 1.1
    grid = np.linspace(lo, hi, 50)
    ax.plot(grid, grid, "k-", lw=1, label="exact")
    ax.fill_between(grid, grid * 0.9, grid * 1.1, color="tab:green", alpha=0.15, label="±10%")
    ax.set(xlabel="measured latency (ms, median)", ylabel="predicted latency (ms)", title=title)
    ax.text(
        0.03,
        0.97,
        f"±10%: {result['within_10pct']:.0%}  ±5%: {result['within_5pct']:.0%}\n"
        f"Kendall τ: {result['kendall_tau']:.3f}  MAPE: {result['mape_pct']:.1f}%",
        transform=ax.transAxes,
        va="top",
        fontsize=8,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    png = out / "validation.png"
    fig.savefig(png)
    plt.close(fig)
    log(f"wrote {csv} and {png}")
    return [csv, png]
