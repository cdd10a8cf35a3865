"""Quantize a trained checkpoint to int8 and measure whether it is faster.

    python -m compress.quantize --checkpoint model.pt --out DIR

Static int8 (weights and activations) calibrated on training images (``--method ptq``)
or fine-tuned with fake quantization (``--method qat``). ``--runtime onnxruntime``
writes fp32.onnx and one int8 model per variant (QOperator/QDQ, per-channel or not,
reduce-range or not), measures them side by side on ``--target`` and keeps the fastest
within ``--max-drop`` validation accuracy as int8.onnx; ``--runtime torch`` writes an
eager x86 int8 model. Results in DIR/quantize.json; says plainly when int8 is not faster.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from nas.cli import ArgumentParser, run


def main(argv: Sequence[str] | None = None) -> int:
    from nas.latency import SIDE_BY_SIDE_ROUNDS

    parser = ArgumentParser(
        prog="python -m compress.quantize",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--method", default="ptq", help="ptq or qat")
    parser.add_argument("--runtime", default="onnxruntime", help="onnxruntime or torch")
    parser.add_argument("--target", default=None, help="hardware target (default per runtime)")
    parser.add_argument("--calib-batches", type=int, default=16)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3, help="QAT learning rate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--max-drop", type=float, default=0.01, help="largest validation accuracy loss, 0-1"
    )
    parser.add_argument(
        "--variants",
        default="*",
        help="ONNX Runtime variants to try, comma-separated shell patterns (e.g. 'gather-*')",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=SIDE_BY_SIDE_ROUNDS,
        help="latency rounds, every graph once per round",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    from nas.data import add_data_arguments, data_spec

    add_data_arguments(parser)
    parser.set_defaults(data=None)
    args = parser.parse_args(argv)

    from compress.quantize import quantize_checkpoint
    from nas import ConfigError

    if args.out.resolve() == args.checkpoint.resolve():
        raise ConfigError("--out must be a directory, not the checkpoint")
    quantize_checkpoint(
        args.checkpoint,
        args.out,
        method=args.method,
        runtime=args.runtime,
        target=args.target,
        calib_batches=args.calib_batches,
        data=data_spec(args) if args.data is not None else None,
        qat_epochs=args.qat_epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_drop=args.max_drop,
        variants=args.variants,
        seed=args.seed,
        progress=not args.no_progress,
        rounds=args.rounds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
