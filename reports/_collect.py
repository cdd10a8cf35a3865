"""What a run directory holds, read into plain records: the search, its front, the
baselines and the compressed variants of each front model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nas import ConfigError
from nas.arch import ArchConfig
from nas.checkpoint import load_checkpoint, network_from_checkpoint, network_of
from nas.models import count_model

#: Roles of the models a report shows, in plotting order.
ROLES = ("front", "baseline", "pruned", "int8", "pruned+int8")


def role_order(value: Any) -> Any:
    """Sort key: roles in ``ROLES`` order."""
    return ROLES.index(value) if value in ROLES else value


INT8_TORCH_FACTORY = "compress.quantize._torch:load_int8"


@dataclass
class ModelEntry:
    """One model of the report and how to measure it.

    ``kind`` says what ``path`` is: ``arch`` (a ShuffleNetV2 arch; ``path`` is its
    checkpoint, measured as the arch so that the search's measurements are reused),
    ``checkpoint`` (any fp32 model checkpoint), ``onnx`` (an int8 ONNX model, ONNX Runtime
    targets only) or ``torch-int8`` (an eager int8 model, torch CPU targets only).
    """

    key: str
    role: str
    name: str
    kind: str
    path: Path
    input_shape: tuple[int, int, int, int]
    parent: str | None = None
    arch: ArchConfig | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def runs_on(self, runtime: str) -> bool:
        if self.kind == "onnx":
            return runtime in ("onnxruntime", "remote")
        if self.kind == "torch-int8":
            return runtime == "torch"
        return True


@dataclass
class RunData:
    run_dir: Path
    summary: dict[str, Any]
    front: pd.DataFrame
    models: list[ModelEntry]
    trials: pd.DataFrame  # every completed trial: arch hash, val_acc, latency_ms, flops, arch
    notes: list[str]


def collect(run_dir: Path, baselines: list[Path] | None = None) -> RunData:
    """Read ``run_dir`` (a finished search) and everything built on it."""
    run_dir = Path(run_dir)
    summary_path, front_path = run_dir / "summary.json", run_dir / "pareto.csv"
    if not run_dir.is_dir():
        raise ConfigError(f"run directory not found: {run_dir}")
    if not summary_path.is_file() or not front_path.is_file():
        raise ConfigError(
            f"{run_dir} holds no finished search (summary.json and pareto.csv); run "
            f"python -m nas.search --run {run_dir} ... first"
        )
    try:
        summary = json.loads(summary_path.read_text())
        front = pd.read_csv(front_path)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ConfigError(f"{run_dir}: unreadable search results ({exc})") from None
    notes: list[str] = []
    models = [
        _front_entry(run_dir, {str(k): v for k, v in row.items()})
        for row in front.to_dict("records")
    ]
    for path in _baseline_files(run_dir, baselines):
        models.append(_checkpoint_entry(path, "baseline", parent=None))
    for entry in list(models):
        if entry.role == "front":
            models += _compressed(run_dir / "compress" / entry.name, entry)
    trials, note = _trials(run_dir, summary)
    if note:
        notes.append(note)
    return RunData(run_dir, summary, front, models, trials, notes)


def _shape(arch: ArchConfig) -> tuple[int, int, int, int]:
    return (1, arch.in_channels, arch.resolution, arch.resolution)


def _front_entry(run_dir: Path, row: dict[str, Any]) -> ModelEntry:
    path = run_dir / str(row["checkpoint"])
    payload = load_checkpoint(path, kind="model")
    network = network_of(payload)
    if not isinstance(network, ArchConfig):
        raise ConfigError(f"{path}: a front model must be a ShuffleNetV2 arch")
    metrics = {
        k: row.get(k)
        for k in ("val_acc", "test_acc", "val_acc_supernet", "predicted_ms", "params", "flops")
    }
    metrics["size_bytes"] = path.stat().st_size
    return ModelEntry(
        f"front/{row['arch_hash']}",
        "front",
        str(row["arch_hash"]),
        "arch",
        path,
        _shape(network),
        arch=network,
        metrics=metrics,
    )


def _baseline_files(run_dir: Path, extra: list[Path] | None) -> list[Path]:
    roots = [run_dir / "baselines"] if extra is None else list(extra)
    files: list[Path] = []
    for root in roots:
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += sorted(root.glob("*/model.pt")) + sorted(root.glob("*.pt"))
        elif extra is not None:
            raise ConfigError(f"baseline not found: {root} (give checkpoints or directories)")
    return files


def _checkpoint_entry(path: Path, role: str, parent: str | None) -> ModelEntry:
    payload = load_checkpoint(path, kind="model")
    network = network_of(payload)
    model = network_from_checkpoint(payload)
    shape = (1, network.in_channels, network.resolution, network.resolution)
    params, flops = count_model(model, shape)
    name = network.short_name() if role != "baseline" else _baseline_name(path, payload)
    got = payload.get("metrics", {})
    return ModelEntry(
        f"{role}/{parent or name}",
        role,
        name,
        "checkpoint",
        path,
        shape,
        parent=parent,
        metrics={
            "val_acc": got.get("val_acc"),
            "test_acc": got.get("test_acc"),
            "params": params,
            "flops": flops,
            "size_bytes": path.stat().st_size,
        },
    )


def _baseline_name(path: Path, payload: dict[str, Any]) -> str:
    from nas.arch import PRESETS

    network = network_of(payload)
    if not isinstance(network, ArchConfig):
        return network.name
    for name, arch in PRESETS.items():  # a preset trained on other data keeps its name
        if arch.replace(num_classes=network.num_classes, in_channels=network.in_channels) == (
            network
        ):
            return name
    return path.parent.name if path.name == "model.pt" else path.stem


def _compressed(folder: Path, parent: ModelEntry) -> list[ModelEntry]:
    """``compress/<hash>/``: ``pruned.pt`` (+ ``.json``), ``int8/`` and ``pruned-int8/``."""
    entries: list[ModelEntry] = []
    parent_hash = parent.name
    pruned = folder / "pruned.pt"
    if pruned.is_file():
        entry = _checkpoint_entry(pruned, "pruned", parent_hash)
        entry.name = f"{parent_hash} pruned"
        entries.append(entry)
    for sub, role, base in (
        ("int8", "int8", parent),
        ("pruned-int8", "pruned+int8", entries[0] if entries else None),
    ):
        report = folder / sub / "quantize.json"
        if not report.is_file() or base is None:
            continue
        q = json.loads(report.read_text())
        int8 = q["int8"]
        onnx = q["runtime"] == "onnxruntime"
        entries.append(
            ModelEntry(
                f"{role}/{parent_hash}",
                role,
                f"{parent_hash} {role}",
                "onnx" if onnx else "torch-int8",
                folder / sub / int8["file"],
                base.input_shape,
                parent=parent_hash,
                metrics={
                    "val_acc": int8.get("val_acc"),
                    "test_acc": int8.get("test_acc"),
                    "params": base.metrics.get("params"),
                    "flops": base.metrics.get("flops"),
                    "size_bytes": int8.get("size_bytes"),
                    "variant": int8.get("name", q.get("method")),
                },
            )
        )
    return entries


def _trials(run_dir: Path, summary: dict[str, Any]) -> tuple[pd.DataFrame, str | None]:
    """Every completed trial of the study (for FLOPs vs latency), when it can be opened."""
    import optuna

    columns = ["trial", "arch_hash", "val_acc", "latency_ms", "flops", "params", "arch"]
    storage = summary.get("storage", "")
    if not str(storage).startswith("sqlite"):
        storage = f"sqlite:///{run_dir / 'study.db'}"
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///") :]).exists():
        return pd.DataFrame(columns=columns), "the study storage is not in the run directory"
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=summary["study"], storage=storage)
    except Exception as exc:  # any storage problem only drops the per-trial plots
        return pd.DataFrame(columns=columns), f"could not open the study ({exc})"
    rows = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        a = t.user_attrs
        if "val_acc" not in a or a.get("reused_from") is not None:
            continue
        arch = ArchConfig.from_dict(a["arch"])
        rows.append(
            {
                "trial": t.number,
                "arch_hash": arch.hash,
                "val_acc": a["val_acc"],
                "latency_ms": a.get("latency_ms"),
                "flops": a.get("flops"),
                "params": a.get("params"),
                "arch": arch,
            }
        )
    return pd.DataFrame(rows, columns=columns), None
