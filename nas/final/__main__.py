"""Train the front of a finished search to its best and export it again.

    python -m nas.final --run runs/<name>
    python -m nas.final --run runs/<name> --init inherit --distill --epochs 10

Each front arch is trained (from scratch by default) into RUN/final/<recipe>/<arch>/;
RUN/models/, pareto.csv and summary.json are then rewritten with the trained models, their
validation accuracy, and their test accuracy (reported once, selecting nothing). The
study is not searched further. Kill it at any time and run the same command to continue.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from nas.cli import ArgumentParser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m nas.final",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", type=Path, required=True, help="run directory of a search")
    parser.add_argument("--device", help="default: the search's")
    parser.add_argument("--no-progress", action="store_true")
    from nas.final import add_final_arguments, final_from_args

    add_final_arguments(parser)
    args = parser.parse_args(argv)
    if args.final_epochs < 1:
        parser.error("--epochs must be >= 1")

    from nas.search import SearchOptions, run_search

    options = SearchOptions.of_run(args.run)
    options = dataclasses.replace(
        options,
        final=final_from_args(args),
        device=args.device or options.device,
        progress=not args.no_progress,
        timeout_s=None,
        explore=0,  # no new trials: an exploration the search left unfinished is finished
    )
    run_search(options)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
