"""Latency that repeats (issue 25): the same archs measured in passes minutes apart, on a
quiet machine and then with one core kept busy.

    python benchmarks/latency_repeat.py --scale cpu

``cpu``: 10 archs spread over the default space by FLOPs (its smallest and largest and 8
at FLOPs quantiles of 400 random samples), on each target:

1. **Quiet**: 3 rounds at least ``--gap-min`` (10) minutes apart; each round a fresh
   measuring process per target measures every arch once, uncached (the protocol of
   ``LatencyMeter``: warm-up, repeats, outlier rejection, speed normalisation). The
   figure: each arch's pass-to-pass spread, (max - min) / median of its 3 passes.
2. **One core busy**: a load generator (a busy loop that ends by itself, started and
   stopped here) runs while every arch is measured again through ``measure_spaced``, the
   protocol of the search's front (passes of all archs in rounds at least 30 s apart,
   disagreeing passes re-measured, what still disagrees flagged). The
   figure: how far each result lies from the arch's quiet median, and whether it is
   within 10% or flagged noisy (the goal: none silently off by more). Measured two
   ways, arch by arch, each against its own quiet median: with speed normalisation and
   without. The normalised one also against the quiet results of the same protocol in
   passes (``busy_norm_vs_passes_*``, below): the quiet value of what it delivers.

The quiet passes are measured with the contention guard (an attempt whose 16 MB memory
probe is over 20% slower than its fastest is repeated, the least contended kept) and,
arch by arch beside them, without it (the probe only recorded): ``guarded_spread`` and
``unguarded_spread``, side by side; ``quiet_spread`` is the one the target's
``contention_guard`` setting picks (its protocol). Those passes are normalised and read
out both ways: ``quiet_spread`` normalised (the default protocol), ``raw_spread`` without it
(``normalize: false``), also the raw minimum and 10th percentile and the reference's
speed factor alone: which part of the protocol the spread comes from.

``adjacent`` / ``spaced``: in each quiet round, after the single passes, every arch
measured again by the target's protocol in passes (3, more while they disagree, the
result the median of the fastest 3), two ways in turn: back to back per arch
(``measure_passes``) and spaced (``measure_spaced``: every arch of both targets once per
pass, passes at least 30 s apart). The same number of passes, only their spacing in time
differs: whether passes spread over a minute repeat better between rounds
(``spaced_spread`` against ``adjacent_spread``, the same rounds).

Nothing else may run on the machine meanwhile. ``tiny`` (CI smoke): 2 archs, 2 rounds, no
gap. Writes results/latency_repeat_<scale>.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, add_targets_argument, publish

from nas.arch import ArchConfig
from nas.latency import (
    MAX_PASS_SPREAD,
    LatencyMeter,
    LatencyStats,
    PassSummary,
    load_target,
    measure_passes,
    measure_spaced,
    pass_spread,
)
from nas.models import count_flops
from nas.space import SearchSpace, load_space

SETTINGS = {  # archs, rounds, minimum minutes between quiet rounds, seconds between spaced passes
    "cpu": (10, 3, 10.0, 30.0),  # 30 s: cpu-torch-1t's pass_gap_s
    "tiny": (2, 2, 0.0, 0.0),
}
BUSY_TOLERANCE = 0.10
# the busy phase measures every arch with speed normalisation and without, to decide the
# default where another process slows the measurement (the quiet phase cannot); reading
# each pass at its fastest run instead was measured on 2026-12-07 and is not the fix
# (b95f344: 9.0% spread on ONNX Runtime, one busy result 11% off unflagged)
BUSY_WAYS = ("norm", "raw")
# the quiet passes with the contention guard (the protocol) and without it (the control)
QUIET_WAYS = ("guarded", "unguarded")
# the protocol in passes (3, more while they disagree): back to back per arch
# (measure_passes) and spaced over time (measure_spaced), the same round
PASS_WAYS = ("adjacent", "spaced")


def spread_archs(space: SearchSpace, count: int, samples: int = 400) -> list[ArchConfig]:
    """``count`` archs over the space's FLOPs range: its extremes, then quantiles."""
    pool = sorted({space.sample(seed) for seed in range(samples)}, key=count_flops)
    picks = [space.min_arch, space.max_arch]
    for i in range(1, count - 1):
        picks.insert(-1, pool[round(i * (len(pool) - 1) / (count - 1))])
    return picks[:count]


