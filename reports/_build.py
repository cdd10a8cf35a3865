"""``build_report``: a run directory in, ``report/`` (HTML, Markdown, PNGs, CSV) out."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas import ConfigError
from nas.latency import MAX_PASS_SPREAD, RUNTIMES, HardwareTarget, kendall_tau, load_target
from nas.search import pareto_front
from reports._answer import answer_section
from reports._collect import ROLES, RunData, collect, role_order
from reports._compression import compression_section
from reports._measure import measure_all
from reports._plots import flops_plot, pareto_plot
from reports._render import Section, fmt_acc, fmt_ms, write_html, write_markdown

RESULT_COLUMNS = [
    "target",
    "role",
    "name",
    "parent",
    "pareto",
    "val_acc",
    "test_acc",
    "val_acc_supernet",
    "latency_ms",
    "latency_min_ms",
    "latency_max_ms",
    "latency_p90_ms",
    "latency_spread",
    "passes",
    "speedup_vs_parent",
    "predicted_ms",
    "params",
    "flops",
    "size_bytes",
    "noisy",
    "key",
]


def build_report(
    run_dir: str | os.PathLike[str],
    targets: list[str] | None = None,
    baselines: list[Path] | None = None,
    out: str | os.PathLike[str] | None = None,
    passes: int = 3,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every model of ``run_dir`` on each target and write the report into ``out``
    (default ``run_dir/report``): ``index.html``, ``report.md``, ``results.csv`` and the
    figures. The report is assembled in a temporary folder and moved into place at the end,
    so a failed build leaves the previous report untouched."""
    run = collect(Path(run_dir), baselines)
    if passes < 1:
        raise ConfigError("--passes must be >= 1")
    search_target = run.summary["target"]["name"]
    names = targets or [search_target]
    loaded = [_target(name, run.summary) for name in names]
    log(
        f"report for {run.run_dir}: {len(run.models)} models "
        f"({_counts(run)}) on {', '.join(t.name for t in loaded)}"
    )
    latencies = measure_all(run.models, loaded, passes, progress)
    results = _results(run, latencies)
    out_dir = Path(out) if out is not None else run.run_dir / "report"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir.parent))
    try:
        sections = _sections(run, loaded, results, staging, search_target)
        results.to_csv(staging / "results.csv", index=False)
        title = f"Report: {run.summary.get('study') or run.run_dir.name}"
        write_markdown(staging / "report.md", title, sections)
        write_html(staging / "index.html", title, sections)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"report written: {out_dir / 'index.html'} (also report.md, results.csv, *.png)")
    return {"out": str(out_dir), "results": results, "targets": [t.name for t in loaded]}


def _counts(run: RunData) -> str:
    roles = [m.role for m in run.models]
    return ", ".join(f"{roles.count(r)} {r}" for r in ROLES if roles.count(r))


def _target(name: str, summary: dict[str, Any]) -> HardwareTarget:
    if name == summary["target"]["name"]:
        return HardwareTarget.from_dict(summary["target"])  # exactly what the search used
    return load_target(name)


def _results(run: RunData, latencies: pd.DataFrame) -> pd.DataFrame:
    """One row per (target, model): the model's metrics and its latency on the target."""
    models = pd.DataFrame(
        [
            {"key": m.key, "role": m.role, "name": m.name, "parent": m.parent, **m.metrics}
            for m in run.models
        ]
    )
    table = latencies.merge(models, on="key", how="left")
    table["pareto"] = False
    table["speedup_vs_parent"] = np.nan
    for _, part in table.groupby("target", sort=False):
        table.loc[part.index, "pareto"] = front_mask(part)
        front = part[part["role"] == "front"].set_index("name")["latency_ms"]
        derived = part[part["parent"].notna()]
        table.loc[derived.index, "speedup_vs_parent"] = [
            front.get(p, np.nan) / lat
            for p, lat in zip(derived["parent"], derived["latency_ms"], strict=True)
        ]
    for column in RESULT_COLUMNS:
        if column not in table:
            table[column] = np.nan
    return table[RESULT_COLUMNS]


def front_mask(table: pd.DataFrame) -> pd.Series:
    """Which ``front`` rows are Pareto-optimal (accuracy up, latency down) in ``table``."""
    mask = pd.Series(False, index=table.index)
    part = table[(table["role"] == "front") & table["latency_ms"].notna()]
    keep = pareto_front(list(zip(part["val_acc"], part["latency_ms"], strict=True)))
    mask.loc[part.index[keep]] = True
    return mask


