"""Does the speed reference move like the model it normalises? (issue 25)

    python benchmarks/latency_reference.py --scale cpu

Speed normalisation divides a model's time by the factor a reference model (ShuffleNetV2
x0.5, 32 px) ran slower than at the machine's calibration. That is right only if the
model slows by the same factor. The predictor's run of 2026-12-08 (AMD EPYC) says it does
not: over 7 passes the archs' raw times followed the reference's factor with an elasticity
of 1.03 for the smallest fifth (1.9-3.7 ms predicted, the reference's own size) down to
0.51 for the largest (6.9-14 ms), so normalisation over-corrected the large archs; on the
Xeon the day before, the larger archs moved more than the reference instead.

This benchmark isolates the reference's size as the one cause: in one process pinned to
the measuring core, 10 archs over the space's FLOPs range are each timed in blocks
rotating with four references of different sizes (torchvision's x0.5, x1.0, x1.5, x2.0 at
32 px), each block begun with untimed runs as in the meter's paired protocol, so that
every reference reads the same machine state as the subject. A sample of every subject is
taken every ``interval`` seconds for ``minutes`` minutes, on torch eager and ONNX Runtime
(1 thread, batch 1). Readouts of the same timings: raw; over each reference; over the
reference nearest the subject's time; interpolated between the two references around it
(in log time, clamped at the ladder's ends); interpolated between the smallest and the
largest only (a two-reference protocol). Per readout: the spread of the subject's
readings over the run (standard deviation of the log, %), and the elasticity of the raw
time to each reference (1: the reference moves exactly as the subject). Nothing else may
run on the machine meanwhile. ``--subjects blocks``: the same for 10 of the space's
distinct blocks over their parameter counts (the lookup table's entries, mostly far
smaller than x0.5, which normalises them today).

``tiny`` (CI smoke): 2 samples of 3 archs, no waiting. Writes
results/<name>_<scale>.{json,md} (``--name``, default latency_reference).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, publish
from latency_drift import arch_timer
from latency_repeat import spread_archs
from torch import nn

from nas.arch import preset
from nas.latency import RUNTIMES, load_target, space_blocks, warm_block
from nas.models import ShuffleNetV2, count_flops
from nas.space import SearchSpace, load_space

SETTINGS = {  # minutes, seconds between sample starts, archs, rounds of blocks, runs per block
    "cpu": (20.0, 30.0, 10, 3, 8),
    "tiny": (0.0, 0.0, 3, 1, 2),
}
TARGETS = ("cpu-torch-1t", "cpu-ort-1t")
REFERENCES = ("x0_5", "x1_0", "x1_5", "x2_0")


def sample(
    subject: Callable[[], float],
    references: dict[str, Callable[[], float]],
    rounds: int,
    runs: int,
) -> dict[str, float]:
    """Median ms of the subject and of each reference, timed in blocks in rotation."""
    times: dict[str, list[float]] = {"subject": [], **{name: [] for name in references}}
    for _ in range(rounds):
        times["subject"] += warm_block(subject, runs)
        for name, run in references.items():
            times[name] += warm_block(run, runs)
    return {name: float(np.median(values)) for name, values in times.items()}


def readouts(series: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each way to read a subject's samples (``series``: its raw ms and each reference's,
    per sample) as a time at the run's typical speed."""
    raw = series["subject"]
    typical = {name: float(np.median(series[name])) for name in REFERENCES}
    factor = {name: series[name] / typical[name] for name in REFERENCES}
    out = {"raw": raw, **{f"over_{name}": raw / factor[name] for name in REFERENCES}}
    log_t = np.log(float(np.median(raw)))
    ladder = sorted(REFERENCES, key=lambda name: typical[name])
    nearest = min(ladder, key=lambda name: abs(np.log(typical[name]) - log_t))
    out["nearest"] = raw / factor[nearest]
    out["interpolated"] = raw / _between(factor, typical, ladder, log_t)
    ends = [ladder[0], ladder[-1]]
    out["two_ends"] = raw / _between(factor, typical, ends, log_t)
    return out


