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
- the graph around the int8 convolutions: ONNX Runtime runs int8 convolutions in NHWC
  and must transpose back to NCHW wherever an op cannot take NHWC; the channel shuffle
  exported as Reshape-Transpose-Reshape is such an op, the same shuffle as a Gather is
  not (see :func:`gather_shuffle`). Measured here (x1.0, 32 px, 1 thread): int8 with
  the reshape shuffle 1.26x faster than fp32, with the gather shuffle 1.53x.
Each variant is quantized, checked and measured; the caller picks the fastest one that
keeps its accuracy.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.prune import layout_of, shuffle_order
from nas.models import ShuffleNetV2


@dataclass(frozen=True)
class OrtVariant:
    graph: str  # "reshape" | "gather": how the channel shuffle is exported
    format: str  # "qoperator" | "qdq"
    per_channel: bool
    reduce_range: bool = True

    @property
    def name(self) -> str:
        return (
            f"{self.graph}-{self.format}-{'per-channel' if self.per_channel else 'per-tensor'}"
            f"{'' if self.reduce_range else '-full-range'}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "name": self.name}


GRAPHS = ("reshape", "gather")
VARIANTS = tuple(
    OrtVariant(graph, fmt, pc)
    for graph in GRAPHS
    for fmt in ("qdq", "qoperator")
    for pc in (True, False)
)


def select_variants(patterns: str) -> list[OrtVariant]:
    """The variants whose names match any of the comma-separated shell patterns."""
    import fnmatch

    wanted = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [v for v in VARIANTS if any(fnmatch.fnmatch(v.name, p) for p in wanted)]
    if not chosen:
        from nas import ConfigError

        raise ConfigError(
            f"--variants {patterns!r} matches none of: {', '.join(v.name for v in VARIANTS)}"
        )
    return chosen


def gather_shuffle(model: ShuffleNetV2) -> ShuffleNetV2:
    """The same model with every channel shuffle exported as one Gather of the channel
    axis instead of Reshape-Transpose-Reshape. The function is identical; the graph is
    not: ONNX Runtime's layout optimizer can carry an int8 NHWC tensor through a Gather,
    while the 5-D reshape of the shuffle forces a transpose back to NCHW around it."""
    layout = copy.deepcopy(layout_of(model))
    for units in layout.stages:
        for unit in units:
            if unit.permutation is None:
                unit.permutation = shuffle_order(unit.out_channels)
    converted = ShuffleNetV2(model.arch, layout=layout)
    converted.load_state_dict(model.state_dict())
    return converted.train(model.training)


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


def predict(path: Path, batches: Iterable[np.ndarray], threads: int = 2) -> np.ndarray:
    """Logits of an ONNX model over ``batches``, fed in pieces of the model's batch size
    when it is fixed (the last piece padded)."""
    s = session(path, threads)
    inp = s.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    outputs = []
    for batch in batches:
        step = fixed or len(batch)
        for i in range(0, len(batch), step):
            piece = batch[i : i + step]
            n = len(piece)
            if n < step:
                piece = np.concatenate([piece, np.repeat(piece[-1:], step - n, axis=0)])
            outputs.append(s.run(None, {inp.name: piece})[0][:n])
    return np.concatenate(outputs)


def pieces(batches: Iterable[np.ndarray], size: int) -> list[np.ndarray]:
    """``batches`` cut into arrays of ``size`` images (for a model with a fixed batch)."""
    return [b[i : i + size] for b in batches for i in range(0, len(b) - size + 1, size)]


def op_counts(path: Path) -> dict[str, int]:
    """How many nodes of each type the model has (what got quantized, what did not)."""
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
