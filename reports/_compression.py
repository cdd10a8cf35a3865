"""The report's compression section: each pruned or quantized model joined to its fp32
parent on the same target, with the speedup measured in the same report build."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports._collect import role_order
from reports._render import Section, fmt_acc, fmt_ms


def speedup_text(speedup: float) -> str:
    """``1.42x``; a derived model no faster than its parent says so in words."""
    return f"{speedup:.2f}x" + ("" if speedup > 1.0 else " (not faster)")


def compression_section(results: pd.DataFrame) -> Section | None:
    derived = results[results["parent"].notna()]
    if derived.empty:
        return None
    rows = []
    fronts = results[results["role"] == "front"]
    for target in derived["target"].unique():
        for parent in derived.loc[derived["target"] == target, "parent"].unique():
            base = fronts[(fronts["target"] == target) & (fronts["name"] == parent)]
            if base.empty:
                continue
            b: dict[str, Any] = base.iloc[0].to_dict()
            rows.append(_compression_row(str(parent), "fp32", b, b))
            part = derived[(derived["target"] == target) & (derived["parent"] == parent)]
            part = part.sort_values("role", key=lambda s: s.map(role_order))
            for row in part.to_dict("records"):
                rows.append(_compression_row(str(parent), str(row["role"]), row, b))
    text = [
        "Each Pareto model pruned (structured, torch-pruning) and quantized to int8; speedup "
        "against the fp32 parent on the same target, in the same report build; a variant "
        "that is not faster than its parent there says so. int8 ONNX models run on ONNX "
        "Runtime targets only."
    ]
    return Section("Compression", text, tables=[("", pd.DataFrame(rows))])


def _compression_row(
    parent: str, variant: str, row: dict[Any, Any], base: dict[str, Any]
) -> dict[str, str]:
    def missing(value: Any) -> bool:
        return value is None or bool(pd.isna(value))

    drop = np.nan if missing(row["val_acc"]) else (base["val_acc"] - row["val_acc"]) * 100
    return {
        "target": str(row["target"]),
        "model": parent,
        "variant": variant,
        "latency ms": fmt_ms(row["latency_ms"]),
        "speedup": "1.00x"
        if variant == "fp32"
        else speedup_text(base["latency_ms"] / row["latency_ms"]),
        "MFLOPs": "" if missing(row["flops"]) else f"{row['flops'] / 1e6:.1f}",
        "size KB": "" if missing(row["size_bytes"]) else f"{row['size_bytes'] / 1e3:.0f}",
        "val acc": fmt_acc(row["val_acc"]),
        "test acc": fmt_acc(row["test_acc"]),
        "val drop (points)": "" if missing(drop) else f"{drop:+.1f}",
    }