def _between(
    factor: dict[str, np.ndarray], typical: dict[str, float], ladder: list[str], log_t: float
) -> np.ndarray:
    """The speed factor interpolated in log time between the two references of ``ladder``
    around the subject's time (geometric), the nearest end's outside the ladder."""
    logs = [np.log(typical[name]) for name in ladder]
    if log_t <= logs[0]:
        return factor[ladder[0]]
    if log_t >= logs[-1]:
        return factor[ladder[-1]]
    i = int(np.searchsorted(logs, log_t)) - 1
    w = (log_t - logs[i]) / (logs[i + 1] - logs[i])
    return factor[ladder[i]] ** (1 - w) * factor[ladder[i + 1]] ** w


def spread_pct(values: np.ndarray) -> float:
    """Standard deviation of the log of a series, in %."""
    return float(100 * np.std(np.log(values)))


def elasticity(raw: np.ndarray, reference: np.ndarray) -> float | None:
    """Slope of log raw time on log reference time (1: they move alike)."""
    x, y = np.log(reference) - np.log(reference).mean(), np.log(raw) - np.log(raw).mean()
    return float((x * y).sum() / (x * x).sum()) if (x * x).sum() > 0 else None


@dataclass(frozen=True)
class Subject:
    name: str
    mflops: float | None
    model: Callable[[], nn.Module]
    shape: tuple[int, ...]

    def timer(self, backend: Any) -> Callable[[], float]:
        """One run on ``backend`` in this process (seconds)."""
        return backend.prepare(self.model(), self.shape)


def _subjects(space: SearchSpace, count: int, kind: str) -> dict[str, Subject]:
    """``count`` archs over the space's FLOPs range, or ``count`` of its distinct blocks
    over their parameter counts (smallest, largest and quantiles between)."""
    if kind == "archs":
        return {
            arch.hash: Subject(
                arch.short_name(),
                round(count_flops(arch) / 1e6, 1),
                partial(ShuffleNetV2, arch),
                (1, arch.in_channels, arch.resolution, arch.resolution),
            )
            for arch in spread_archs(space, count)
        }
    blocks = sorted(space_blocks(space), key=lambda b: (b.params, b.key))
    picks = [blocks[round(i * (len(blocks) - 1) / (count - 1))] for i in range(count)]
    return {b.key: Subject(b.key, None, b.build, (1, b.in_channels, b.size, b.size)) for b in picks}