READOUTS = ("raw", "raw_min", "raw_p10", "speed")
READOUT_NOTE = (
    "`raw`: the median before speed normalisation; `raw_min` / `raw_p10`: the fastest run and "
    "the 10th percentile, before normalisation; `speed`: the reference model's speed factor "
    "that normalisation divides by (its spread is the reference's own noise)."
)


def _readouts(stats: list[LatencyStats]) -> dict[str, list[float]]:
    """Each pass read out without speed normalisation (the factor undone) and the factor."""
    speeds = [st.speed for st in stats]
    return {
        "raw": [st.median_ms * st.speed for st in stats],
        "raw_min": [st.min_ms * st.speed for st in stats],
        "raw_p10": [st.p10_ms * st.speed for st in stats],
        "speed": speeds,
    }


def _count_not(oks: Any) -> int:
    return sum(not ok for ok in oks)


# why a result in passes is flagged noisy: its kept passes disagree (or one was contended),
# or they agree and one of them varied over the target's max_cv within itself ("cv")
FLAGS = ("disagree", "cv", "none")
DEVIATION = 0.05  # a quiet result this far from its arch's median over rounds counts as off


def _flag(res: PassSummary) -> str:
    return "disagree" if res.disagree else "cv" if res.noisy else "none"


def _pass_columns(way: str, results: list[PassSummary]) -> dict[str, Any]:
    """The result in passes of each round, their spread, the passes behind them, and why
    each result was flagged with how far it lies from the rounds' median."""
    latencies = [round(res.latency_ms, 4) for res in results]
    middle = statistics.median(latencies)
    return {
        f"{way}_ms": round(middle, 4),
        f"{way}_spread": round(pass_spread(latencies), 4),
        f"{way}_remeasured": sum(res.remeasured for res in results),
        f"{way}_noisy": sum(res.noisy for res in results),
        f"{way}_disagree": sum(res.disagree for res in results),
        f"{way}_results_ms": latencies,
        f"{way}_flags": [_flag(res) for res in results],
        f"{way}_deviations": [round(x / middle - 1, 4) for x in latencies],
        f"{way}_passes_ms": [[round(x, 4) for x in res.medians] for res in results],
    }


