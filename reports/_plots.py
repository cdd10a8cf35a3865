"""The report's figures (matplotlib, Agg): Pareto plot per target, FLOPs vs latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

Y = "test_acc"  # delivered models are shown at their test accuracy (reported, never selects)
_STYLE = {  # role -> (marker, colour, label)
    "front": ("o", "#1f77b4", "searched front models (line: Pareto here)"),
    "baseline": ("s", "#d62728", "hand-designed baseline"),
    "pruned": ("^", "#2ca02c", "pruned"),
    "int8": ("D", "#9467bd", "int8"),
    "pruned+int8": ("P", "#ff7f0e", "pruned + int8"),
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_plot(
    table: pd.DataFrame,
    trials: pd.DataFrame | None,
    target: str,
    budget_ms: float | None,
    path: Path,
) -> Path:
    """Test accuracy vs measured latency on ``target`` of every delivered model: the
    searched models with their front (chosen by validation accuracy), the baselines, and
    each compressed variant joined to its parent by a thin line. The supernet's estimates
    (validation accuracy) are their own series: every searched trial (grey, search target
    only) and each front model's estimate (hollow), so the plot shows how good they were."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110)
    if trials is not None and len(trials):
        ax.scatter(
            trials["latency_ms"],
            trials["val_acc"],
            s=12,
            c="#c7c7c7",
            label="searched trials (supernet estimate, validation)",
            zorder=1,
        )
    estimated = table[(table["role"] == "front") & table["val_acc_supernet"].notna()]
    if len(estimated):
        ax.scatter(
            estimated["latency_ms"],
            estimated["val_acc_supernet"],
            s=40,
            facecolors="none",
            edgecolors=_STYLE["front"][1],
            label="front models' supernet estimate (validation)",
            zorder=2,
        )
    fronts = table[table["role"] == "front"]
    parents = {str(r["name"]): (r["latency_ms"], r[Y]) for r in fronts.to_dict("records")}
    for row in table[table["parent"].notna()].to_dict("records"):
        if str(row["parent"]) in parents:
            lat, acc = parents[str(row["parent"])]
            ax.plot(
                [lat, row["latency_ms"]],
                [acc, row[Y]],
                color="#999999",
                lw=0.8,
                zorder=2,
            )
    for role, (marker, colour, label) in _STYLE.items():
        part = table[table["role"] == role]
        if part.empty:
            continue
        ax.errorbar(
            part["latency_ms"],
            part[Y],
            xerr=[
                part["latency_ms"] - part["latency_min_ms"],
                part["latency_max_ms"] - part["latency_ms"],
            ],
            fmt=marker,
            color=colour,
            ms=7,
            capsize=2,
            elinewidth=0.8,
            label=label,
            zorder=3,
        )
        if role == "front":
            on = part[part["pareto"]].sort_values("latency_ms")
            ax.step(on["latency_ms"], on[Y], where="post", color=colour, lw=1.2)
        if role == "baseline":
            for base in part.to_dict("records"):
                ax.annotate(
                    str(base["name"]).replace("_cifar", ""),
                    (base["latency_ms"], base[Y]),
                    textcoords="offset points",
                    xytext=(6, -10),
                    fontsize=8,
                    color=colour,
                )
    if budget_ms is not None:
        ax.axvline(budget_ms, color="#444444", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    ax.set_xlabel(f"measured latency on {target} (ms, median; bars: min-max of passes)")
    ax.set_ylabel("test accuracy (estimates: validation)")
    ax.set_title(f"Accuracy vs latency on {target}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def flops_plot(points: pd.DataFrame, target: str, tau: float, path: Path) -> Path:
    """FLOPs vs measured latency of every searched arch, with their rank correlation."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    ax.scatter(points["flops"] / 1e6, points["latency_ms"], s=14, c="#1f77b4")
    ax.set_xlabel("MFLOPs (multiply-accumulates)")
    ax.set_ylabel(f"measured latency on {target} (ms)")
    ax.set_title(f"FLOPs vs latency: Kendall tau {tau:.2f} over {len(points)} archs")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
