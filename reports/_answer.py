"""The report's answer, per target: does the searched front beat the hand-designed nets at
equal or lower measured latency?"""

from __future__ import annotations

from typing import Any

import pandas as pd

from nas.latency import HardwareTarget
from reports._render import Section

# A front model "beats" a baseline by at least this much test accuracy (points)...
MARGIN_POINTS = 1.0
# What the pipeline delivers from the front: the trained models and their compressed forms.
DELIVERED = ("front", "pruned", "int8", "pruned+int8")


def dominance(part: pd.DataFrame, roles: tuple[str, ...] = ("front",)) -> pd.DataFrame:
    """For each baseline on one target: the model of ``roles`` that validation accuracy
    picks among those measured no slower, its test accuracy gain (points) and latency
    ratio. The pick uses validation accuracy (the test split selects nothing); the gain is
    the test accuracy difference, reported only."""
    front = part[part["role"].isin(roles) & part["latency_ms"].notna()]
    rows: list[dict[str, Any]] = []
    for base in part[part["role"] == "baseline"].sort_values("latency_ms").to_dict("records"):
        faster = front[front["latency_ms"] <= base["latency_ms"]]
        row: dict[str, Any] = {
            "baseline": base["name"],
            "baseline ms": base["latency_ms"],
            "baseline test acc": base["test_acc"],
            "front model": None,
            "front ms": None,
            "front test acc": None,
            "gain (points)": None,
            "latency ratio": None,
        }
        if not faster.empty:
            pick = faster.sort_values(["val_acc", "latency_ms"], ascending=[False, True]).iloc[0]
            row.update(
                {
                    "front model": pick["name"],
                    "front ms": pick["latency_ms"],
                    "front test acc": pick["test_acc"],
                    "gain (points)": 100 * (pick["test_acc"] - base["test_acc"]),
                    "latency ratio": pick["latency_ms"] / base["latency_ms"],
                }
            )
        row["verdict"] = verdict(row)
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(row: dict[str, Any]) -> str:
    if row["front model"] is None:
        return "no searched model is this fast"
    gain, ratio = row["gain (points)"], row["latency ratio"]
    if pd.isna(gain):
        return "no test accuracy to compare"
    at = f"at {ratio:.2f}x its latency"
    if gain >= MARGIN_POINTS:
        return f"beaten by {gain:.1f} points {at}"
    if gain > -MARGIN_POINTS:
        return f"a tie ({gain:+.1f} points {at})"
    return f"the baseline wins by {-gain:.1f} points ({at})"


def beaten(table: pd.DataFrame) -> int:
    """How many baselines a table's picks beat by the margin."""
    return int((table["gain (points)"].dropna() >= MARGIN_POINTS).sum())


def summary_line(table: pd.DataFrame, target: str, training: str) -> str:
    """The answer in words."""
    if table.empty:
        return f"No hand-designed baseline was measured on `{target}`: nothing to compare."
    return (
        f"On `{target}` the searched front beats {beaten(table)} of {len(table)} hand-designed "
        f"baselines by at least {MARGIN_POINTS:g} point of test accuracy at no more measured "
        f"latency (front models: {training})."
    )


def delivered_line(table: pd.DataFrame, target: str) -> str:
    """The answer in words when the front's pruned and int8 forms count too."""
    return (
        f"Counting the front's pruned and int8 forms, the models this run delivers beat "
        f"{beaten(table)} of {len(table)} on `{target}`."
    )


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for column, fmt in (
        ("baseline ms", "{:.2f}"),
        ("front ms", "{:.2f}"),
        ("baseline test acc", "{:.3f}"),
        ("front test acc", "{:.3f}"),
        ("gain (points)", "{:+.1f}"),
        ("latency ratio", "{:.2f}x"),
    ):
        if column in shown:
            shown[column] = shown[column].map(
                lambda v, f=fmt: "" if v is None or pd.isna(v) else f.format(v)
            )
    return shown.fillna("")


def _training(summary: dict[str, Any]) -> str:
    final = (summary.get("options") or {}).get("final")
    if not final:
        return (
            "sub-nets with their supernet weights, not trained alone: run "
            "`python -m nas.final` on the run to train them"
        )
    how = final["init"] + (" + distillation" if final.get("distill") else "")
    return f"final training, {how}, {final['epochs']} epochs"


def answer_section(
    summary: dict[str, Any], targets: list[HardwareTarget], results: pd.DataFrame
) -> Section:
    """First: for each target and baseline, the best front model at no more latency."""
    training = _training(summary)
    text, tables = [], []
    for target in targets:
        part = results[results["target"] == target.name]
        table = dominance(part)
        text.append(summary_line(table, target.name, training))
        if not table.empty:
            tables.append((f"{target.name}: each baseline against the front", format_table(table)))
        if table.empty or not part["role"].isin(DELIVERED[1:]).any():
            continue
        delivered = dominance(part, DELIVERED)
        text.append(delivered_line(delivered, target.name))
        tables.append(
            (
                f"{target.name}: each baseline against the front and its pruned and int8 forms",
                format_table(delivered),
            )
        )
    text.append(
        "For each baseline: among the searched models measured no slower on the target, the "
        "one with the best validation accuracy (the test split selects nothing); its test "
        "accuracy gain in points and its latency as a multiple of the baseline's."
    )
    return Section("The answer", text, tables=tables)
