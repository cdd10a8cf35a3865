"""Prune a trained checkpoint structurally.

    python -m compress.prune --checkpoint model.pt --latency 0.6x --target cpu-ort-1t --out p.pt
    python -m compress.prune --checkpoint model.pt --ratio 0.3 --out pruned.pt

``--latency`` removes as many channels as it takes to reach that latency on ``--target``
(0.6x: 60% of the parent's, or a time such as 3ms), found by measuring candidates there;
``--allocate latency`` also measures what each layer's channels cost there and removes
channels by importance per cost (HALP's idea) instead of by importance alone.
``--ratio`` removes that share of all channels (block outputs across splits and shuffles, branch
middles, the stem, conv5) or of the ``--scope internal`` ones (branch middles, conv5),
each pruned layer keeping a multiple of ``--round-to`` channels (default: the block size
the target's runtime needs, 8 or 16 for ONNX Runtime by the CPU's ISA, else 1), ranked by
``--importance``, per layer or ``--global``, in
``--steps`` steps with optional fine-tuning (``--distill``: the unpruned parent teaches);
prints and stores params, FLOPs, measured
latency on ``--target``, validation and test accuracy before and after. With ``--latency``,
a result that is not faster than its parent on ``--target`` is not kept as ``--out``.
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
    goal = parser.add_mutually_exclusive_group(required=True)
    goal.add_argument(
        "--latency", help="latency to reach on --target: 0.6x (of the parent's) or 3ms"
    )
    goal.add_argument("--ratio", type=float, help="share of channels to remove, (0, 1)")
    parser.add_argument(
        "--max-removed",
        type=float,
        default=None,
        help="with --latency: the most channels it may remove, a share (default 0.6); a "
        "goal it cannot reach within that is refused",
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--importance", default="group-norm", help="l1, group-norm or taylor")
    parser.add_argument(
        "--global",
        dest="global_ranking",
        action="store_true",
        help="rank all channels together instead of per layer",
    )
    parser.add_argument(
        "--allocate",
        default="importance",
        help="how layers share a --latency goal: 'importance' (the ranking alone) or "
        "'latency' (importance per latency cost, each layer's cost measured on --target)",
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
        default=None,
        help="pruned layers keep a multiple of this many channels (default: the target "
        "runtime's block, 8 for ONNX Runtime's NCHWc kernels on AVX2, 16 on AVX-512, else 1)",
    )
    parser.add_argument("--steps", type=int, default=1, help="prune iteratively")
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument(
        "--distill",
        action="store_true",
        help="fine-tuning also learns from the unpruned parent's soft predictions",
    )
    parser.add_argument(
        "--kd-ratio", type=float, default=1.0, help="weight of the parent's soft targets"
    )
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

    from compress.prune import (
        MAX_REMOVED,
        LatencyGoal,
        PruneConfig,
        block_size,
        prune_checkpoint,
    )
    from nas.latency import load_target

    target = None if args.target == "none" else args.target
    if args.max_removed is not None and args.latency is None:
        parser.error("--max-removed bounds a --latency goal: give one")
    latency = None
    if args.latency is not None:
        latency = LatencyGoal.parse(
            args.latency, MAX_REMOVED if args.max_removed is None else args.max_removed
        )
    round_to = args.round_to
    if round_to is None:
        round_to = 1 if target is None else block_size(load_target(target))
    config = PruneConfig(
        0.5 if latency is not None else args.ratio,  # a goal sets the ratio it needs
        args.importance,
        args.global_ranking,
        scope=args.scope,
        round_to=round_to,
        allocation=args.allocate,
    )
    if args.out.resolve() == args.checkpoint.resolve():
        from nas import ConfigError

        raise ConfigError("--out must differ from --checkpoint")
    prune_checkpoint(
        args.checkpoint,
        args.out,
        config,
        latency=latency,
        steps=args.steps,
        finetune_epochs=args.finetune_epochs,
        distill=args.distill,
        kd_ratio=args.kd_ratio,
        data=data_spec(args) if args.data is not None else None,
        target=target,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
