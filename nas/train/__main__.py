"""Train a supernet (``--space``) or one standalone net (``--arch``).

    python -m nas.train --space shufflenetv2_cifar --epochs 5 --out runs/supernet
    python -m nas.train --arch shufflenet_v2_x1_0_cifar --data ../shared/data/cifar10-jpg.tar.gz
    torchrun --nproc_per_node 2 -m nas.train --space shufflenetv2_cifar ...

Kill it at any time and run the same command with ``--resume`` to continue.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from nas.cli import ArgumentParser, field_type, run
from nas.data import add_data_arguments, data_spec
from nas.models import CHANNEL_MATCHES
from nas.train._config import SCHEDULES, SUPERNET_RECIPE, TrainConfig
from nas.train._strategies import STRATEGIES

RECIPE_FIELDS = dataclasses.fields(TrainConfig)
HELP = {
    "lr": "peak learning rate",
    "strategy": "supernet: which sub-nets each step trains",
    "num_random": "supernet: random sub-nets per multi-path step",
    "distill": "supernet: smaller sub-nets learn from the largest's output (off: labels)",
    "width_warmup": "supernet: fraction of training with every sub-net at its largest width",
    "branch_scale": "supernet: initial scale of the stride-1 branches (must be > 0)",
    "channel_match": "supernet: convs behind splits and shuffles share weights by channel "
    "id or by position",
    "grad_clip": "clip the gradient norm to this before each step",
    "kd_ratio": "weight of a teacher's soft targets (final training with distillation)",
    "bn_batches": "training batches that re-estimate a sub-net's BatchNorm",
    "steps_per_epoch": "cap on the steps of an epoch",
    "eval_every": "epochs between validation passes (0: none)",
    "checkpoint_minutes": "also save resume state mid-epoch this often",
}
CHOICES = {
    "schedule": SCHEDULES,
    "strategy": tuple(STRATEGIES),
    "channel_match": CHANNEL_MATCHES,
}


def add_recipe_arguments(group: argparse._ArgumentGroup) -> None:
    """One option per :class:`TrainConfig` field. Unset options take the standalone
    defaults with ``--arch`` and the supernet recipe with ``--space``."""
    standalone = TrainConfig()
    for f in RECIPE_FIELDS:
        flag = "--" + f.name.replace("_", "-")
        default = getattr(standalone, f.name)
        shown = f"default {default}"
        if f.name in SUPERNET_RECIPE:
            shown += f"; supernet {SUPERNET_RECIPE[f.name]}"
        text = f"{HELP.get(f.name, f.name.replace('_', ' '))} ({shown})"
        if isinstance(default, bool):
            group.add_argument(
                "--no-" + f.name.replace("_", "-"),
                dest=f.name,
                action="store_false",
                default=argparse.SUPPRESS,
                help=text,
            )
            continue
        kind = field_type(f)
        group.add_argument(
            flag, type=kind, choices=CHOICES.get(f.name), default=argparse.SUPPRESS, help=text
        )


def main(argv: Sequence[str] | None = None) -> int:
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
    add_recipe_arguments(parser.add_argument_group("recipe"))
    args = parser.parse_args(argv)

    from nas.data import load_data
    from nas.models import load_network
    from nas.space import load_space
    from nas.train import train

    subject = load_space(args.space) if args.space else load_network(args.arch)
    given = {f.name: getattr(args, f.name) for f in RECIPE_FIELDS if hasattr(args, f.name)}
    config = TrainConfig.supernet(**given) if args.space else TrainConfig(**given)
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