def _models_table(part: pd.DataFrame) -> pd.DataFrame:
    shown = part.sort_values(["role", "latency_ms"], key=lambda s: s.map(role_order))
    return pd.DataFrame(
        {
            "role": shown["role"],
            "model": shown["name"],
            "parent": shown["parent"].fillna(""),
            "Pareto": np.where(shown["pareto"], "yes", ""),
            "val acc": shown["val_acc"].map(fmt_acc),
            "test acc": shown["test_acc"].map(fmt_acc),
            "latency ms": shown["latency_ms"].map(fmt_ms),
            "min-max ms": [
                f"{a:.2f}-{b:.2f}"
                for a, b in zip(shown["latency_min_ms"], shown["latency_max_ms"], strict=True)
            ],
            "spread": [
                f"{100 * v:.0f}%{' noisy' if n else ''}"
                for v, n in zip(shown["latency_spread"], shown["noisy"], strict=True)
            ],
            "passes": shown["passes"],
            "p90 ms": shown["latency_p90_ms"].map(fmt_ms),
            "speedup": shown["speedup_vs_parent"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}x"),
            "predicted ms": shown["predicted_ms"].map(fmt_ms),
            "params M": shown["params"].map(lambda v: "" if pd.isna(v) else f"{v / 1e6:.3f}"),
            "MFLOPs": shown["flops"].map(lambda v: "" if pd.isna(v) else f"{v / 1e6:.1f}"),
            "size KB": shown["size_bytes"].map(lambda v: "" if pd.isna(v) else f"{v / 1e3:.0f}"),
        }
    )


def _sections(
    run: RunData,
    targets: list[HardwareTarget],
    results: pd.DataFrame,
    out: Path,
    search_target: str,
) -> list[Section]:
    s = run.summary
    sections = [
        answer_section(run.summary, targets, results),
        _environment(run, targets),
        _search(s),
    ]
    for target in targets:
        part = results[results["target"] == target.name]
        is_search = target.name == search_target
        trials = run.trials.dropna(subset=["latency_ms"]) if is_search else None
        budget = s["latency_budget_ms"] if is_search else None
        image = pareto_plot(part, trials, target.name, budget, out / f"pareto-{target.name}.png")
        if is_search:
            shutil.copyfile(image, out / "pareto.png")
        text = [
            f"Every model measured on `{target.name}` ({target.runtime}, {target.threads} "
            f"thread(s), batch {target.batch_size}) in separate passes: the median of the "
            "fastest passes, their spread (max - min over median) beside it; passes that "
            f"disagreed by more than {MAX_PASS_SPREAD:.0%} were measured again (more passes); "
            "\u2018Pareto\u2019 marks the searched models that no other searched model beats "
            "on both accuracy and latency on this target. Accuracy: validation (selects); "
            "test is reported only."
        ]
        if not is_search:
            text.append(
                f"The search ran on `{search_target}`; here its front is re-measured, so an "
                "arch can drop off the front on this runtime."
            )
        if any(part["noisy"].fillna(False)):
            text.append(
                "Some measurements were flagged noisy: their passes still disagreed after "
                "the extra passes, or a pass's own runs varied beyond the target's cv. "
                "Their latency is less certain than the others'."
            )
        missing = [m.name for m in run.models if not m.runs_on(target.runtime)]
        if missing:
            text.append(
                f"Not runnable on this runtime (int8 files for another runtime): "
                f"{', '.join(missing)}."
            )
        sections.append(
            Section(
                f"Accuracy vs latency on {target.name}",
                text,
                tables=[("Models", _models_table(part))],
                images=[image.name],
            )
        )
    if len(targets) > 1:
        sections.append(_comparison(results, [t.name for t in targets]))
    sections.append(_flops(run, results, search_target, out))
    predictor = _predictor(run, targets, out)
    if predictor is not None:
        sections.append(predictor)
    compression = compression_section(results)
    if compression is not None:
        sections.append(compression)
    if run.notes:
        sections.append(Section("Notes", run.notes))
    return sections


def _environment(run: RunData, targets: list[HardwareTarget]) -> Section:
    machine = run.summary.get("machine", {})
    rows = []
    for t in targets:
        env = RUNTIMES[t.runtime].environment(t)
        rows.append(
            {
                "target": t.name,
                "runtime": t.runtime,
                "device": t.device,
                "threads": t.threads,
                "batch": t.batch_size,
                "dtype": t.dtype,
                "libraries": ", ".join(f"{k} {v}" for k, v in env.items() if k != "cpu"),
                "cpu": env.get("cpu", ""),
            }
        )
    text = [
        f"Search machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores "
        f"({', '.join(machine.get('isa', []) or [])}), {machine.get('os', '')}; torch "
        f"{machine.get('torch', '?')}, onnxruntime {machine.get('onnxruntime', '?')}, "
        f"optuna {machine.get('optuna', '?')}.",
        f"Report built {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. "
        "The runtime is part of the hardware target: the same model has different "
        "latencies (and can rank differently) on torch eager and on ONNX Runtime.",
    ]
    return Section("Hardware targets and environment", text, tables=[("", pd.DataFrame(rows))])


