"""Does a memory probe see what moves a model (issue 25)? One pinned process reads every
model again and again for some minutes, each reading between two readings of the probes.

    python benchmarks/latency_probe.py --scale cpu

``latency_contention`` found the mid-size archs moving by up to 44% between quiet rounds
on ONNX Runtime while the cache-resident x0.5 reference moved 3%, and a 16 MB copy (beyond
the core's L2) moving 75%: traffic of the host's other tenants in the shared L3 and DRAM,
felt by each model to its own degree, so one reference's speed factor cannot correct it.
If a probe that lives beyond L2 slows down when the models do, a measurement can tell a
disturbed reading from a quiet one and repeat it; if not, gating on it only discards
readings. The control is each model's own readings taken while the probe was at its
fastest: their spread against all of them.

Per target and model: the spread ((p90 - p10) / median) of its raw and normalised
readings over the run, the same over the readings whose probe stayed within ``--gate`` of
the probe's fastest reading, the share kept, and Spearman's rank correlation between the
normalised reading and the probe. Nothing else may run on the machine meanwhile.
Writes results/latency_probe_<scale>.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, publish
from latency_drift import REFERENCE, TARGETS, arch_timer
from latency_repeat import spread_archs

from nas.arch import preset
from nas.latency import (
    RUNTIMES,
    load_target,
    memory_probe,
    probe_reading,
    run_paired_protocol,
)
from nas.models import count_flops
from nas.space import load_space

# archs, minutes, warm-up and timed runs per reading (the meter's protocol at cpu takes 20
# runs on cpu-ort-1t and 60 on cpu-torch-1t; fewer here, for more readings per minute)
SETTINGS = {"cpu": (10, 10.0, 5, 20), "tiny": (1, 0.05, 1, 4)}
PROBE_RUNS = 7


def summer(floats: int) -> Callable[[], float]:
    """One read of a buffer of ``floats`` float32 (a model's weights are read, not written)."""
    src = np.ones(floats, dtype=np.float32)

    def run() -> float:
        start = time.perf_counter()
        src.sum()
        return time.perf_counter() - start

    return run


# the copy is the meter's own probe (the contention guard's); the committed run (c97ecbc)
# timed an identical copy of its own
PROBES = {"copy 16MB": memory_probe, "read 8MB": lambda: summer(1 << 21)}


def spread(values: list[float]) -> float | None:
    if len(values) < 3:
        return None
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return round(float((p90 - p10) / p50), 4)


def spearman(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3:
        return None
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return round(float(np.corrcoef(ra, rb)[0, 1]), 3)


def analyse(readings: list[dict[str, float]], probe: str, gate: float) -> dict[str, Any]:
    """Spreads of one model's readings, all and gated on ``probe`` (see the module doc)."""
    fastest = min(r[probe] for r in readings)
    kept = [r for r in readings if r[probe] <= fastest * (1 + gate)]
    norm = [r["raw_ms"] / r["ref_ms"] for r in readings]
    return {
        f"{probe}|kept": round(len(kept) / len(readings), 3),
        f"{probe}|raw_gated": spread([r["raw_ms"] for r in kept]),
        f"{probe}|norm_gated": spread([r["raw_ms"] / r["ref_ms"] for r in kept]),
        f"{probe}|rho": spearman(norm, [r[probe] for r in readings]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SETTINGS), default="cpu")
    parser.add_argument("--space", default="shufflenetv2_cifar")
    parser.add_argument("--minutes", type=float, help="how long to read (default: by scale)")
    parser.add_argument("--gate", type=float, default=0.15, help="probe's slack over its fastest")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="latency_probe", help="result file name")
    args = parser.parse_args()
    count, minutes, warmup, repeats = SETTINGS[args.scale]
    minutes = args.minutes or minutes
    targets = [load_target(t) for t in TARGETS]
    core = (targets[0].pinned_cores() or [0])[0]
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    archs = spread_archs(load_space(args.space), count)
    torch.manual_seed(0)
    reference = preset(REFERENCE)
    backends = {t.name: RUNTIMES[t.runtime](t) for t in targets}
    models = [reference, *archs]
    timers = {
        (t.name, a.short_name()): arch_timer(backends[t.name], a) for t in targets for a in models
    }
    probes = {name: make() for name, make in PROBES.items()}

    readings: dict[tuple[str, str], list[dict[str, float]]] = {k: [] for k in timers}
    started = time.monotonic()
    deadline = started + minutes * 60
    sweeps = 0
    with tqdm(total=round(minutes * 60), unit="s", desc="reading") as bar:
        while time.monotonic() < deadline:
            for target in targets:
                ref = timers[target.name, reference.short_name()]
                for arch in models:
                    before = {n: probe_reading(p, PROBE_RUNS) for n, p in probes.items()}
                    stats, ref_ms = run_paired_protocol(
                        timers[target.name, arch.short_name()], ref, warmup, repeats, 1.0, 0
                    )
                    after = {n: probe_reading(p, PROBE_RUNS) for n, p in probes.items()}
                    readings[target.name, arch.short_name()].append(
                        {
                            "t_s": round(time.monotonic() - started, 2),
                            "raw_ms": stats.median_ms,
                            "ref_ms": ref_ms,
                            **{n: (before[n] + after[n]) / 2 for n in probes},
                        }
                    )
            sweeps += 1
            bar.n = min(round(time.monotonic() - started), bar.total)
            bar.refresh()

    rows = []
    flops = {a.short_name(): count_flops(a) / 1e6 for a in models}
    for (target_name, model), series in readings.items():
        row: dict[str, Any] = {
            "target": target_name,
            "model": model + (" (reference)" if model == reference.short_name() else ""),
            "mflops": round(flops[model], 1),
            "readings": len(series),
            "raw": spread([r["raw_ms"] for r in series]),
            "norm": spread([r["raw_ms"] / r["ref_ms"] for r in series]),
        }
        for probe in probes:
            row.update(analyse(series, probe, args.gate))
        rows.append(row)
    probe_rows = {name: spread([r[name] for s in readings.values() for r in s]) for name in probes}
    columns = ["target", "model", "mflops", "readings", "raw", "norm"] + [
        f"{p}|{c}" for p in probes for c in ("kept", "raw_gated", "norm_gated", "rho")
    ]
    notes = (
        f"{sweeps} sweeps over {minutes:g} min in one process pinned to core {core}; each "
        f"reading: {warmup} warm-up and {repeats} timed runs in blocks alternating with the "
        f"x0.5 reference (the meter's paired protocol), between two readings of each probe "
        f"(median of {PROBE_RUNS} runs). `raw` / `norm`: (p90 - p10) / median of the model's "
        f"readings, raw and over the reference; `<probe>|kept`: the share of readings whose "
        f"probe stayed within {args.gate:.0%} of its fastest reading; `raw_gated` / "
        f"`norm_gated`: the spreads over those readings; `rho`: Spearman's rank correlation "
        f"of the normalised reading with the probe (positive: the model is slow when the "
        f"probe is). The probes' own spreads over the run: "
        + ", ".join(f"{n} {v}" for n, v in probe_rows.items())
        + "."
    )
    publish(
        args.name,
        args.scale,
        rows,
        {
            "settings": {
                "archs": count,
                "minutes": minutes,
                "warmup": warmup,
                "repeats": repeats,
                "gate": args.gate,
                "probe_runs": PROBE_RUNS,
                "core": core,
                "sweeps": sweeps,
            },
            "probe_spread": probe_rows,
            "readings": {f"{t}|{m}": s for (t, m), s in readings.items()},
            "wall_min": round((time.monotonic() - started) / 60, 1),
        },
        columns,
        notes,
        args.results,
    )


if __name__ == "__main__":
    main()
