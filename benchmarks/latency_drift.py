"""Where the latency spread comes from (issue 25): the same models timed once a minute for
half an hour, beside probes of the machine's state, read out by every candidate protocol.

    python benchmarks/latency_drift.py --scale cpu

One process, pinned to the core the measuring process uses, times everything itself on
both runtimes (torch eager and ONNX Runtime, 1 thread, batch 1) so that nothing but time
separates the readings. Each sample (one a minute):

- **probes** of the machine: a pure-Python loop (the core's clock and pipeline: no
  memory traffic), a small matmul (the vector units, cache-resident), a 4 MB copy (the
  caches), a 64 MB copy (memory bandwidth);
- per runtime and subject (3 archs over the space's FLOPs range): the reference model
  (ShuffleNetV2 x0.5, what speed normalisation times), the subject, the reference again,
  then subject and reference interleaved run by run, then the two by the meter's paired
  protocol (alternating blocks, each begun with untimed runs);
- a **fresh measuring process** (``LatencyMeter``, torch eager, no normalisation) times
  the middle subject: the process's own share of the spread (memory placement, allocator,
  warm-up) against the long-lived process's reading of the same minute;
- the operating system's view: steal time and the other core's load (/proc/stat), and
  this process's CPU time over wall time while it timed.

Readouts of the same timings (the candidate protocols): the median, the minimum and the
10th percentile as they are; the median over the reference timed right before (the
normalisation until 2026-12-05), over the mean of the references before and after,
interleaved run by run, paired in warm blocks; the median over each probe. Figure per
readout: the pass-to-pass spread of the issue, (max - min) / median over 3 readings 10
minutes apart (every such triple of the run), and over 3 consecutive readings (a minute
apart). A readout whose spread is smallest is the protocol the data supports. Nothing
else may run on the machine meanwhile.

``tiny`` (CI smoke): 3 samples, no waiting. Writes results/latency_drift_<scale>.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, publish
from latency_repeat import spread_archs

from nas.arch import ArchConfig, preset
from nas.latency import (
    RUNTIMES,
    Backend,
    LatencyMeter,
    load_target,
    pass_spread,
    run_paired_protocol,
)
from nas.models import ShuffleNetV2, count_flops
from nas.space import load_space

SETTINGS = {  # samples, seconds between sample starts, runs per timing, minutes of the gap
    "cpu": (33, 60.0, 30, 10.0),
    "tiny": (3, 0.0, 4, 0.0),
}
TARGETS = ("cpu-torch-1t", "cpu-ort-1t")
REFERENCE = "shufflenet_v2_x0_5_cifar"
WARMUP = 5


# -- probes of the machine's state -----------------------------------------------------------


def _python_loop() -> None:
    total = 0
    for i in range(20_000):
        total += i * i
    if total < 0:  # never: keeps the loop from looking dead
        raise AssertionError


def _probes() -> dict[str, Callable[[], Any]]:
    a, b = torch.randn(128, 128), torch.randn(128, 128)
    out = torch.empty(128, 128)
    small_src, small_dst = torch.randn(1 << 20), torch.empty(1 << 20)  # 4 MB
    big_src, big_dst = torch.randn(1 << 24), torch.empty(1 << 24)  # 64 MB

    def matmul() -> None:
        for _ in range(16):
            torch.mm(a, b, out=out)

    def cache_copy() -> None:
        for _ in range(4):
            small_dst.copy_(small_src)

    return {
        "python": _python_loop,
        "matmul": matmul,
        "cache": cache_copy,
        "memory": lambda: big_dst.copy_(big_src),
    }


def arch_timer(backend: Backend, arch: ArchConfig) -> Callable[[], float]:
    """One run of ``arch`` at batch 1 on ``backend``, in this process (seconds)."""
    shape = (1, arch.in_channels, arch.resolution, arch.resolution)
    return backend.prepare(ShuffleNetV2(arch), shape)


def _timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


def _runs(run: Callable[[], Any], count: int) -> list[float]:
    for _ in range(WARMUP):
        run()
    return [_timed(run) for _ in range(count)]


# -- the operating system's view -------------------------------------------------------------


def _cpu_jiffies() -> dict[str, list[int]]:
    """``/proc/stat``'s per-cpu counters (user, nice, system, idle, iowait, irq, softirq,
    steal); empty where there is no /proc."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    return {
        parts[0]: [int(x) for x in parts[1:9]]
        for parts in (line.split() for line in lines)
        if parts[0].startswith("cpu") and parts[0] != "cpu"
    }


