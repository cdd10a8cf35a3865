"""Search ShuffleNet V2 archs for the best accuracy within a latency budget.

    python -m nas.search --latency-budget 25ms

With no other argument: the embedded CIFAR-10 subset, the default space, the cpu-torch-1t
target, run directory runs/<study-name>/; a supernet is trained first (a short schedule)
unless --supernet is given, and every arch of the Pareto front is trained to its best
(from scratch, 15 epochs; --final-epochs 0 exports the supernet's sub-nets instead).
Rerunning the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nas.cli import ArgumentParser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m nas.search",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--latency-budget", required=True, metavar="LATENCY", help="e.g. 25ms, 0.025s, 25000us"
    )
    parser.add_argument(
        "--target",
        default="cpu-torch-1t",
        help="hardware target: shipped name or YAML (default cpu-torch-1t)",
    )
    parser.add_argument(
        "--space",
        help="search space: shipped name or YAML (default: the "
        "supernet's, else shufflenetv2_cifar)",
    )
    parser.add_argument("--supernet", type=Path, help="trained supernet checkpoint")
    parser.add_argument(
        "--trials", type=int, default=40, help="complete trials the study should reach (default 40)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="stop sampling after this many seconds (anchors' exploration not included)",
    )
    parser.add_argument("--sampler", default="tpe", help="tpe (default), nsga2 or random")
    parser.add_argument("--storage", help="Optuna storage URL (default: SQLite in the run dir)")
    parser.add_argument("--study-name", help="default: <space>-<target>-<budget>")
    parser.add_argument("--run", type=Path, help="run directory (default runs/<study-name>)")
    parser.add_argument(
        "--proxy",
        default="measured",
        help="latency objective: measured (default), predicted or flops",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--explore",
        type=int,
        metavar="N",
        help="at most N trials per anchor whose latency window the search left nearly empty "
        "(default: every neighbour of the best arch there, or of the arch nearest it; "
        "0: none; a plan already stored in the study is finished as it is)",
    )
    parser.add_argument(
        "--start-arch",
        action="append",
        default=[],
        metavar="ARCH",
        help="evaluate this arch (preset or arch YAML) first; repeatable",
    )
    parser.add_argument(
        "--anchor",
        action="append",
        default=[],
        metavar="NET",
        help="a net to beat (preset, reference network such as mobilenet_v3_small_cifar, or "
        "arch YAML): measured on the target, and the best estimate using 80-97%% of its "
        "latency is delivered beside the front (a window the search left nearly empty is "
        "explored first: the neighbours of its best arch, or of the nearest, evaluated); "
        "repeatable",
    )
    parser.add_argument(
        "--bn-batches",
        type=int,
        default=4,
        help="training batches to re-estimate a sub-net's BatchNorm (default 4)",
    )
    parser.add_argument(
        "--supernet-epochs",
        type=int,
        default=8,
        help="epochs of the supernet trained when none is given (default 8)",
    )
    from nas.train import STRATEGIES, SUPERNET_RECIPE

    parser.add_argument(
        "--supernet-strategy",
        default=SUPERNET_RECIPE["strategy"],
        choices=sorted(STRATEGIES),
        help=f"how that supernet is trained (default {SUPERNET_RECIPE['strategy']})",
    )
    parser.add_argument(
        "--supernet-lr",
        type=float,
        default=SUPERNET_RECIPE["lr"],
        help=f"peak learning rate of that supernet (default {SUPERNET_RECIPE['lr']})",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    from nas.data import add_data_arguments, data_spec
    from nas.final import add_final_arguments, final_from_args

    # on by default: a sub-net with supernet weights is an estimate, not a model to deliver
    add_final_arguments(parser, prefix="final-")
    add_data_arguments(parser)
    parser.set_defaults(data=None)
    args = parser.parse_args(argv)

    from nas.latency import parse_latency
    from nas.search import SearchOptions, run_search

    options = SearchOptions(
        latency_budget_ms=parse_latency(args.latency_budget),
        target=args.target,
        space=args.space,
        supernet=args.supernet,
        data=data_spec(args) if args.data is not None else None,
        trials=args.trials,
        timeout_s=args.timeout,
        sampler=args.sampler,
        storage=args.storage,
        study_name=args.study_name,
        run=args.run,
        proxy=args.proxy,
        seed=args.seed,
        final=final_from_args(args),
        bn_batches=args.bn_batches,
        supernet_epochs=args.supernet_epochs,
        supernet_strategy=args.supernet_strategy,
        supernet_lr=args.supernet_lr,
        device=args.device,
        progress=not args.no_progress,
        start_archs=tuple(args.start_arch),
        explore=args.explore,
        anchors=tuple(args.anchor),
    )
    run_search(options)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
