"""Hand-designed baselines on CIFAR-10: accuracy, training time and measured latency.

    python benchmarks/baselines.py --scale cpu

Trains the hand-designed family: torchvision's ShuffleNetV2 x0.5, x1.0, x1.5 and x2.0
(CIFAR stem: 3x3 stride-1 first conv, no max-pool) and MobileNetV3-small and -large
(stride-1 stem) with the benchmark recipe of the scale
(``cpu``: first 1,000 training images per class of the shared archive, 15 epochs, batch
128, lr 0.1; ``gpu``: whole training split, 30 epochs, batch 256, lr 0.2, bf16), then,
with training finished, measures each trained net on the CPU targets, rounds alternating
between nets. Validation (carved from the training images that are not trained on) is
recorded; test accuracy (full 10,000-image test split) is measured once, at the end.
Each run lives in ``--work/<model>``: finished ones are kept, interrupted ones resume.
Writes results/baselines_<scale>.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS,
    SCALES,
    add_targets_argument,
    measure_checkpoints,
    publish,
    spread,
)

from nas.checkpoint import load_checkpoint, network_from_checkpoint, network_of
from nas.data import load_data
from nas.models import count_model, load_network
from nas.train import FINAL, STATE, train

# name in the tables -> preset or reference network
MODELS = {
    "ShuffleNetV2 x0.5": "shufflenet_v2_x0_5_cifar",
    "ShuffleNetV2 x1.0": "shufflenet_v2_x1_0_cifar",
    "ShuffleNetV2 x1.5": "shufflenet_v2_x1_5_cifar",
    "ShuffleNetV2 x2.0": "shufflenet_v2_x2_0_cifar",
    "MobileNetV3-small": "mobilenet_v3_small_cifar",
    "MobileNetV3-large": "mobilenet_v3_large_cifar",
}
# Test accuracy and training time the issue measured for this recipe on this machine's CPU.
REFERENCE = {
    "cpu": {
        "ShuffleNetV2 x0.5": {"test_acc": 0.656, "train_s": 406},
        "ShuffleNetV2 x1.0": {"test_acc": 0.705, "train_s": 1108},
    },
    "gpu": {
        "ShuffleNetV2 x0.5": {"test_acc": 0.853},
        "ShuffleNetV2 x1.0": {"test_acc": 0.885},
    },
}


def train_baselines(scale_name: str, work: Path, models: dict[str, str]) -> dict[str, Path]:
    """Train (or resume, or keep) every baseline; returns the final checkpoints."""
    scale = SCALES[scale_name]
    data = load_data(scale.data)
    checkpoints = {}
    for label, name in models.items():
        out = work / name
        final = out / FINAL["model"]
        if not final.exists():
            print(f"== training {label} ({name}) into {out}")
            train(
                load_network(name),
                data,
                scale.recipe(),
                out,
                device=scale.device,
                resume=(out / STATE).exists(),
            )
        checkpoints[label] = final
    return checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SCALES), default="cpu")
    parser.add_argument(
        "--work", type=Path, help="run folder (default runs/bench-baselines-<scale>)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="latency rounds per net and target")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--models",
        type=lambda text: [m.strip() for m in text.split(",") if m.strip()],
        help=f"comma-separated subset of {','.join(MODELS.values())}",
    )
    add_targets_argument(parser)
    args = parser.parse_args()
    work = args.work or Path(f"runs/bench-baselines-{args.scale}")
    started = time.time()
    models = MODELS
    if args.models:
        unknown = sorted(set(args.models) - set(MODELS.values()))
        if unknown:
            parser.error(f"unknown model {unknown[0]!r}: choose from {', '.join(MODELS.values())}")
        models = {k: v for k, v in MODELS.items() if v in args.models}
    checkpoints = train_baselines(args.scale, work, models)
    samples = measure_checkpoints(
        checkpoints,
        args.targets,
        args.rounds,
    )
    rows = []
    for label, path in checkpoints.items():
        checkpoint = load_checkpoint(path, kind="model")
        metrics = checkpoint["metrics"]
        reference = REFERENCE.get(args.scale, {}).get(label, {})
        row: dict[str, Any] = {
            "model": label,
            "name": models[label],
            "val_acc": metrics["val_acc"],
            "test_acc": metrics["test_acc"],
            "reference_test_acc": reference.get("test_acc"),
            "train_s": metrics["train_seconds"],
            "reference_train_s": reference.get("train_s"),
            "img_per_s": metrics["img_per_s"],
        }
        for target in args.targets:
            s = spread(samples[(target, label)])
            name = Path(target).stem
            row[f"{name}_ms"] = s["median"]
            row[f"{name}_min_ms"] = s["min"]
            row[f"{name}_max_ms"] = s["max"]
        rows.append(row)
    _add_cost(rows, checkpoints)
    columns = [
        "model",
        "mflops",
        "params_M",
        "val_acc",
        "test_acc",
        "reference_test_acc",
        "train_s",
        "reference_train_s",
        "img_per_s",
        *(f"{Path(t).stem}_ms" for t in args.targets),
    ]
    scale = SCALES[args.scale]
    notes = (
        f"Recipe: {scale.epochs} epochs, batch {scale.batch_size}, SGD nesterov 0.9, weight "
        f"decay 5e-4, one-cycle to lr {scale.lr} with 15% warm-up, label smoothing 0.1, "
        "random crop (4-px reflect padding) + flip, CIFAR-10 channel normalisation. Data: "
        f"`{scale.data.source}` (train_per_class={scale.data.train_per_class}); val is carved "
        "from training images not trained on, test is the full test split, measured once. "
        "train_s: seconds in training steps (evaluation excluded); img_per_s: median step. "
        f"Latency: batch 1, median over {args.rounds} rounds of each measurement's median, "
        "rounds alternating between nets, measured after all training finished "
        "(min/max per round in the JSON). reference_*: the issue's figures for this recipe."
    )
    extra = {
        "checkpoints": {k: str(v) for k, v in checkpoints.items()},
        "targets": list(args.targets),
        "data": scale.data.to_dict(),
        "recipe": scale.recipe().to_dict(),
        "rounds": args.rounds,
        "samples": {f"{t}/{m}": v for (t, m), v in samples.items()},
        "wall_s": time.time() - started,
    }
    publish("baselines", args.scale, rows, extra, columns, notes, args.results)


def _add_cost(rows: list[dict[str, Any]], checkpoints: dict[str, Path]) -> None:
    """MFLOPs (multiply-adds) and parameters of each trained net."""
    for row in rows:
        payload = load_checkpoint(checkpoints[row["model"]], kind="model")
        network = network_of(payload)
        shape = (1, network.in_channels, network.resolution, network.resolution)
        params, flops = count_model(network_from_checkpoint(payload), shape)
        row["params_M"], row["mflops"] = params / 1e6, flops / 1e6


if __name__ == "__main__":
    main()
