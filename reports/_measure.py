"""Every model of a report measured on every report target (through the latency cache)."""

from __future__ import annotations

from functools import partial

import pandas as pd
from tqdm.auto import tqdm

from nas.latency import HardwareTarget, LatencyMeter, Measurement, measure_spaced
from reports._collect import INT8_TORCH_FACTORY, ModelEntry

LATENCY_COLUMNS = [
    "target",
    "key",
    "latency_ms",
    "latency_min_ms",
    "latency_max_ms",
    "latency_p90_ms",
    "latency_spread",
    "passes",
    "noisy",
]


def measure_all(
    models: list[ModelEntry], targets: list[HardwareTarget], passes: int, progress: bool
) -> pd.DataFrame:
    """Latency of each model on each target that can run it, from ``passes`` separate
    measurements in rounds the target's ``pass_gap_s`` apart (cached, so a rebuilt report
    re-measures nothing; passes that disagree are measured again, see
    ``measure_spaced``): the median of the fastest ``passes``, their
    min and max and their spread, ``noisy`` where they still disagree."""
    rows = []
    for target in targets:
        subjects = [m for m in models if m.runs_on(target.runtime)]
        with (
            LatencyMeter(target) as meter,
            tqdm(
                total=len(subjects) * passes,
                desc=f"measure on {target.name}",
                unit="pass",
                disable=not progress,
            ) as bar,
        ):
            measured = measure_spaced(
                {i: partial(_measure, meter, entry) for i, entry in enumerate(subjects)},
                passes=passes,
                gap_s=target.pass_gap_s,
                progress=bar.update,
            )
        for i, entry in enumerate(subjects):
            m = measured[i]
            rows.append(
                {
                    "target": target.name,
                    "key": entry.key,
                    "latency_ms": m.latency_ms,
                    "latency_min_ms": m.min_ms,
                    "latency_max_ms": m.max_ms,
                    "latency_p90_ms": m.p90_ms,
                    "latency_spread": m.spread,
                    "passes": len(m.medians),
                    "noisy": m.noisy,
                }
            )
    return pd.DataFrame(rows, columns=LATENCY_COLUMNS)


def _measure(meter: LatencyMeter, entry: ModelEntry, repeat: int) -> Measurement:
    if entry.kind == "arch":
        assert entry.arch is not None
        return meter.measure_arch(entry.arch, repeat=repeat)
    if entry.kind == "checkpoint":
        return meter.measure_checkpoint(entry.path, repeat=repeat)
    if entry.kind == "onnx":
        return meter.measure_onnx(entry.path, entry.input_shape, repeat=repeat)
    return meter.measure_built(INT8_TORCH_FACTORY, entry.path, entry.input_shape, repeat=repeat)