READOUT_NAMES = (
    "raw",
    *(f"over_{name}" for name in REFERENCES),
    "nearest",
    "interpolated",
    "two_ends",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SETTINGS), default="cpu")
    parser.add_argument("--space", default="shufflenetv2_cifar")
    parser.add_argument("--minutes", type=float, help="how long to sample (default: the scale's)")
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="latency_reference", help="result file name")
    parser.add_argument(
        "--subjects",
        choices=("archs", "blocks"),
        default="archs",
        help="archs over the space's FLOPs range, or blocks of its lookup table over their "
        "parameter counts (the predictor's entries, most far smaller than x0.5)",
    )
    args = parser.parse_args()
    minutes, interval_s, count, rounds, runs = SETTINGS[args.scale]
    minutes = minutes if args.minutes is None else args.minutes
    targets = [load_target(t) for t in args.targets]
    core = targets[0].pinned_cores()
    if core and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, core)
    torch.set_num_threads(1)
    space = load_space(args.space)
    subjects = _subjects(space, count, args.subjects)
    column = args.subjects[:-1]  # the table's first column: "arch" or "block"
    torch.manual_seed(0)
    timers: dict[str, dict[str, Callable[[], float]]] = {}
    for target in targets:
        backend = RUNTIMES[target.runtime](target)
        timers[target.name] = {
            **{
                name: arch_timer(backend, preset(f"shufflenet_v2_{name}_cifar"))
                for name in REFERENCES
            },
            **{key: subject.timer(backend) for key, subject in subjects.items()},
        }

    started = time.monotonic()
    records: list[dict[str, Any]] = []
    while True:
        start = time.monotonic()
        record: dict[str, Any] = {"t_min": round((start - started) / 60, 2), "subjects": {}}
        for target in targets:
            refs = {name: timers[target.name][name] for name in REFERENCES}
            for key in subjects:
                record["subjects"][f"{target.name}|{key}"] = sample(
                    timers[target.name][key], refs, rounds, runs
                )
        records.append(record)
        print(f"sample {len(records)} at {record['t_min']:.1f} min", flush=True)
        if len(records) >= 2 and time.monotonic() - started >= minutes * 60:
            break
        time.sleep(max(0.0, interval_s - (time.monotonic() - start)))

    rows: list[dict[str, Any]] = []
    for target in targets:
        for key, subject in subjects.items():
            readings = [r["subjects"][f"{target.name}|{key}"] for r in records]
            series = {k: np.array([x[k] for x in readings]) for k in ("subject", *REFERENCES)}
            row: dict[str, Any] = {
                "target": target.name,
                column: subject.name,
                "mflops": subject.mflops,
                "ms": round(float(np.median(series["subject"])), 4),
            }
            for name, values in readouts(series).items():
                row[f"{name}_pct"] = round(spread_pct(values), 2)
            for name in REFERENCES:
                value = elasticity(series["subject"], series[name])
                row[f"elasticity_{name}"] = None if value is None else round(value, 3)
            rows.append(row)
    summary = {
        target.name: {
            f"median_{name}_pct": statistics.median(
                r[f"{name}_pct"] for r in rows if r["target"] == target.name
            )
            for name in READOUT_NAMES
        }
        for target in targets
    }
    reference_ms: dict[str, dict[str, float]] = {}
    for target in targets:  # each target's own references (the first subject's readings)
        key = next(k for k in records[0]["subjects"] if k.startswith(f"{target.name}|"))
        reference_ms[target.name] = {
            name: round(statistics.median(r["subjects"][key][name] for r in records), 4)
            for name in REFERENCES
        }
    publish(
        args.name,
        args.scale,
        rows,
        {
            "settings": {
                "minutes": minutes,
                "interval_s": interval_s,
                "archs": count,
                "rounds": rounds,
                "runs_per_block": runs,
                "references": [f"shufflenet_v2_{name}_cifar" for name in REFERENCES],
                "targets": [t.name for t in targets],
            },
            "reference_ms": reference_ms,
            "summary": summary,
            "samples": len(records),
            "records": records,
        },
        [
            "target",
            column,
            "mflops",
            "ms",
            *(f"{name}_pct" for name in READOUT_NAMES),
            *(f"elasticity_{name}" for name in REFERENCES),
        ],
        notes=(
            f"{len(records)} samples {interval_s:g} s apart over {minutes:g} min, in one process "
            "pinned to the measuring core; per sample and subject, "
            f"{rounds} rounds of blocks (subject, x0.5, x1.0, x1.5, x2.0 at 32 px; "
            f"{runs} timed runs each after untimed ones), medians. `<readout>_pct`: standard "
            "deviation of the log of the subject's readings over the run (%): `raw`; "
            "`over_<ref>`: divided by that reference's factor (its time over its median in "
            "the run; `over_x0_5` is today's normalisation); `nearest`: the reference whose "
            "time is nearest the subject's; `interpolated`: between the two references around "
            "the subject's time, geometric in log time, the end's outside the ladder; "
            "`two_ends`: the same between x0.5 and x2.0 only. `elasticity_<ref>`: slope of "
            "log raw time on log reference time (1: the reference moves as the subject). "
            f"Reference times (median ms): {reference_ms}. Summary (median over archs): "
            f"{summary}."
        ),
        results=args.results,
    )


if __name__ == "__main__":
    main()
