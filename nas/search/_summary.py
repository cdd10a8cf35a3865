"""The run's summary: ``summary.json`` and what the command prints at the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from nas.env import machine_info
from nas.io import write_json_atomic
from nas.latency import format_ms
from nas.search._pareto import hypervolume
from nas.search._prepare import SearchContext
from nas.search._study import mask_url


def write_summary(
    ctx: SearchContext,
    study: optuna.Study,
    rows: list[dict[str, Any]],
    budget: float,
    seconds: float,
) -> dict[str, Any]:
    o = ctx.options
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    feasible = [t for t in complete if t.values[1] <= budget]
    best = max(rows, key=lambda r: r["val_acc"]) if rows else None
    summary = {
        "study": ctx.study_name,
        "storage": ctx.storage_url.split("@")[-1],
        # as given, the storage URL's password masked: `python -m nas.final` continues from it
        "options": {**o.to_dict(), "storage": o.storage and mask_url(o.storage)},
        "run_dir": str(ctx.run_dir),
        "space": ctx.space.name,
        "space_hash": ctx.space.hash,
        "target": ctx.target.to_dict(),
        "latency_budget_ms": o.latency_budget_ms,
        "proxy": o.proxy,
        "proxy_budget": budget,
        "sampler": o.sampler,
        "trials": {
            "complete": len(complete),
            # of which an anchor's exploration added after the search (not in --trials)
            "explored": sum("explore" in t.user_attrs for t in complete),
            "feasible": len(feasible),
            "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
            "reused": sum("reused_from" in t.user_attrs for t in complete),
        },
        "feasible_share": len(feasible) / len(complete) if complete else 0.0,
        "hypervolume": hypervolume(
            [(r["val_acc"], r["latency_ms"]) for r in rows], o.latency_budget_ms
        ),
        "hypervolume_reference": {"accuracy": 0.0, "latency_ms": o.latency_budget_ms},
        "front_size": len(rows),
        "best": best
        and {
            k: best[k]
            for k in ("arch_hash", "name", "val_acc", "test_acc", "latency_ms", "checkpoint")
        },
        "supernet": str(ctx.supernet_path),
        "data": ctx.data.info,
        "wall_seconds": seconds,
        "machine": machine_info(),
        **ctx.extra,
    }
    write_json_atomic(ctx.run_dir / "summary.json", summary, default=str)
    return summary


def chance_warning(rows: list[dict[str, Any]], num_classes: int) -> str | None:
    """A warning when even the best sub-net the supernet rates is near chance accuracy:
    then the front ranks noise (the supernet needs more training), whatever it looks like."""
    if not rows:
        return None
    best = max(float(r["val_acc_supernet"]) for r in rows)
    if best >= 1.5 / num_classes:
        return None
    return (
        f"warning: the supernet rates its best sub-net at {best:.3f} validation accuracy, "
        f"near chance ({1 / num_classes:.3f}): this front ranks noise; train the supernet "
        "longer (more epochs or data) and search again with --supernet"
    )


def print_summary(
    ctx: SearchContext,
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    log: Callable[[str], None],
) -> None:
    t = summary["trials"]
    log("")
    log(
        f"study {summary['study']}: {t['complete']} trials ({t['feasible']} within the budget, "
        f"{t['reused']} repeated archs reused, {t['failed']} failed) on {ctx.target.name}, "
        f"budget {format_ms(summary['latency_budget_ms'])}, {summary['wall_seconds']:.0f} s"
    )
    if not rows:
        log("no arch met the budget: raise --latency-budget or search longer")
        return
    trained = ctx.options.final
    how = "supernet weights" if trained is None else f"final training: {trained.describe()}"
    log(
        f"Pareto front ({len(rows)} archs, hypervolume {summary['hypervolume']:.3f} acc x ms; "
        f"models: {how}):"
    )
    log(
        f"  {'hash':10s} {'val acc':>7s} {'test acc':>8s} {'latency':>9s} {'p90':>9s} "
        f"{'MFLOPs':>7s} {'params':>7s}  arch"
    )
    for r in rows:
        log(
            f"  {r['arch_hash']:10s} {r['val_acc']:7.3f} {r['test_acc']:8.3f} "
            f"{format_ms(r['latency_ms']):>9s} {format_ms(r['latency_p90_ms']):>9s} "
            f"{r['flops'] / 1e6:7.1f} {r['params'] / 1e6:6.2f}M  {r['name']}"
        )
    for warning in (
        summary.get("budget_warning"),
        chance_warning(rows, ctx.space.max_arch.num_classes),
    ):
        if warning:
            log(warning)
    best = summary["best"]
    log(
        f"best within budget: {best['arch_hash']} val acc {best['val_acc']:.3f} at "
        f"{format_ms(best['latency_ms'])} -> {ctx.run_dir / best['checkpoint']}"
    )
    log(f"outputs in {ctx.run_dir}: pareto.csv, summary.json, archs/, models/")
    if trained is None:
        log(
            "these models are sub-nets with their supernet weights (the search's estimates); "
            f"train them to their best: python -m nas.final --run {ctx.run_dir}"
        )