def _os_view(before: dict[str, list[int]], after: dict[str, list[int]], core: int) -> dict:
    """Steal time over all cpus, and how busy the cpus other than ``core`` were."""
    if not before or not after:
        return {"steal": None, "other_busy": None}
    delta = {c: [b - a for a, b in zip(before[c], after[c], strict=True)] for c in after}
    total = sum(sum(d) for d in delta.values()) or 1
    others = [d for c, d in delta.items() if c != f"cpu{core}"]
    other_total = sum(sum(d) for d in others) or 1
    other_idle = sum(d[3] + d[4] for d in others)
    return {
        "steal": round(sum(d[7] for d in delta.values()) / total, 4),
        "other_busy": round(1 - other_idle / other_total, 4),
    }


# -- one sample ------------------------------------------------------------------------------


def _subject_readings(
    subject: Callable[[], float], reference: Callable[[], float], runs: int
) -> dict[str, float]:
    """The subject timed between two reference timings, then interleaved with it run by
    run, then by the paired protocol (alternating warm blocks, what the meter does)."""
    ref_before = _runs(reference, runs)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    times = _runs(subject, runs)
    cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    ref_after = _runs(reference, runs)
    pairs = [(subject() * 1e3, reference() * 1e3) for _ in range(runs)]
    paired, paired_reference = run_paired_protocol(
        subject, reference, WARMUP, runs, max_cv=1.0, retries=0
    )
    return {
        "median": float(np.median(times)),
        "min": float(np.min(times)),
        "p10": float(np.percentile(times, 10)),
        "ref_before": float(np.median(ref_before)),
        "ref_after": float(np.median(ref_after)),
        "inter_subject": float(np.median([s for s, _ in pairs])),
        "inter_reference": float(np.median([r for _, r in pairs])),
        "paired_subject": paired.median_ms,
        "paired_reference": paired_reference,
        "cpu_share": round(cpu_share, 4),
    }


PROBES = ("python", "matmul", "cache", "memory")
Readout = Callable[[dict[str, Any], dict[str, float]], float]


def _over_probe(name: str) -> Readout:
    return lambda r, p: r["median"] / p[name]


READOUTS: dict[str, Readout] = {
    "raw": lambda r, p: r["median"],
    "min": lambda r, p: r["min"],
    "p10": lambda r, p: r["p10"],
    "ref_before": lambda r, p: r["median"] / r["ref_before"],
    "ref_sandwich": lambda r, p: r["median"] / ((r["ref_before"] + r["ref_after"]) / 2),
    "interleaved": lambda r, p: r["inter_subject"] / r["inter_reference"],
    "paired": lambda r, p: r["paired_subject"] / r["paired_reference"],
    **{f"over_{name}": _over_probe(name) for name in PROBES},
}


def _triple_spreads(series: list[float], gap: int) -> list[float]:
    """pass_spread of every (i, i + gap, i + 2 gap) triple of the series."""
    return [
        pass_spread([series[i], series[i + gap], series[i + 2 * gap]])
        for i in range(len(series) - 2 * gap)
    ]


