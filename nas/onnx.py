"""ONNX export of toolkit models, checked against torch (one home for export settings)."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nas._errors import NasError

OPSET = 17


class ExportError(NasError):
    """The ONNX export failed or does not reproduce the torch outputs."""


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...],
    path: str | Path | None = None,
    dynamic_batch: bool = False,
) -> bytes:
    """ONNX bytes (and ``path`` if given) of ``model`` in eval mode at a fixed input shape.

    Uses the TorchScript-based exporter: it handles the channel shuffle's view/transpose
    and exports a small model in well under a second, which matters when thousands of
    blocks are measured for a lookup table. ``dynamic_batch`` leaves the batch size free.
    """
    model = model.eval()
    x = torch.randn(*input_shape)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation chatter
        file = Path(tmp) / "model.onnx"
        try:
            torch.onnx.export(
                model,
                (x,),
                str(file),
                dynamo=False,
                opset_version=OPSET,
                input_names=["input"],
                output_names=["output"],
                do_constant_folding=True,
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}
                if dynamic_batch
                else None,
            )
        except Exception as exc:
            raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from None
        data = file.read_bytes()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def max_abs_difference(
    model: nn.Module, onnx_model: bytes | str | Path, input_shape: tuple[int, ...], seed: int = 0
) -> float:
    """Largest absolute difference between torch and ONNX Runtime outputs on one input."""
    import onnxruntime as ort

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*input_shape, generator=g)
    with torch.no_grad():
        expected = model.eval()(x).numpy()
    source = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.abs(got - expected).max())
