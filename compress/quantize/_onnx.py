"""Static int8 for ONNX Runtime: graph pre-processing, calibration on training batches,
and the variants that decide whether int8 is actually faster on a CPU.

What matters on x86 (ONNX Runtime's CPU kernels, MLAS):
- ``quant_pre_process`` (symbolic shape inference + ONNX Runtime's own graph optimisation
  before quantizing): without it the quantizer sees unfused, shape-less nodes, leaves
  many ops in float and the model pays a quantize/dequantize pair around each.
- the format: ``QOperator`` writes QLinearConv/QLinearConcat nodes directly; ``QDQ``
  writes Q/DQ pairs that the runtime fuses at session creation.
- per-channel weights (accuracy) and ``reduce_range`` (7-bit weights: the u8 x s8
  multiply-adds of AVX2 without VNNI saturate in 16 bits otherwise).
Each variant is quantized, checked and measured; the caller picks the fastest one that
keeps its accuracy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OrtVariant:
    format: str  # "qoperator" | "qdq"
    per_channel: bool
    reduce_range: bool

    @property
    def name(self) -> str:
        return (
            f"{self.format}-{'per-channel' if self.per_channel else 'per-tensor'}"
            f"{'-reduce-range' if self.reduce_range else ''}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "name": self.name}


VARIANTS = tuple(
    OrtVariant(fmt, pc, rr)
    for fmt in ("qoperator", "qdq")
    for pc in (True, False)
    for rr in (True, False)
)


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over numpy batches."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self.name = name
        self.batches = batches
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position == len(self.batches):
            return None
        self.position += 1
        return {self.name: self.batches[self.position - 1]}

    def rewind(self) -> None:
        self.position = 0


def preprocess(fp32: Path, out: Path) -> Path:
    """Shape inference and graph optimisation ahead of quantization."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32), str(out), skip_symbolic_shape=False)
    return out


def quantize(pre: Path, out: Path, variant: OrtVariant, calibration: list[np.ndarray]) -> Path:
    """Static int8 (uint8 activations, int8 weights, min-max calibration) of ``pre``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    logging.getLogger("root").setLevel(logging.WARNING)  # the quantizer logs at INFO
    quantize_static(
        str(pre),
        str(out),
        _Reader(_input_name(pre), calibration),
        quant_format=QuantFormat.QOperator if variant.format == "qoperator" else QuantFormat.QDQ,
        per_channel=variant.per_channel,
        reduce_range=variant.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return out


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def session(path: Path, threads: int = 1) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def predict(path: Path, batches: Iterator[np.ndarray], threads: int = 2) -> np.ndarray:
    """Logits of an ONNX model (with a free batch size) over ``batches``."""
    s = session(path, threads)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: batch})[0] for batch in batches])


def op_counts(path: Path) -> dict[str, int]:
    """How many nodes of each type the model has (what got quantized, what did not)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
