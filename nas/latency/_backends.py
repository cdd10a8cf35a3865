"""Measurement backends, one class per runtime, behind one interface and a registry.

A backend turns a model (an ``nn.Module`` with an input shape, or an ONNX file) into a
``time_once()`` callable returning the seconds of one inference on its target. Adding a
runtime is one class decorated with :func:`register_runtime`.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from nas._errors import ConfigError, MeasurementError
from nas.env import cpu_model, package_version
from nas.latency._runtimes import register_runtime

if TYPE_CHECKING:
    from nas.latency._target import HardwareTarget


class Backend(ABC):
    """Runs one model on a target; subclasses say how."""

    name: ClassVar[str]
    local: ClassVar[bool] = True  # timed in the measuring process (remote: on a device)

    def __init__(self, target: HardwareTarget) -> None:
        self.target = target

    @staticmethod
    def versions() -> dict[str, str | None]:
        """Library versions that change a measurement (part of the cache key)."""
        return {"torch": package_version("torch")}

    @classmethod
    def environment(cls, target: HardwareTarget) -> dict[str, Any]:
        """Where measurements come from: the cache key's machine and library part."""
        return {"cpu": cpu_model(), **cls.versions()}

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


@register_runtime
class RemoteBackend(Backend):
    """A device running the measurement server (``python -m nas.latency serve``): models are
    exported to ONNX here, uploaded, and timed there with the same protocol.

    Target ``options``: ``url`` (``http://host:port``), ``token_file`` (relative to the
    target YAML) or ``token_env`` (an environment variable), ``device_runtime``
    (``onnxruntime``), ``graph_optimization``, ``timeout_s`` (per request, default 300),
    ``retries`` (on connection errors and a busy server, default 2). The cache keys
    measurements by the identity the device reports.
    """

    name = "remote"
    local = False

    @classmethod
    def unavailable(cls, target: HardwareTarget) -> str | None:
        url = str(target.options.get("url", ""))
        if not url.startswith(("http://", "https://")):
            return "options.url must be the server's http:// or https:// address"
        if target.options.get("device_runtime", "onnxruntime") != "onnxruntime":
            return "options.device_runtime: only onnxruntime runs on remote devices"
        if target.device != "cpu":
            return "remote targets measure the device's CPU (device: cpu)"
        if package_version("onnx") is None:
            return "onnx is needed to export models for a remote target (pip install '.[onnx]')"
        try:
            cls.token(target)
        except ConfigError as exc:
            return str(exc)
        return None

    @staticmethod
    def token(target: HardwareTarget) -> str:
        options = target.options
        if "token_env" in options:
            value = os.environ.get(str(options["token_env"]), "")
            if not value:
                raise ConfigError(f"environment variable {options['token_env']} holds no token")
            return value.strip()
        if "token_file" not in options:
            raise ConfigError("options.token_file or options.token_env must give the token")
        path = Path(str(options["token_file"])).expanduser()  # made absolute by from_dict
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read token file {path}: {exc.strerror}") from None

    @classmethod
    def environment(cls, target: HardwareTarget) -> dict[str, Any]:
        reply = _RemoteClient(target).request("GET", "/info")
        return {
            "device": reply["device"],
            "onnx": package_version("onnx"),
            "torch": package_version("torch"),
        }

    def prepare(self, model: nn.Module | Path, input_shape: tuple[int, ...]) -> Callable[[], float]:
        raise ConfigError("a remote target is timed on its device: use measure()")

    def measure(self, model: nn.Module | Path, input_shape: tuple[int, ...]) -> dict[str, Any]:
        """The device's statistics (``LatencyStats.to_dict``) for one model."""
        from nas.onnx import export_onnx

        data = model.read_bytes() if isinstance(model, Path) else export_onnx(model, input_shape)
        t = self.target
        spec = {
            "input_shape": list(input_shape),
            "threads": t.threads,
            "warmup": t.warmup,
            "repeats": t.repeats,
            "max_cv": t.max_cv,
            "retries": t.retries,
            "graph_optimization": t.options.get("graph_optimization", "all"),
        }
        reply = _RemoteClient(t).request(
            "POST", "/measure", data, {"X-Measure-Spec": json.dumps(spec)}
        )
        return dict(reply["stats"])


class _RemoteClient:
    """HTTP to the measurement server, with a timeout and retries on transient failures."""

    def __init__(self, target: HardwareTarget) -> None:
        self.url = str(target.options["url"]).rstrip("/")
        self.token = RemoteBackend.token(target)
        self.timeout = float(target.options.get("timeout_s", 300))
        self.retries = int(target.options.get("retries", 2))

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            self.url + path,
            data=body,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
        )
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(2.0**attempt, 10.0))
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return dict(json.loads(response.read()))
            except urllib.error.HTTPError as exc:
                try:
                    detail = json.loads(exc.read()).get("error", exc.reason)
                except (ValueError, OSError):
                    detail = exc.reason
                if exc.code == 401:
                    raise ConfigError(f"{self.url} refused the token: {detail}") from None
                if exc.code != 503:  # busy: retry; anything else is final
                    raise MeasurementError(f"{self.url}: {detail}") from None
                last = str(detail)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                last = f"cannot reach the device: {reason}"
        raise MeasurementError(f"{self.url}: {last} (after {self.retries + 1} attempts)")
