"""Latency on hardware targets: measurement backends, protocol, cache, LUT predictor.

The search optimises *measured* latency: :class:`LatencyMeter` measures on a
:class:`HardwareTarget` in a separate pinned process with a fixed protocol (warm-up,
repeats, IQR outlier rejection, median with spread, retries while noisy) and caches
results; :class:`LatencyPredictor` predicts from a per-block lookup table and is validated
against end-to-end measurement.

Targets, runtimes and budgets load without torch; the measuring parts import it when first
used.
"""

from typing import TYPE_CHECKING

from nas._errors import MeasurementError
from nas._lazy import lazy_attributes
from nas.latency._budget import format_ms, parse_latency
from nas.latency._passes import (
    MAX_PASS_SPREAD,
    PASSES,
    SIDE_BY_SIDE_ROUNDS,
    PassSummary,
    measure_passes,
    measure_spaced,
    pass_spread,
    side_by_side,
)
from nas.latency._runtimes import RUNTIMES, register_runtime
from nas.latency._target import DEFAULT_TARGET, HardwareTarget, load_target, shipped_targets

if TYPE_CHECKING:
    from nas.latency._backends import Backend
    from nas.latency._blocks import Block, arch_blocks, space_blocks
    from nas.latency._cache import PROTOCOL_VERSION, LatencyCache
    from nas.latency._meter import LatencyMeter, Measurement
    from nas.latency._predictor import LatencyPredictor, build_lut, default_lut_path
    from nas.latency._stats import (
        ContentionGuard,
        LatencyStats,
        memory_probe,
        probe_reading,
        run_paired_protocol,
        run_protocol,
        summarize,
        warm_block,
    )
    from nas.latency._validate import (
        error_by_axis,
        kendall_tau,
        prediction_scores,
        validate,
        validation_archs,
        write_report,
    )

__getattr__, __dir__ = lazy_attributes(
    __name__,
    globals(),
    {
        "nas.latency._backends": ("Backend",),
        "nas.latency._blocks": ("Block", "arch_blocks", "space_blocks"),
        "nas.latency._cache": ("LatencyCache", "PROTOCOL_VERSION"),
        "nas.latency._meter": ("LatencyMeter", "Measurement"),
        "nas.latency._predictor": ("LatencyPredictor", "build_lut", "default_lut_path"),
        "nas.latency._stats": (
            "ContentionGuard",
            "LatencyStats",
            "memory_probe",
            "probe_reading",
            "run_paired_protocol",
            "run_protocol",
            "summarize",
            "warm_block",
        ),
        "nas.latency._validate": (
            "error_by_axis",
            "kendall_tau",
            "prediction_scores",
            "validate",
            "validation_archs",
            "write_report",
        ),
    },
)

__all__ = [
    "DEFAULT_TARGET",
    "MAX_PASS_SPREAD",
    "PASSES",
    "PROTOCOL_VERSION",
    "RUNTIMES",
    "SIDE_BY_SIDE_ROUNDS",
    "Backend",
    "Block",
    "ContentionGuard",
    "HardwareTarget",
    "LatencyCache",
    "LatencyMeter",
    "LatencyPredictor",
    "LatencyStats",
    "Measurement",
    "MeasurementError",
    "PassSummary",
    "arch_blocks",
    "build_lut",
    "default_lut_path",
    "error_by_axis",
    "format_ms",
    "kendall_tau",
    "load_target",
    "measure_passes",
    "measure_spaced",
    "memory_probe",
    "parse_latency",
    "pass_spread",
    "prediction_scores",
    "probe_reading",
    "register_runtime",
    "run_paired_protocol",
    "run_protocol",
    "shipped_targets",
    "side_by_side",
    "space_blocks",
    "summarize",
    "validate",
    "validation_archs",
    "warm_block",
    "write_report",
]
