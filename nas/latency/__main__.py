"""Latency on hardware targets.

python -m nas.latency targets
python -m nas.latency measure --arch shufflenet_v2_x1_0_cifar --target cpu-ort-1t
python -m nas.latency build-lut --target cpu-torch-1t --space shufflenetv2_cifar
python -m nas.latency validate --target cpu-torch-1t --space shufflenetv2_cifar --samples 100
python -m nas.latency serve --token-file token.txt --host 0.0.0.0   # on a device
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from nas.cli import ArgumentParser, run


def _measure(args: argparse.Namespace) -> int:
    from nas.arch import load_arch
    from nas.latency import LatencyMeter, format_ms, load_target
    from nas.models import count_flops, count_params

    target, arch = load_target(args.target), load_arch(args.arch)
    with LatencyMeter(target, cache=not args.no_cache) as meter:
        result = meter.measure_arch(arch, use_cache=not args.no_cache)
    s = result.stats
    print(
        f"{arch.short_name()}  [{arch.hash}] on {target.name} ({target.runtime}, "
        f"{target.device}, {target.threads} thread(s), batch {target.batch_size})"
    )
    print(
        f"latency  median {format_ms(s.median_ms)}  p10 {format_ms(s.p10_ms)}  "
        f"p90 {format_ms(s.p90_ms)}  cv {s.cv:.1%}  runs {s.runs} (+{s.rejected} outliers)"
        f"{'  NOISY' if s.noisy else ''}{'  (cached)' if result.cached else ''}"
    )
    print(f"FLOPs {count_flops(arch) / 1e6:.1f}M MACs  params {count_params(arch) / 1e6:.3f}M")
    if args.json:
        print(
            json.dumps(
                {
                    "arch": arch.to_dict(),
                    "flops": count_flops(arch),
                    "params": count_params(arch),
                    **result.to_dict(),
                }
            )
        )
    return 0


def _build_lut(args: argparse.Namespace) -> int:
    from nas.latency import LatencyMeter, build_lut, default_lut_path, load_target
    from nas.space import load_space

    target, space = load_target(args.target), load_space(args.space)
    with LatencyMeter(target) as meter:
        predictor = build_lut(
            target,
            space,
            meter,
            fit_samples=args.fit_samples,
            passes=args.passes,
            progress=not args.no_progress,
        )
    path = predictor.save(args.out or default_lut_path(target, space))
    print(
        f"lookup table: {len(predictor.table)} blocks, fit slope {predictor.slope:.3f} "
        f"+ {predictor.per_mparam:.3f} ms/Mparam + {predictor.intercept:.3f} ms, fit error "
        f"{predictor.fit['mean_abs_pct_error']:.1f}% -> {path}"
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from nas.latency import LatencyMeter, LatencyPredictor, default_lut_path, load_target
    from nas.latency._validate import error_by_axis, validate, write_report
    from nas.space import load_space

    target, space = load_target(args.target), load_space(args.space)
    predictor = LatencyPredictor.load(args.lut or default_lut_path(target, space))
    with LatencyMeter(target) as meter:
        predictor.check(target, meter.environment)
        frame, result = validate(
            predictor,
            meter,
            space,
            args.samples,
            seed=args.seed,
            passes=args.passes,
            progress=not args.no_progress,
        )
    out = args.out or Path("runs") / "latency" / f"{target.name}.{space.name}"
    write_report(frame, result, out, f"{target.name} · {space.name}")
    (out / "summary.json").write_text(
        json.dumps({"target": target.to_dict(), "space": space.name, **result}, indent=1)
    )
    print(
        f"{result['samples']} archs on {target.name}: within ±5% {result['within_5pct']:.0%}, "
        f"within ±10% {result['within_10pct']:.0%}, Kendall tau {result['kendall_tau']:.3f}, "
        f"MAPE {result['mape_pct']:.1f}% (FLOPs vs latency tau "
        f"{result['flops_kendall_tau']:.3f})"
    )
    if result["within_10pct"] < 0.95 or result["kendall_tau"] < 0.9:
        print("below the goal (>= 95% within ±10%, tau >= 0.9); largest mean errors by choice:")
        print(error_by_axis(frame, space).to_string(index=False, float_format="%.1f"))
    return 0


def _targets(args: argparse.Namespace) -> int:
    from nas.latency import load_target, shipped_targets

    for name in sorted(shipped_targets()):
        target = load_target(name)
        print(f"{name:16s} {target.description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # the device-side server has its own (stdlib) parser
        from nas.latency._server import main as serve

        return serve(argv[1:])
    parser = ArgumentParser(
        prog="python -m nas.latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    measure = commands.add_parser("measure", help="measure one arch on a target")
    measure.add_argument("--arch", required=True, help="preset name or arch YAML")
    measure.add_argument("--target", default="cpu-torch-1t")
    measure.add_argument("--no-cache", action="store_true", help="measure again")
    measure.add_argument("--json", action="store_true", help="also print a JSON line")
    measure.set_defaults(func=_measure)
    lut = commands.add_parser("build-lut", help="measure every block of a space")
    lut.add_argument("--target", default="cpu-torch-1t")
    lut.add_argument("--space", default=None)
    lut.add_argument("--out", type=Path, help="where to write the table")
    lut.add_argument("--fit-samples", type=int, default=30)
    lut.add_argument(
        "--passes",
        type=int,
        default=3,
        help="measure everything this many times, minutes apart; keep medians",
    )
    lut.add_argument("--no-progress", action="store_true")
    lut.set_defaults(func=_build_lut)
    val = commands.add_parser("validate", help="compare the predictor with measurements")
    val.add_argument("--target", default="cpu-torch-1t")
    val.add_argument("--space", default=None)
    val.add_argument("--samples", type=int, default=100)
    val.add_argument("--seed", type=int, default=2_000)
    val.add_argument("--lut", type=Path)
    val.add_argument("--passes", type=int, default=3)
    val.add_argument("--out", type=Path, help="directory for validation.csv/png")
    val.add_argument("--no-progress", action="store_true")
    val.set_defaults(func=_validate)
    targets = commands.add_parser("targets", help="list the shipped targets")
    targets.set_defaults(func=_targets)
    commands.add_parser(
        "serve", help="run the measurement server for remote targets", add_help=False
    )
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(run(main))
