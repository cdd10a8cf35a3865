"""Prune a trained checkpoint structurally.

    python -m compress.prune --checkpoint model.pt --ratio 0.3 --out pruned.pt

Removes ``--ratio`` of all channels (block outputs across splits and shuffles, branch
middles, the stem, conv5) or of the ``--scope internal`` ones (branch middles, conv5),
each pruned layer keeping a multiple of ``--round-to`` channels, ranked by
``--importance``, per layer or ``--global``, in
``--steps`` steps with optional fine-tuning; prints and stores params, FLOPs, measured
latency on ``--target``, validation and test accuracy before and after.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nas.cli import ArgumentParser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m compress.prune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--ratio", type=float, required=True, help="share of channels, (0, 1)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--importance", default="group-norm", help="l1, group-norm or taylor")
    parser.add_argument(
        "--global",
        dest="global_ranking",
        action="store_true",
        help="rank all channels together instead of per layer",
    )
    parser.add_argument(
        "--scope",
        default="all",
        help="all channels, or only 'internal' ones (branch middles, conv5): block outputs "
        "keep the arch's widths",
    )
    parser.add_argument(
        "--round-to",
        type=int,
        default=1,
        help="pruned layers keep a multiple of this many channels (8: ONNX Runtime's "
        "NCHWc kernels on AVX2)",
    )
    parser.add_argument("--steps", type=int, default=1, help="prune iteratively")
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--target", default="cpu-torch-1t", help="hardware target for latency, or 'none'"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress", action="store_true")
    from nas.data import add_data_arguments, data_spec

    add_data_arguments(parser)
    parser.set_defaults(data=None)
    args = parser.parse_args(argv)

    from compress.prune import PruneConfig, prune_checkpoint

    config = PruneConfig(
        args.ratio,
        args.importance,
        args.global_ranking,
        scope=args.scope,
        round_to=args.round_to,
    )
    if args.out.resolve() == args.checkpoint.resolve():
        from nas import ConfigError

        raise ConfigError("--out must differ from --checkpoint")
    prune_checkpoint(
        args.checkpoint,
        args.out,
        config,
        steps=args.steps,
        finetune_epochs=args.finetune_epochs,
        data=data_spec(args) if args.data is not None else None,
        target=None if args.target == "none" else args.target,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
