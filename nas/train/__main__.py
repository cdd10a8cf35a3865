"""Train a supernet (``--space``) or one standalone net (``--arch``).

    python -m nas.train --space shufflenetv2_cifar --epochs 5 --out runs/supernet
    python -m nas.train --arch shufflenet_v2_x1_0_cifar --data ../shared/data/cifar10-jpg.tar.gz
    torchrun --nproc_per_node 2 -m nas.train --space shufflenetv2_cifar ...

Kill it at any time and run the same command with ``--resume`` to continue.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nas._cli import ArgumentParser, run
from nas.train._config import SCHEDULES, STRATEGIES, TrainConfig


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data",
        default="embedded",
        help="embedded (default), cifar10, synthetic, an ImageFolder directory "
        "or a .tar/.tar.gz of one",
    )
    group.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        help="convert images to 1 (gray) or 3 channels; default: as stored",
    )
    group.add_argument(
        "--train-per-class", type=int, help="train on the first N images per class (by file name)"
    )
    group.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of training images held out for validation (default 0.1)",
    )
    group.add_argument("--val-per-class", type=int, help="validation images per class")
    group.add_argument("--split-seed", type=int, default=0)


def data_spec(args: argparse.Namespace):  # -> DataSpec
    from nas.data import DataSpec

    return DataSpec(
        source=args.data,
        channels=args.channels,
        train_per_class=args.train_per_class,
        val_fraction=args.val_fraction,
        val_per_class=args.val_per_class,
        split_seed=args.split_seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    defaults = TrainConfig()
    parser = ArgumentParser(
        prog="python -m nas.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--space", help="train a supernet over this search space (name or YAML)")
    what.add_argument(
        "--arch", help="train one net: a preset or reference network name, or an arch YAML"
    )
    parser.add_argument("--out", type=Path, help="run directory (default runs/train-<name>)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_data_arguments(parser)
    recipe = parser.add_argument_group("recipe")
    recipe.add_argument("--epochs", type=int, default=defaults.epochs)
    recipe.add_argument("--batch-size", type=int, default=defaults.batch_size)
    recipe.add_argument("--lr", type=float, default=defaults.lr, help="peak learning rate")
    recipe.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule)
    recipe.add_argument("--warmup", type=float, default=defaults.warmup)
    recipe.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    recipe.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    recipe.add_argument("--strategy", choices=STRATEGIES, default=defaults.strategy)
    recipe.add_argument(
        "--num-random",
        type=int,
        default=defaults.num_random,
        help="random sub-nets per sandwich step",
    )
    recipe.add_argument(
        "--no-distill",
        action="store_true",
        help="train smaller sub-nets on labels, not on the largest's output",
    )
    recipe.add_argument("--bn-batches", type=int, default=defaults.bn_batches)
    recipe.add_argument("--steps-per-epoch", type=int)
    recipe.add_argument("--eval-every", type=int, default=defaults.eval_every)
    recipe.add_argument("--seed", type=int, default=defaults.seed)
    recipe.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=defaults.checkpoint_minutes,
        help="also save resume state mid-epoch this often",
    )
    args = parser.parse_args(argv)

    from nas.data import load_data
    from nas.models import load_network
    from nas.space import load_space
    from nas.train import train

    subject = load_space(args.space) if args.space else load_network(args.arch)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        schedule=args.schedule,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        strategy=args.strategy,
        num_random=args.num_random,
        distill=not args.no_distill,
        seed=args.seed,
        bn_batches=args.bn_batches,
        eval_every=args.eval_every,
        steps_per_epoch=args.steps_per_epoch,
        checkpoint_minutes=args.checkpoint_minutes,
    )
    main_rank = os.environ.get("RANK", "0") == "0"
    name = f"supernet-{Path(args.space).stem}" if args.space else f"train-{Path(args.arch).stem}"
    out = args.out or Path("runs") / name
    data = load_data(data_spec(args))
    if main_rank:
        print(
            f"data: {data.info['source']}  train {len(data.train)}  val {len(data.val)}  "
            f"test {len(data.test)}  classes {data.num_classes}  {data.image_size}px "
            f"x{data.channels}"
        )
    metrics = train(
        subject,
        data,
        config,
        out,
        device=args.device,
        resume=args.resume,
        progress=not args.no_progress,
    )
    if main_rank:
        print("  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
