"""Standalone figures that outlive the machine: ``results/standalone_<scale>.json``.

An arch trained alone with a scale's recipe has a validation and a test accuracy that no
change to the supernet can alter, and on a 2-core CPU each costs 5-25 minutes, while the
work folders holding the checkpoints do not survive a fresh machine. The ranking
benchmarks therefore record every standalone net they use here (arch, recipe, metrics,
date, machine) and reuse a figure when its checkpoint is gone and its recipe is the
current one. A figure whose recipe differs is never reused: the arch is trained again.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from _common import SCALES

from nas.arch import ArchConfig
from nas.data import DataSpec
from nas.env import machine_info
from nas.io import write_json_atomic
from nas.models import count_flops

# The recipe fields a standalone training depends on (the rest are the supernet's).
RECIPE_FIELDS = (
    "epochs",
    "batch_size",
    "lr",
    "schedule",
    "warmup",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "grad_clip",
    "seed",
    "steps_per_epoch",
)


def recipe_of(scale: str) -> dict[str, Any]:
    """What decides a standalone figure at ``scale``: the data (the archive by file name,
    wherever it lies) and the training recipe, as JSON would give them back."""
    s = SCALES[scale]
    recipe = {k: getattr(s.recipe(), k) for k in RECIPE_FIELDS}
    data = {**dataclasses.asdict(s.data), "source": Path(s.data.source).name}
    return json.loads(json.dumps({"data": data, "recipe": recipe}))


def bank_path(results: Path, scale: str) -> Path:
    return results / f"standalone_{scale}.json"


def _read(results: Path, scale: str) -> dict[str, Any]:
    path = bank_path(results, scale)
    if not path.exists():
        return {"scale": scale, "nets": []}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RuntimeError(f"{path} is not valid JSON ({err}): restore it from git") from None


def lookup(results: Path, scale: str) -> dict[str, dict[str, Any]]:
    """Recorded nets trained with the current recipe of ``scale``, by arch hash. A data
    field added to ``DataSpec`` after a net was recorded reads as its default there (the
    field did not exist, so the net was trained as the default does)."""
    current = recipe_of(scale)
    defaults = json.loads(json.dumps(dataclasses.asdict(DataSpec())))
    return {
        net["arch_hash"]: net
        for net in _read(results, scale)["nets"]
        if {**net["trained_with"], "data": {**defaults, **net["trained_with"]["data"]}} == current
    }


def record(
    results: Path,
    scale: str,
    arch: ArchConfig,
    metrics: dict[str, Any],
    source: str,
    trained_with: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Add (or replace) ``arch``'s figures, trained with ``trained_with`` (default: the
    current recipe of ``scale``); written atomically, so an interrupt leaves the old file."""
    bank = _read(results, scale)
    entry = {
        "arch": arch.short_name(),
        "arch_hash": arch.hash,
        "arch_params": arch.to_params(),
        "mflops": count_flops(arch) / 1e6,
        "val_acc": metrics["val_acc"],
        "test_acc": metrics["test_acc"],
        "train_seconds": metrics.get("train_seconds"),
        "source": source,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "trained_with": trained_with or recipe_of(scale),
        **extra,
    }
    nets = [n for n in bank["nets"] if n["arch_hash"] != arch.hash] + [entry]
    bank["nets"] = sorted(nets, key=lambda n: n["mflops"])
    results.mkdir(parents=True, exist_ok=True)
    write_json_atomic(bank_path(results, scale), bank)
    return entry