def _flag_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Quiet results in passes (both ways) by why they were flagged: how many, their
    median distance from their arch's median over rounds, and how many lie over
    ``DEVIATION`` from it (does the flag pick the results that are off?)."""
    by_flag: dict[str, list[float]] = {flag: [] for flag in FLAGS}
    for row in rows:
        for way in PASS_WAYS:
            for flag, dev in zip(row[f"{way}_flags"], row[f"{way}_deviations"], strict=True):
                by_flag[flag].append(abs(dev))
    return {
        flag: {
            "results": len(devs),
            "median_deviation": round(statistics.median(devs), 4) if devs else 0.0,
            "off": sum(dev > DEVIATION for dev in devs),
        }
        for flag, devs in by_flag.items()
    }


def busy_core(seconds: float) -> subprocess.Popen[bytes]:
    """A process that keeps one core busy for ``seconds`` and then ends by itself."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n pass"
    return subprocess.Popen([sys.executable, "-c", code])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SETTINGS), default="cpu")
    parser.add_argument("--space", default="shufflenetv2_cifar")
    parser.add_argument("--gap-min", type=float, help="minutes between quiet rounds")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="latency_repeat", help="result file name")
    add_targets_argument(parser)
    args = parser.parse_args()
    count, rounds, gap_min, pass_gap_s = SETTINGS[args.scale]
    gap_s = 60 * (gap_min if args.gap_min is None else args.gap_min)
    started = time.time()
    archs = spread_archs(load_space(args.space), count)
    targets = [load_target(t) for t in args.targets]

    quiet: dict[tuple[str, str, str], list[LatencyStats]] = {
        (t.name, a.hash, way): [] for t in targets for a in archs for way in QUIET_WAYS
    }
    in_passes: dict[tuple[str, str, str], list[PassSummary]] = {
        (t.name, a.hash, way): [] for t in targets for a in archs for way in PASS_WAYS
    }
    for r in range(rounds):
        round_start = time.monotonic()
        for target in targets:
            # a fresh measuring process each round; normalised, so that each pass carries
            # both readouts whatever the target says; with the contention guard and, arch
            # by arch beside it, without (the control: the probe only recorded)
            normalised = dataclasses.replace(target, normalize=True)
            meters = {way: LatencyMeter(normalised, guard=way == "guarded") for way in QUIET_WAYS}
            try:
                for arch in archs:
                    for way, meter in meters.items():
                        m = meter.measure_arch(arch, use_cache=False)
                        quiet[target.name, arch.hash, way].append(m.stats)
            finally:
                for meter in meters.values():
                    meter.close()
        # the same round, the shipped protocol again in passes two ways (fresh processes,
        # one per target for both): back to back per arch, and spaced (every arch of both
        # targets once per pass, passes pass_gap_s apart); which goes first alternates
        # round by round
        pass_meters = {t.name: LatencyMeter(t) for t in targets}
        measures = {
            (t.name, a.hash): partial(pass_meters[t.name].measure_arch, a, use_cache=False)
            for t in targets
            for a in archs
        }
        try:
            for way in PASS_WAYS if r % 2 == 0 else PASS_WAYS[::-1]:
                if way == "spaced":
                    got = measure_spaced(measures, gap_s=pass_gap_s)
                else:
                    got = {key: measure_passes(measure) for key, measure in measures.items()}
                for key, result in got.items():
                    in_passes[(*key, way)].append(result)
        finally:
            for meter in pass_meters.values():
                meter.close()
        print(f"quiet round {r + 1}/{rounds} done", flush=True)
        if r + 1 < rounds:
            time.sleep(max(0.0, gap_s - (time.monotonic() - round_start)))

    # bounded: it ends by itself well after the busy measurements (6 passes at most each,
    # both protocols)
    load = busy_core(120.0 + 120.0 * len(archs) * len(targets))
    busy_meters = {
        (t.name, way): LatencyMeter(dataclasses.replace(t, normalize=way == "norm"))
        for t in targets
        for way in BUSY_WAYS
    }
    try:
        time.sleep(1.0)  # let the load take its core
        # both protocols arch by arch, under the same load, in spaced passes like the front
        busy = measure_spaced(
            {
                (t.name, a.hash, way): partial(
                    busy_meters[t.name, way].measure_arch, a, use_cache=False
                )
                for t in targets
                for a in archs
                for way in BUSY_WAYS
            },
            gap_s=pass_gap_s,
        )
    finally:
        for meter in busy_meters.values():
            meter.close()
        load.terminate()
        load.wait()

    rows: list[dict[str, Any]] = []
    for target in targets:
        for arch in archs:
            ways = {way: quiet[target.name, arch.hash, way] for way in QUIET_WAYS}
            stats = ways["guarded" if target.contention_guard else "unguarded"]  # the protocol
            # the spreads are taken from the passes as recorded (rounded), so a reader of the
            # JSON recomputes the same figure from them
            passes = [round(st.median_ms, 4) for st in stats]
            readouts = {k: [round(x, 4) for x in v] for k, v in _readouts(stats).items()}
            by_way = {way: [round(st.median_ms, 4) for st in got] for way, got in ways.items()}
            references = {"norm": passes, "raw": readouts["raw"]}
            row: dict[str, Any] = {
                "target": target.name,
                "arch": arch.short_name(),
                "mflops": round(count_flops(arch) / 1e6, 1),
                "quiet_ms": round(statistics.median(passes), 4),
                "quiet_passes_ms": passes,
                "quiet_spread": round(pass_spread(passes), 4),
                "guard": target.contention_guard,
                **{f"{way}_spread": round(pass_spread(v), 4) for way, v in by_way.items()},
                "guarded_contended": sum(st.contended for st in ways["guarded"]),
                "guarded_attempts": sum(st.attempts for st in ways["guarded"]),
                "unguarded_attempts": sum(st.attempts for st in ways["unguarded"]),
                **{f"{way}_passes_ms": v for way, v in by_way.items()},
                **{
                    f"{way}_probe_passes_ms": [st.probe_ms and round(st.probe_ms, 4) for st in got]
                    for way, got in ways.items()
                },
                **{f"{k}_spread": round(pass_spread(v), 4) for k, v in readouts.items()},
                **{f"{k}_passes": v for k, v in readouts.items()},
                **{
                    k: v
                    for way in PASS_WAYS
                    for k, v in _pass_columns(way, in_passes[target.name, arch.hash, way]).items()
                },
            }
            for way in BUSY_WAYS:  # each protocol against its own quiet median
                reference = statistics.median(references[way])
                loaded = busy[target.name, arch.hash, way]
                off = loaded.latency_ms / reference - 1
                row |= {
                    f"busy_{way}_ms": round(loaded.latency_ms, 4),
                    f"busy_{way}_first_pass_off": round(loaded.medians[0] / reference - 1, 4),
                    f"busy_{way}_passes": len(loaded.medians),
                    f"busy_{way}_noisy": loaded.noisy,
                    f"busy_{way}_flag": _flag(loaded),
                    f"busy_{way}_off": round(off, 4),
                    f"busy_{way}_ok": abs(off) <= BUSY_TOLERANCE or loaded.noisy,
                    # the same, counting only disagreeing passes as flagged
                    f"busy_{way}_ok_disagree": abs(off) <= BUSY_TOLERANCE or loaded.disagree,
                }
            # the busy result (in passes) also against the quiet results of the same
            # protocol in passes (every round, both ways): a single quiet pass that a
            # contended stretch slowed moves the single-pass reference itself
            loaded = busy[target.name, arch.hash, "norm"]
            in_passes_quiet = [x for way in PASS_WAYS for x in row[f"{way}_results_ms"]]
            off = loaded.latency_ms / statistics.median(in_passes_quiet) - 1
            row |= {
                "busy_norm_vs_passes_off": round(off, 4),
                "busy_norm_vs_passes_ok": abs(off) <= BUSY_TOLERANCE or loaded.noisy,
            }
            rows.append(row)
    summary = {
        t.name: {
            "median_quiet_spread": statistics.median(
                r["quiet_spread"] for r in rows if r["target"] == t.name
            ),
            **{
                f"median_{k}_spread": statistics.median(
                    r[f"{k}_spread"] for r in rows if r["target"] == t.name
                )
                for k in (*READOUTS, *QUIET_WAYS, *PASS_WAYS)
            },
            "contended_passes": sum(r["guarded_contended"] for r in rows if r["target"] == t.name),
            **{
                f"{way}_{k}": sum(r[f"{way}_{k}"] for r in rows if r["target"] == t.name)
                for way in PASS_WAYS
                for k in ("remeasured", "noisy")
            },
            **{
                f"busy_{way}_{stat}": agg(
                    r[f"busy_{way}_ok"] for r in rows if r["target"] == t.name
                )
                for way in BUSY_WAYS
                for stat, agg in (("ok_share", statistics.fmean), ("silently_off", _count_not))
            },
            "busy_norm_vs_passes_silently_off": _count_not(
                r["busy_norm_vs_passes_ok"] for r in rows if r["target"] == t.name
            ),
            **{
                f"busy_{way}_silently_off_disagree": _count_not(
                    r[f"busy_{way}_ok_disagree"] for r in rows if r["target"] == t.name
                )
                for way in BUSY_WAYS
            },
            "flags": _flag_summary([r for r in rows if r["target"] == t.name]),
        }
        for t in targets
    }
    columns = [c for c, v in rows[0].items() if not isinstance(v, list)]  # passes: JSON only
    notes = (
        f"{len(archs)} archs x {len(targets)} targets; quiet: {rounds} rounds at least "
        f"{gap_s / 60:g} min apart (fresh measuring process per round, uncached); busy: one "
        f"core kept busy, each arch through measure_spaced (passes at least {pass_gap_s:g} s "
        f"apart, more while they differ by over {MAX_PASS_SPREAD:.0%}) twice, arch by arch: "
        "with speed normalisation (busy_norm, against the normalised quiet median) and "
        "without (busy_raw, against the raw quiet median). `adjacent` / `spaced`: in each "
        "quiet round, after those single passes, the target's protocol again in passes (3 "
        f"per arch, more while the fastest 3 differ by over {MAX_PASS_SPREAD:.0%}, the result "
        "the median of the fastest 3), two ways in turn (which first alternates by round): "
        "back to back per arch (measure_passes) and spaced (measure_spaced: every arch of "
        f"both targets once per pass, passes at least {pass_gap_s:g} s apart); "
        "`<way>_spread` is the spread of those results between rounds. Goals (issue 25): "
        "median quiet spread <= 5% per "
        f"target; busy: every result within {BUSY_TOLERANCE:.0%} of its quiet median or "
        "flagged noisy. Other readouts of the same quiet passes (the diagnosis: which part "
        "of the protocol spreads): "
        + READOUT_NOTE
        + " "
        + "; ".join(
            f"{name}: median quiet spread {s['median_quiet_spread']:.1%} (raw "
            f"{s['median_raw_spread']:.1%}, raw minimum {s['median_raw_min_spread']:.1%}, "
            f"reference speed {s['median_speed_spread']:.1%}); busy, normalised: ok "
            f"{s['busy_norm_ok_share']:.0%} ({s['busy_norm_silently_off']} silently off), raw: "
            f"ok {s['busy_raw_ok_share']:.0%} ({s['busy_raw_silently_off']} silently off); "
            "busy, normalised, against the quiet results in passes: "
            f"{s['busy_norm_vs_passes_silently_off']} silently off; "
            f"side by side, with the contention guard {s['median_guarded_spread']:.1%} "
            f"({s['contended_passes']} of {rounds * count} passes flagged contended), "
            f"without {s['median_unguarded_spread']:.1%}; the protocol in passes, back to "
            f"back {s['median_adjacent_spread']:.1%} ({s['adjacent_remeasured']} extra "
            f"passes, {s['adjacent_noisy']} of {rounds * count} results flagged noisy), spaced "
            f"{s['median_spaced_spread']:.1%} ({s['spaced_remeasured']}, {s['spaced_noisy']}); "
            "those results by why they were flagged (results, how many over "
            f"{DEVIATION:.0%} from their arch's median over rounds): "
            + ", ".join(f"{f} {c['results']} ({c['off']})" for f, c in s["flags"].items())
            + "; busy, counting only disagreeing passes as flagged: "
            f"{s['busy_norm_silently_off_disagree']} silently off normalised, "
            f"{s['busy_raw_silently_off_disagree']} raw"
            for name, s in summary.items()
        )
    )
    extra = {
        "summary": summary,
        "settings": {"pass_gap_s": pass_gap_s, "gap_min": gap_s / 60, "rounds": rounds},
        "wall_s": round(time.time() - started, 1),
    }
    publish(args.name, args.scale, rows, extra, columns, notes, args.results)


if __name__ == "__main__":
    main()
