"""What moves the mid-size archs (issue 25): the same models timed with the other core
idle, streaming memory, or spinning in its own registers.

    python benchmarks/latency_contention.py --scale cpu

``latency_repeat`` found mid-size archs on ONNX Runtime spreading 11-30% between passes
while the x0.5 reference's speed factor moved 0-5%, and ``latency_drift`` found the middle
arch slow in 8 of 33 samples of one process, its fastest run slow too. Hypothesis:
contention in the memory hierarchy that the host's tenants share (L3, DRAM bandwidth),
which the cache-resident 0.2 ms reference does not feel. The control: a load generator on
the other core, either streaming a 256 MB buffer (``memory``) or spinning in registers
(``compute``: another core busy, no memory traffic); conditions alternate round by round
(quiet, memory, quiet, compute) in one process pinned to the measuring core. Each round
times every model with the meter's paired protocol against the reference (the subject's
median raw, and over the reference's), and two probes: a copy of a 16 MB buffer (beyond
the core's L2) and of a 512 KB one (inside it).

Readout per target and model: the median slowdown under each load against the median of
the quiet rounds, raw and normalised. Nothing else may run on the machine meanwhile.
Writes results/latency_contention_<scale>.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, publish
from latency_drift import REFERENCE, TARGETS, arch_timer
from latency_repeat import spread_archs

from nas.arch import preset
from nas.latency import RUNTIMES, load_target, run_paired_protocol
from nas.models import count_flops
from nas.space import load_space

# archs, cycles of (quiet, memory, quiet, compute), warm-up and timed runs per reading (the
# meter's protocol at cpu: cpu-ort-1t and cpu-torch-1t take 20 and 60)
SETTINGS = {"cpu": (10, 3, 20, 60), "tiny": (1, 1, 2, 8)}
CONDITIONS = ("quiet", "memory", "quiet", "compute")
# each load: its set-up, then the body of its loop (until the generator's deadline)
LOADS = {
    "memory": (
        "import numpy as np\na = np.ones(1 << 25); b = a.copy()\n",  # 256 MB each, touched
        " np.copyto(b, a)",
    ),
    "compute": ("x = 1\n", " x = (x * 3) % 1000003"),
}


def load_generator(kind: str, core: int, seconds: float) -> subprocess.Popen[str]:
    """A process on ``core`` that loads it the ``kind`` way and ends by itself ``seconds``
    after its set-up; returns once the load runs (the set-up, 512 MB of page faults for
    ``memory``, takes over a second)."""
    setup, body = LOADS[kind]
    code = (
        f"import os, time\nos.sched_setaffinity(0, {{{core}}})\n{setup}"
        f"print('ready', flush=True)\nend = time.monotonic() + {seconds}\n"
        f"while time.monotonic() < end:\n{body}"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "ready":
        process.wait()
        raise RuntimeError(f"the {kind} load generator failed (exit {process.returncode})")
    return process


def _probes() -> dict[str, Callable[[], float]]:
    def copier(floats: int) -> Callable[[], float]:
        src, dst = np.ones(floats), np.empty(floats)

        def run() -> float:
            for _ in range(3):
                np.copyto(dst, src)
            start = time.perf_counter()
            for _ in range(8):
                np.copyto(dst, src)
            return (time.perf_counter() - start) * 1e3

        return run

    return {"probe 16MB": copier(1 << 21), "probe 512KB": copier(1 << 16)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SETTINGS), default="cpu")
    parser.add_argument("--space", default="shufflenetv2_cifar")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="latency_contention", help="result file name")
    args = parser.parse_args()
    count, cycles, warmup, repeats = SETTINGS[args.scale]
    started = time.time()
    targets = [load_target(t) for t in TARGETS]
    core = (targets[0].pinned_cores() or [0])[0]
    others = sorted(set(os.sched_getaffinity(0)) - {core})
    if not others:
        sys.exit("latency_contention needs a second core for the load generator")
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    archs = spread_archs(load_space(args.space), count)
    torch.manual_seed(0)
    reference = preset(REFERENCE)
    backends = {t.name: RUNTIMES[t.runtime](t) for t in targets}
    timers = {
        (t.name, a.short_name()): arch_timer(backends[t.name], a)
        for t in targets
        for a in [reference, *archs]
    }
    probes = _probes()

    def reading(timer: Callable[[], float], ref: Callable[[], float]) -> tuple[float, float]:
        """The subject's median (ms) and its ratio to the reference, blocks alternating."""
        stats, ref_ms = run_paired_protocol(timer, ref, warmup, repeats, max_cv=1.0, retries=0)
        return stats.median_ms, stats.median_ms / ref_ms

    # readings[(target, model)][condition] -> list of (raw ms, normalised ratio)
    readings: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = {}
    for cycle in range(cycles):
        for condition in CONDITIONS:
            load = None
            if condition != "quiet":
                load = load_generator(condition, others[0], 600.0)
            try:
                for name, probe in probes.items():
                    ms = statistics.median(probe() for _ in range(9))
                    readings.setdefault(("probe", name), {}).setdefault(condition, []).append(
                        (ms, ms)
                    )
                for target in targets:
                    ref = timers[target.name, reference.short_name()]
                    for arch in [reference, *archs]:
                        entry = readings.setdefault((target.name, arch.short_name()), {})
                        entry.setdefault(condition, []).append(
                            reading(timers[target.name, arch.short_name()], ref)
                        )
                        if condition == "quiet" and arch != reference:
                            # the same arch in a model or session built afresh: does its
                            # speed belong to the instance (memory placement)?
                            fresh = arch_timer(backends[target.name], arch)
                            entry.setdefault("fresh", []).append(reading(fresh, ref))
            finally:
                if load is not None:
                    load.kill()
                    load.wait()
            print(f"cycle {cycle + 1}/{cycles} {condition} done", flush=True)

    flops = {a.short_name(): round(count_flops(a) / 1e6, 1) for a in [reference, *archs]}
    rows: list[dict[str, Any]] = []
    for (where, model), by_condition in readings.items():
        quiet_raw = statistics.median(r for r, _ in by_condition["quiet"])
        quiet_norm = statistics.median(n for _, n in by_condition["quiet"])
        row: dict[str, Any] = {
            "target": where,
            "model": model if model != reference.short_name() else f"{model} (reference)",
            "mflops": flops.get(model),
            "quiet_ms": round(quiet_raw, 4),
        }
        for load_kind in LOADS:
            raw = statistics.median(r for r, _ in by_condition[load_kind])
            norm = statistics.median(n for _, n in by_condition[load_kind])
            row[f"{load_kind}_raw"] = round(raw / quiet_raw - 1, 4)
            if where != "probe":
                row[f"{load_kind}_norm"] = round(norm / quiet_norm - 1, 4)
        row["quiet_range"] = _range(by_condition["quiet"])
        if "fresh" in by_condition:
            row["fresh_range"] = _range(by_condition["fresh"])
            fresh = statistics.median(r for r, _ in by_condition["fresh"])
            row["fresh_over_quiet"] = round(fresh / quiet_raw - 1, 4)
        rows.append(row)

    publish(
        args.name,
        args.scale,
        rows,
        {
            "settings": {
                "cycles": cycles,
                "conditions": list(CONDITIONS),
                "reference": REFERENCE,
                "measuring_core": core,
                "load_core": others[0],
            },
            "readings": {f"{t}|{m}": v for (t, m), v in readings.items()},
            "wall_min": round((time.time() - started) / 60, 2),
        },
        columns=[
            "target",
            "model",
            "mflops",
            "quiet_ms",
            "memory_raw",
            "memory_norm",
            "compute_raw",
            "compute_norm",
            "quiet_range",
            "fresh_range",
            "fresh_over_quiet",
        ],
        notes=(
            f"{cycles} cycles of rounds (quiet, memory, quiet, compute) in one process pinned "
            f"to core {core}; the load generator on core {others[0]}. `<load>_raw`: the "
            "median raw latency under that load over the quiet rounds' median, minus 1; "
            "`<load>_norm`: the same for the latency over the x0.5 reference timed in "
            "alternating blocks (the meter's protocol); `quiet_range`: (max - min) / median "
            "of the raw quiet readings (the same model instance each round); `fresh_range`: "
            "the same for a model (torch) or session (ONNX Runtime) built afresh in each quiet "
            "round, `fresh_over_quiet` its median over the kept instance's. Probes: 8 copies "
            "of a 16 MB / 512 KB buffer."
        ),
        results=args.results,
    )


def _range(readings: list[tuple[float, float]]) -> float:
    """(max - min) / median of the raw readings."""
    raw = [r for r, _ in readings]
    return round((max(raw) - min(raw)) / statistics.median(raw), 4)


if __name__ == "__main__":
    main()
