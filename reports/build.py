"""Build the report of a run: Pareto front per hardware target, baselines, compression.

    python -m reports.build --run runs/<name>
    python -m reports.build --run runs/<name> --targets cpu-torch-1t,cpu-ort-1t

Measures every model of the run (searched front, baselines in ``RUN/baselines``, pruned
and int8 variants in ``RUN/compress``) on each target (cached: a rebuild measures nothing
new) and writes ``index.html``, ``report.md``, ``results.csv`` and the figures into
``RUN/report`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nas.cli import ArgumentParser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m reports.build",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run", type=Path, required=True, help="the run directory")
    parser.add_argument(
        "--targets", help="comma-separated hardware targets (default: the search's)"
    )
    parser.add_argument(
        "--baselines",
        type=Path,
        action="append",
        help="baseline checkpoint or directory (repeatable; default RUN/baselines)",
    )
    parser.add_argument("--out", type=Path, help="report directory (default RUN/report)")
    parser.add_argument("--passes", type=int, default=3, help="measurements per model")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from reports import build_report

    targets = [t.strip() for t in args.targets.split(",") if t.strip()] if args.targets else None
    build_report(
        args.run,
        targets=targets,
        baselines=args.baselines,
        out=args.out,
        passes=args.passes,
        progress=not args.no_progress,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
