"""Shared bits of the benchmark scripts: result files and environment."""

from __future__ import annotations

import argparse
import datetime
import functools
import shlex
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nas.data import DataSpec
from nas.env import machine_info
from nas.io import write_json_atomic, write_text_atomic
from nas.latency import LatencyMeter, Measurement, load_target, side_by_side
from nas.train import SUPERNET_RECIPE, TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"
# The shared CIFAR-10 archive, beside the project (see ../shared/data/README.md).
SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"
CPU_TARGETS = ("cpu-torch-1t", "cpu-ort-1t")


@dataclass(frozen=True)
class Scale:
    """One size of the CIFAR-10 benchmarks: data and the training recipe (issue 9)."""

    data: DataSpec
    epochs: int
    batch_size: int
    lr: float
    steps_per_epoch: int | None = None  # tiny (CI smoke) runs only
    device: str = "cpu"
    bn_batches: int = 4  # batches re-estimating a sub-net's BatchNorm before it is scored
    score_batch: int = 256  # the batch of that re-estimation and of the scoring
    # search budget = a hand-designed net's measured latency times this; above 1 only where
    # the space's smallest arch is that net (tiny: x0.5), so that noise alone decides
    # whether any arch fits the x0.5 budget
    budget_slack: float = 1.0

    def recipe(self, **changes: Any) -> TrainConfig:
        """The benchmark recipe (SGD nesterov, one-cycle, 15% warm-up, smoothing 0.1)."""
        settings: dict[str, Any] = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "steps_per_epoch": self.steps_per_epoch,
        }
        return TrainConfig(**{**settings, **changes})

    def supernet_recipe(self, **changes: Any) -> TrainConfig:
        """The shared supernet recipe (``nas.train.SUPERNET_RECIPE``) at this scale's epochs
        and batch, its learning rate scaled linearly with the batch from 128."""
        settings: dict[str, Any] = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": SUPERNET_RECIPE["lr"] * self.batch_size / 128,
            "steps_per_epoch": self.steps_per_epoch,
            "eval_every": 0,
        }
        return TrainConfig.supernet(**{**settings, **changes})


# cpu: first 1,000 training images per class, 15 epochs, fp32 on this machine's CPU.
# gpu: the whole training split, 30 epochs, bf16 autocast on one GPU.
# tiny: a few steps on the embedded subset, so CI can smoke-test every script.
SCALES = {
    "cpu": Scale(DataSpec(str(SHARED_CIFAR10), train_per_class=1000), 15, 128, 0.1),
    "gpu": Scale(
        DataSpec(str(SHARED_CIFAR10), val_per_class=500), 30, 256, 0.2, device="cuda", bn_batches=8
    ),
    "tiny": Scale(
        DataSpec("embedded", train_per_class=40, val_per_class=10, test_per_class=20),
        1,
        32,
        0.05,
        steps_per_epoch=2,
        bn_batches=1,
        score_batch=32,
        budget_slack=1.5,
    ),
}


def add_targets_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--targets",
        type=lambda text: tuple(t.strip() for t in text.split(",") if t.strip()),
        default=CPU_TARGETS,
        help="hardware targets: comma-separated names or YAML files "
        f"(default {','.join(CPU_TARGETS)})",
    )


def measure_side_by_side(
    subjects: dict[str, Callable[[LatencyMeter], Measurement]],
    targets: tuple[str, ...],
    rounds: int,
) -> dict[tuple[str, str], list[float]]:
    """Median latency (ms) of every subject on every target, ``rounds`` times each.

    Rounds alternate between subjects, so a drift of the host's speed hits all of them
    alike and ratios taken within a round stay fair. Nothing is read from the cache.
    """
    samples: dict[tuple[str, str], list[float]] = {}
    for target in targets:
        with LatencyMeter(load_target(target)) as meter:
            timed = side_by_side(
                {name: functools.partial(measure, meter) for name, measure in subjects.items()},
                rounds,
            )
        for name, measurements in timed.items():
            samples[target, name] = [m.median_ms for m in measurements]
    return samples


def measure_checkpoints(
    paths: dict[str, Path], targets: tuple[str, ...], rounds: int
) -> dict[tuple[str, str], list[float]]:
    """:func:`measure_side_by_side` for model checkpoints (any net the trainer saves)."""

    def measurer(path: Path) -> Callable[[LatencyMeter], Measurement]:
        return lambda meter: meter.measure_checkpoint(path, use_cache=False)

    return measure_side_by_side({name: measurer(p) for name, p in paths.items()}, targets, rounds)


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def write_results(
    name: str,
    scale: str,
    rows: list[dict[str, Any]],
    extra: dict[str, Any],
    columns: list[str],
    notes: str = "",
    results: Path = RESULTS,
) -> tuple[Path, Path]:
    """``results/<name>_<scale>.json`` (everything) and ``.md`` (table, command, machine)."""
    results.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])
    payload = {
        "benchmark": name,
        "scale": scale,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **extra,
        "rows": rows,
    }
    json_path = results / f"{name}_{scale}.json"
    write_json_atomic(json_path, payload)
    md_path = write_text_atomic(
        results / f"{name}_{scale}.md", render_markdown(payload, columns, notes)
    )
    return json_path, md_path


def publish(*args: Any, **kwargs: Any) -> None:
    """:func:`write_results`, then print the table and where the JSON went."""
    json_path, md_path = write_results(*args, **kwargs)
    print(md_path.read_text())
    print(f"-> {json_path}")


def render_markdown(payload: dict[str, Any], columns: list[str], notes: str = "") -> str:
    """The Markdown page of a result payload (re-renderable from the JSON alone)."""
    frame = pd.DataFrame(payload["rows"])[columns]
    table = (
        frame.astype(object)
        .where(frame.notna(), None)
        .to_markdown(index=False, floatfmt=".4g", missingval="–")
    )
    env = payload["machine"]
    gpu = f", GPU {env['cuda']}" if env.get("cuda") else ""
    return (
        f"# {payload['benchmark']} ({payload['scale']} scale)\n\n{table}\n\n{notes}\n\n"
        f"Command: `{payload['command']}`  \nMachine: {env['cpu']}, {env['cores']} cores "
        f"({', '.join(env['isa'])}), torch {env['torch']}, {env['torch_threads']} threads, "
        f"Python {env['python']}{gpu}  \nDate: {payload['date']}\n"
    )
