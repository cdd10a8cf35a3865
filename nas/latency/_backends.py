"""Measurement backends, one class per runtime, behind one interface and a registry.

A backend turns a model (an ``nn.Module`` with an input shape, or an ONNX file) into a
``time_once()`` callable returning the seconds of one inference on its target. Adding a
runtime is one class decorated with :func:`register_runtime`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from nas._env import package_version
from nas._errors import ConfigError

if TYPE_CHECKING:
    from nas.latency._target import HardwareTarget

RUNTIMES: dict[str, type[Backend]] = {}


def register_runtime(cls: type[Backend]) -> type[Backend]:
    RUNTIMES[cls.name] = cls
    return cls


class Backend(ABC):
    """Runs one model on a target; subclasses say how."""

    name: ClassVar[str]

    def __init__(self, target: HardwareTarget) -> None:
        self.target = target

    @staticmethod
    def versions() -> dict[str, str | None]:
        """Library versions that change a measurement (part of the cache key)."""
        return {"torch": package_version("torch")}

    @classmethod
    def unavailable(cls, target: HardwareTarget) -> str | None:
        """Why this backend cannot run ``target`` here, or None."""
        return None

    @abstractmethod
    def prepare(self, model: nn.Module | Path, input_shape: tuple[int, ...]) -> Callable[[], float]:
        """Load ``model`` and return ``time_once`` (seconds of one inference)."""


_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@register_runtime
class TorchBackend(Backend):
    """PyTorch eager. CPU: wall clock. CUDA: CUDA events, autocast, channels-last."""

    name = "torch"

    @classmethod
    def unavailable(cls, target: HardwareTarget) -> str | None:
        if target.device == "cuda" and not torch.cuda.is_available():
            return "no CUDA device is available"
        return None

    def prepare(self, model: nn.Module | Path, input_shape: tuple[int, ...]) -> Callable[[], float]:
        if isinstance(model, Path):
            raise ConfigError("the torch runtime measures modules, not ONNX files")
        model = model.eval()
        dtype = _TORCH_DTYPES[self.target.dtype]
        if self.target.device == "cuda":
            return self._cuda(model, input_shape, dtype)
        x = torch.randn(*input_shape)
        autocast = dtype != torch.float32

        def time_once() -> float:
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=autocast):
                start = time.perf_counter()
                model(x)
                return time.perf_counter() - start

        return time_once

    @staticmethod
    def _cuda(model: nn.Module, shape: tuple[int, ...], dtype: torch.dtype) -> Callable[[], float]:
        torch.backends.cudnn.benchmark = True
        model = model.cuda().to(memory_format=torch.channels_last)
        x = torch.randn(*shape, device="cuda").to(memory_format=torch.channels_last)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def time_once() -> float:
            with (
                torch.inference_mode(),
                torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32),
            ):
                start.record()
                model(x)
                end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3

        return time_once


_GRAPH_LEVELS = ("disabled", "basic", "extended", "all")


@register_runtime
class OnnxRuntimeBackend(Backend):
    """ONNX Runtime: modules are exported to ONNX first (checked against torch)."""

    name = "onnxruntime"

    @staticmethod
    def versions() -> dict[str, str | None]:
        return {
            "onnxruntime": package_version("onnxruntime"),
            "onnx": package_version("onnx"),
            "torch": package_version("torch"),
        }

    @classmethod
    def unavailable(cls, target: HardwareTarget) -> str | None:
        if package_version("onnxruntime") is None:
            return "onnxruntime is not installed (pip install 'shufflenas[onnx]')"
        level = target.options.get("graph_optimization", "all")
        if level not in _GRAPH_LEVELS:
            return f"graph_optimization must be one of {list(_GRAPH_LEVELS)}, got {level!r}"
        return None

    def session(self, model: bytes | str) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.target.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = self.target.options.get("graph_optimization", "all")
        options.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        providers = (
            ["CUDAExecutionProvider"] if self.target.device == "cuda" else ["CPUExecutionProvider"]
        )
        return ort.InferenceSession(model, options, providers=providers)

    def prepare(self, model: nn.Module | Path, input_shape: tuple[int, ...]) -> Callable[[], float]:
        from nas.onnx import export_onnx

        source: bytes | str
        source = str(model) if isinstance(model, Path) else export_onnx(model.eval(), input_shape)
        session = self.session(source)
        name = session.get_inputs()[0].name
        x = {name: torch.randn(*input_shape).numpy()}

        def time_once() -> float:
            start = time.perf_counter()
            session.run(None, x)
            return time.perf_counter() - start

        return time_once
