"""Static int8 quantization of ShuffleNetV2 checkpoints: ONNX Runtime (QOperator / QDQ,
per-channel, reduce-range variants, measured side by side) and PyTorch eager (x86)."""

from compress.quantize._onnx import VARIANTS, OrtVariant
from compress.quantize._run import METHODS, RUNTIMES, quantize_checkpoint
from compress.quantize._torch import QuantShuffleNet, convert, float_model, int8_skeleton, prepare

__all__ = [
    "METHODS",
    "RUNTIMES",
    "VARIANTS",
    "OrtVariant",
    "QuantShuffleNet",
    "convert",
    "float_model",
    "int8_skeleton",
    "prepare",
    "quantize_checkpoint",
]