def _correlation(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return round(float(np.corrcoef(np.log(a), np.log(b))[0, 1]), 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SETTINGS), default="cpu")
    parser.add_argument("--space", default="shufflenetv2_cifar")
    parser.add_argument("--samples", type=int, help="samples to take (default: the scale's)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="latency_drift", help="result file name")
    args = parser.parse_args()
    samples, interval_s, runs, gap_min = SETTINGS[args.scale]
    samples = args.samples or samples
    gap = max(1, round(gap_min * 60 / interval_s)) if interval_s else 1
    started = time.time()

    targets = [load_target(t) for t in TARGETS]
    core = targets[0].pinned_cores()
    if core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, core)
    torch.set_num_threads(1)
    archs: list[ArchConfig] = spread_archs(load_space(args.space), 3)
    torch.manual_seed(0)
    timers: dict[tuple[str, str], Callable[[], float]] = {}
    for target in targets:
        backend = RUNTIMES[target.runtime](target)
        for arch in [preset(REFERENCE), *archs]:
            timers[target.name, arch.hash] = arch_timer(backend, arch)
    reference_hash = preset(REFERENCE).hash
    probes = _probes()
    fresh_target = dataclasses.replace(targets[0], normalize=False)
    middle = archs[1]

    records: list[dict[str, Any]] = []
    for s in range(samples):
        start = time.monotonic()
        jiffies = _cpu_jiffies()
        record: dict[str, Any] = {
            "t_min": round((time.time() - started) / 60, 2),
            "probes": {name: float(np.median(_runs(run, runs))) for name, run in probes.items()},
            "subjects": {},
        }
        for target in targets:
            for arch in archs:
                record["subjects"][f"{target.name}|{arch.hash}"] = _subject_readings(
                    timers[target.name, arch.hash], timers[target.name, reference_hash], runs
                )
        record |= _os_view(jiffies, _cpu_jiffies(), core[0] if core else 0)
        with LatencyMeter(fresh_target, cache=False) as meter:  # a fresh process, as a pass
            record["fresh_ms"] = meter.measure_arch(middle, use_cache=False).median_ms
        records.append(record)
        print(f"sample {s + 1}/{samples} at {record['t_min']:.1f} min", flush=True)
        if s + 1 < samples:
            time.sleep(max(0.0, interval_s - (time.monotonic() - start)))

    rows: list[dict[str, Any]] = []
    for target in targets:
        for arch in archs:
            key = f"{target.name}|{arch.hash}"
            readings = [r["subjects"][key] for r in records]
            row: dict[str, Any] = {
                "target": target.name,
                "arch": arch.short_name(),
                "mflops": round(count_flops(arch) / 1e6, 1),
                "ms": round(statistics.median(x["median"] for x in readings), 4),
            }
            raw = [x["median"] for x in readings]
            for name, readout in READOUTS.items():
                series = [readout(x, r["probes"]) for x, r in zip(readings, records, strict=True)]
                row[f"{name}_10min"] = _median(_triple_spreads(series, gap))
                row[f"{name}_1min"] = _median(_triple_spreads(series, 1))
            for name in PROBES:
                row[f"corr_{name}"] = _correlation(raw, [r["probes"][name] for r in records])
            row["corr_reference"] = _correlation(raw, [x["ref_before"] for x in readings])
            if arch == middle and target is targets[0]:
                fresh = [r["fresh_ms"] for r in records]
                row["fresh_10min"] = _median(_triple_spreads(fresh, gap))
                row["fresh_1min"] = _median(_triple_spreads(fresh, 1))
                row["fresh_over_raw"] = _median([f / x for f, x in zip(fresh, raw, strict=True)])
            rows.append(row)

    summary = {
        t.name: {
            f"median_{name}_{span}": _median(
                [r[f"{name}_{span}"] for r in rows if r["target"] == t.name]
            )
            for name in READOUTS
            for span in ("10min", "1min")
        }
        for t in targets
    }
    probe_series = {n: [r["probes"][n] for r in records] for n in probes}
    summary["probes"] = {
        f"{n}_10min": _median(_triple_spreads(v, gap)) for n, v in probe_series.items()
    }
    summary["os"] = {
        "max_steal": max((r["steal"] or 0.0) for r in records),
        "max_other_busy": max((r["other_busy"] or 0.0) for r in records),
    }
    publish(
        args.name,
        args.scale,
        rows,
        {
            "settings": {
                "samples": samples,
                "interval_s": interval_s,
                "runs": runs,
                "gap_samples": gap,
                "targets": list(TARGETS),
                "reference": REFERENCE,
            },
            "summary": summary,
            "records": records,
            "wall_min": round((time.time() - started) / 60, 2),
        },
        columns=[
            "target",
            "arch",
            "mflops",
            "ms",
            *(f"{n}_10min" for n in READOUTS),
            "fresh_10min",
            "fresh_over_raw",
        ],
        notes=(
            f"{samples} samples {interval_s:.0f} s apart in one process pinned to the "
            "measuring core; columns `<readout>_10min`: median pass-to-pass spread of 3 "
            f"readings {gap} samples apart (the issue's figure; `_1min` in the JSON: "
            "consecutive samples). Readouts: `raw`/`min`/`p10` of the subject's runs; "
            "`ref_before` (the normalisation before 2026-12-05), `ref_sandwich`, `interleaved` "
            "(run by run), `paired` (warm blocks, the meter's protocol since) over the x0.5 "
            "reference; `over_<probe>` over a machine probe. `fresh`: a fresh measuring "
            "process's reading of the middle arch each sample. Summary: "
            + "; ".join(
                f"{t}: "
                + ", ".join(
                    f"{n} {summary[t][f'median_{n}_10min']:.1%}"
                    for n in READOUTS
                    if summary[t][f"median_{n}_10min"] is not None
                )
                for t in TARGETS
            )
        ),
        results=args.results,
    )


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


if __name__ == "__main__":
    main()
