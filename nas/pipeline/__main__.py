"""Run the whole toolkit from one YAML file: supernet training, search, final training
of the Pareto models, baselines, pruning, int8 quantization and the report.

    python -m nas.pipeline --config examples/pipeline-embedded.yaml

Each stage is skipped when its output already exists in the run directory, so a killed
pipeline resumes where it stopped: run the same command again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nas.cli import ArgumentParser, run


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m nas.pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, required=True, help="pipeline YAML")
    parser.add_argument("--run", type=Path, help="run directory (overrides the YAML's)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    import dataclasses

    from nas.pipeline import load_pipeline, run_pipeline

    config = load_pipeline(args.config)
    if args.run is not None:
        config = dataclasses.replace(config, run=args.run)
    run_pipeline(config, progress=not args.no_progress)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