def _search(s: dict[str, Any]) -> Section:
    t = s.get("trials", {})
    data = s.get("data", {})
    best = s.get("best") or {}
    rows = [
        ("study", s.get("study")),
        ("search space", s.get("space")),
        ("search target", s["target"]["name"]),
        ("latency budget", f"{s['latency_budget_ms']:g} ms"),
        ("latency proxy", s.get("proxy")),
        ("sampler", s.get("sampler")),
        ("trials complete / within budget", f"{t.get('complete')} / {t.get('feasible')}"),
        ("feasible share", f"{s.get('feasible_share', 0):.2f}"),
        ("hypervolume (acc x ms, ref 0 acc at the budget)", f"{s.get('hypervolume', 0):.3f}"),
        ("front size", s.get("front_size")),
        ("search wall time", f"{s.get('wall_seconds', 0) / 60:.1f} min"),
        ("data", _data_line(data)),
        (
            "best within budget",
            f"{best.get('arch_hash')} val {best.get('val_acc', 0):.3f} at "
            f"{best.get('latency_ms', 0):.2f} ms"
            if best
            else "none",
        ),
    ]
    table = pd.DataFrame(rows, columns=["", "value"])
    return Section("Search", [], tables=[("", table)])


def _data_line(data: dict[str, Any]) -> str:
    counts = data.get("counts") or {}
    sizes = ", ".join(f"{k} {v}" for k, v in counts.items())
    return f"{data.get('source', '?')} ({sizes})" if sizes else str(data.get("source", "?"))


def _comparison(results: pd.DataFrame, targets: list[str]) -> Section:
    front = results[results["role"] == "front"]
    wide = front.pivot_table(index="name", columns="target", values="latency_ms", aggfunc="first")
    pareto = front.pivot_table(index="name", columns="target", values="pareto", aggfunc="first")
    acc = front.groupby("name")["val_acc"].first()
    table = pd.DataFrame({"model": wide.index, "val acc": acc.reindex(wide.index).map(fmt_acc)})
    for t in targets:
        if t in wide:
            table[f"{t} ms"] = wide[t].map(fmt_ms).to_numpy()
            table[f"{t} rank"] = wide[t].rank().to_numpy()
            table[f"{t} Pareto"] = np.where(pareto[t].fillna(False).to_numpy(), "yes", "")
    text = ["The searched front re-measured on every target."]
    first, *others = [t for t in targets if t in wide]
    for other in others:
        both = wide[[first, other]].dropna()
        if len(both) >= 2:
            tau = kendall_tau(both[first].tolist(), both[other].tolist())
            text.append(
                f"Latency rank agreement {first} vs {other}: Kendall tau {tau:.2f} over "
                f"{len(both)} models."
            )
        flips = [
            str(n)
            for n in pareto.index
            if first in pareto
            and other in pareto
            and bool(pareto.at[n, first]) != bool(pareto.at[n, other])
        ]
        if flips:
            text.append(
                f"On the front of one of {first} / {other} but not the other: {', '.join(flips)}."
            )
    return Section("Targets compared", text, tables=[("", table.reset_index(drop=True))])


def _flops(run: RunData, results: pd.DataFrame, search_target: str, out: Path) -> Section:
    points = run.trials.dropna(subset=["latency_ms", "flops"])
    text = [
        "Why we measure: FLOPs order archs differently from their measured latency. "
        "Kendall tau 1 would mean FLOPs rank archs exactly as latency does."
    ]
    images = []
    if len(points) >= 3:
        tau = kendall_tau(points["flops"].tolist(), points["latency_ms"].tolist())
        images.append(flops_plot(points, search_target, tau, out / "flops_vs_latency.png").name)
        text.append(
            f"Over the {len(points)} archs the search measured on {search_target}: Kendall tau "
            f"{tau:.2f} between FLOPs and measured latency."
        )
    for target, part in results.groupby("target", sort=False):
        fp32 = part[part["role"].isin(["front", "baseline", "pruned"])].dropna(
            subset=["flops", "latency_ms"]
        )
        if len(fp32) >= 3:
            tau = kendall_tau(fp32["flops"].tolist(), fp32["latency_ms"].tolist())
            text.append(
                f"Over the report's {len(fp32)} fp32 models on {target}: Kendall tau {tau:.2f}."
            )
    return Section("FLOPs vs measured latency", text, images=images)


def _predictor(run: RunData, targets: list[HardwareTarget], out: Path) -> Section | None:
    """The latency predictor's validation for a report target, when one was run: in the run
    (``latency/<target>/``) or at ``nas.latency validate``'s default place beside it."""
    space = run.summary.get("space", "")
    text, images = [], []
    for t in targets:
        for folder in (
            run.run_dir / "latency" / t.name,
            run.run_dir.parent / "latency" / f"{t.name}.{space}",
        ):
            summary = folder / "summary.json"
            if not summary.is_file():
                continue
            v = json.loads(summary.read_text())
            text.append(
                f"{t.name}: {v.get('samples', '?')} archs, "
                f"{100 * v.get('within_10pct', 0):.0f}% within ±10% "
                f"({100 * v.get('within_5pct', 0):.0f}% within ±5%), Kendall tau "
                f"{v.get('kendall_tau', float('nan')):.3f}, MAPE {v.get('mape_pct', 0):.1f}% "
                f"(from {folder})."
            )
            png = folder / "validation.png"
            if png.is_file():
                name = f"predictor-{t.name}.png"
                shutil.copyfile(png, out / name)
                images.append(name)
            break
    if not text:
        return None
    return Section("Latency predictor validation", text, images=images)
