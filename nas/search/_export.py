"""Export: each front arch as YAML, as a checkpoint and as a row of ``pareto.csv``."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from nas.checkpoint import save_checkpoint
from nas.final import FrontTrainer
from nas.io import write_text_atomic
from nas.models import Supernet
from nas.search._front import FrontEntry
from nas.search._pareto import pareto_front
from nas.search._prepare import SearchContext
from nas.train import evaluate, loader_for
from nas.train import subnet_model as _subnet_model

FRONT_COLUMNS = [
    "rank",
    "trial",
    "arch_hash",
    "name",
    "val_acc",
    "test_acc",
    "val_acc_supernet",
    "training",
    "latency_ms",
    "latency_p90_ms",
    "latency_passes_ms",
    "latency_spread",
    "latency_noisy",
    "predicted_ms",
    "flops",
    "params",
    "size_bytes",
    "checkpoint",
]


def export_front(
    ctx: SearchContext, supernet: Supernet, front: list[FrontEntry]
) -> list[dict[str, Any]]:
    """YAML, checkpoint and a table row per arch: its supernet weights (BatchNorm
    recalibrated) or, with ``options.final``, the model final training made of it. With
    archs added to the estimated front (a final shortlist's or an anchor's, entries marked
    ``shortlisted``), every entry is trained and the front delivered is the Pareto set of
    the trained models (validation accuracy, measured latency); the test split is evaluated
    on the delivered ones only."""
    o = ctx.options
    trainer = (
        None
        if o.final is None
        else FrontTrainer(
            o.final,
            supernet,
            ctx.data,
            ctx.run_dir / "final",
            bn_batches=o.bn_batches,
            device=ctx.device,
            seed=o.seed,
            progress=o.progress,
            log=ctx.log,
        )
    )
    built = []
    for entry in tqdm(front, desc="export", unit="model", disable=not o.progress):
        arch = entry.evaluation.arch
        metrics: dict[str, Any] = {"val_acc_supernet": entry.evaluation.val_acc}
        if trainer is None:
            model = _subnet_model(
                supernet, arch, ctx.data, o.bn_batches, device=ctx.device, seed=o.seed
            )
        else:
            model, metrics["final_training"] = trainer.train(arch)
        val = evaluate(model, loader_for(ctx.data.val, ctx.data, arch, 256, ctx.device))["acc"]
        built.append((entry, model, metrics, val))
    added = any(entry.shortlisted for entry in front)
    if o.final is not None and (o.final.shortlist > 1 or added):
        keep = set(pareto_front([(val, entry.latency_ms) for entry, _, _, val in built]))
        ctx.extra["shortlist"] = [
            {
                "arch_hash": entry.evaluation.arch.hash,
                "name": entry.evaluation.arch.short_name(),
                "estimated_front": not entry.shortlisted,
                "val_acc_supernet": entry.evaluation.val_acc,
                "val_acc": val,
                "latency_ms": entry.latency_ms,
                "delivered": i in keep,
            }
            for i, (entry, _, _, val) in enumerate(built)
        ]
        built = [b for i, b in enumerate(built) if i in keep]
    rows = [
        _save(ctx, rank, entry, model, metrics, val)
        for rank, (entry, model, metrics, val) in enumerate(built)
    ]
    frame = pd.DataFrame(rows, columns=FRONT_COLUMNS + list(ctx.space.max_arch.to_params()))
    write_text_atomic(ctx.run_dir / "pareto.csv", frame.to_csv(index=False))
    return rows


def _save(
    ctx: SearchContext,
    rank: int,
    entry: FrontEntry,
    model: nn.Module,
    metrics: dict[str, Any],
    val: float,
) -> dict[str, Any]:
    """The delivered model's YAML, checkpoint (with its test accuracy) and table row."""
    o = ctx.options
    ev = entry.evaluation
    arch = ev.arch
    arch.to_yaml(ctx.run_dir / "archs" / f"{arch.hash}.yaml")
    # Reported once, after the front is fixed: the test split selects nothing.
    test = evaluate(model, loader_for(ctx.data.test, ctx.data, arch, 256, ctx.device))["acc"]
    metrics = {**metrics, "val_acc": val, "test_acc": test}
    path = save_checkpoint(
        ctx.run_dir / "models" / f"{arch.hash}.pt",
        {
            "kind": "model",
            "arch": arch.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "data": ctx.data.info,
            "metrics": metrics,
            "source": {
                "study": ctx.study_name,
                "trial": entry.trial,
                "supernet": str(ctx.supernet_path),
                "bn_batches": o.bn_batches,
                "final": None if o.final is None else o.final.to_dict(),
            },
        },
    )
    return {
        "rank": rank,
        "trial": entry.trial,
        "arch_hash": arch.hash,
        "name": arch.short_name(),
        "val_acc": val,
        "test_acc": test,
        "val_acc_supernet": ev.val_acc,
        "training": "supernet weights" if o.final is None else o.final.describe(),
        "latency_ms": entry.latency_ms,
        "latency_p90_ms": entry.measured.p90_ms,
        "latency_passes_ms": json.dumps([round(m, 4) for m in entry.measured.medians]),
        "latency_spread": round(entry.measured.spread, 4),
        "latency_noisy": entry.measured.noisy,
        "predicted_ms": ev.predicted_ms,
        "flops": ev.flops,
        "params": ev.params,
        "size_bytes": path.stat().st_size,
        "checkpoint": str(path.relative_to(ctx.run_dir)),
        **arch.to_params(),
    }
