"""Latency measurement server for a remote device (a Raspberry Pi, a phone board, ...).

Runs on the device with only the standard library, numpy and onnxruntime: copy this file
and ``_stats.py`` next to each other and run

    python _server.py --token-file token.txt [--host 0.0.0.0] [--port 8765]

or, where the toolkit is installed, ``python -m nas.latency serve ...``. Clients (the
``remote`` runtime of a hardware target) POST an ONNX model with a measurement spec and get
the latency statistics back, measured with the same protocol as local targets (warm-up,
repeats, IQR outlier rejection, median and spread, retries while noisy).

Safety: every request needs ``Authorization: Bearer <token>`` (compared in constant time);
uploads and measurement time are capped; malformed requests and invalid models get a JSON
error and the server keeps running; one model is measured at a time (others wait in a
bounded queue); it listens on 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import platform
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

try:  # installed toolkit
    from nas.latency._stats import run_protocol
except ImportError:  # the two files copied to a device
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _stats import run_protocol  # type: ignore[no-redef]

PROTOCOL = 1
GRAPH_LEVELS = ("disabled", "basic", "extended", "all")
LIMITS = {"warmup": (0, 1000), "repeats": (1, 10000), "retries": (0, 10)}


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def device_identity() -> dict[str, Any]:
    """What the client's cache keys measurements by: this device and its runtime."""
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "protocol": PROTOCOL,
    }


def parse_spec(raw: str | None) -> dict[str, Any]:
    """Validate the ``X-Measure-Spec`` header (JSON)."""
    if not raw:
        raise RequestError(HTTPStatus.BAD_REQUEST, "missing X-Measure-Spec header")
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"X-Measure-Spec is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "X-Measure-Spec must be a JSON object")
    shape = spec.get("input_shape")
    if (
        not isinstance(shape, list)
        or not 1 <= len(shape) <= 5
        or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 4096 for d in shape)
        or int(np.prod(shape)) > 64 * 2**20
    ):
        raise RequestError(HTTPStatus.BAD_REQUEST, "input_shape must be 1-5 positive ints")
    out: dict[str, Any] = {"input_shape": shape}
    for key, (low, high) in {**LIMITS, "threads": (1, os.cpu_count() or 1)}.items():
        value = spec.get(key, {"warmup": 20, "repeats": 60, "retries": 2, "threads": 1}[key])
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{key} must be an int in [{low}, {high}]")
        out[key] = value
    max_cv = spec.get("max_cv", 0.05)
    if not isinstance(max_cv, (int, float)) or not 0 < max_cv < 1:
        raise RequestError(HTTPStatus.BAD_REQUEST, "max_cv must be in (0, 1)")
    out["max_cv"] = float(max_cv)
    level = spec.get("graph_optimization", "all")
    if level not in GRAPH_LEVELS:
        raise RequestError(
            HTTPStatus.BAD_REQUEST, f"graph_optimization must be one of {GRAPH_LEVELS}"
        )
    out["graph_optimization"] = level
    return out


class MeasureServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        token: str,
        max_model_bytes: int = 64 * 2**20,
        max_seconds: float = 120.0,
        max_queue: int = 8,
    ) -> None:
        super().__init__(address, Handler)
        self.token = token.encode()
        self.max_model_bytes = max_model_bytes
        self.max_seconds = max_seconds
        self.max_queue = max_queue
        self.measuring = threading.Lock()  # one model at a time
        self.waiting = threading.BoundedSemaphore(max_queue + 1)
        self.identity = device_identity()

    def measure(self, model: bytes, spec: dict[str, Any]) -> dict[str, Any]:
        import onnxruntime as ort

        if not self.waiting.acquire(blocking=False):
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "queue full, retry later")
        try:
            with self.measuring:
                options = ort.SessionOptions()
                options.intra_op_num_threads = spec["threads"]
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                options.log_severity_level = 3
                options.graph_optimization_level = {
                    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                }[spec["graph_optimization"]]
                try:
                    session = ort.InferenceSession(
                        model, options, providers=["CPUExecutionProvider"]
                    )
                    inp = session.get_inputs()[0]
                    feed = {inp.name: np.random.randn(*spec["input_shape"]).astype(np.float32)}
                    session.run(None, feed)
                except Exception as exc:  # any failure to load or run is the model's
                    text = str(exc).strip().splitlines()
                    raise RequestError(
                        HTTPStatus.UNPROCESSABLE_ENTITY,
                        f"invalid ONNX model or input shape: {text[0][:300] if text else exc}",
                    ) from None
                deadline = time.perf_counter() + self.max_seconds

                def time_once() -> float:
                    if time.perf_counter() > deadline:
                        raise TimeoutError
                    start = time.perf_counter()
                    session.run(None, feed)
                    return time.perf_counter() - start

                try:
                    stats = run_protocol(
                        time_once, spec["warmup"], spec["repeats"], spec["max_cv"], spec["retries"]
                    )
                except TimeoutError:
                    raise RequestError(
                        HTTPStatus.REQUEST_TIMEOUT,
                        f"measurement took longer than the server's cap of {self.max_seconds:g} s",
                    ) from None
                return {"ok": True, "stats": stats.to_dict(), "device": self.identity}
        finally:
            self.waiting.release()


# A refused upload is read (and dropped) up to this many times the model cap so that the
# client gets the reply; a larger one is cut off.
DRAIN_FACTOR = 4


class Handler(BaseHTTPRequestHandler):
    server: MeasureServer
    protocol_version = "HTTP/1.1"
    _body_read = False  # per request: whether this POST's body has been read

    def log_message(self, format: str, *args: Any) -> None:  # one short line per request
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _fail(self, status: HTTPStatus, message: str) -> None:
        self.close_connection = True
        self._discard_body()
        self._reply(status, {"ok": False, "error": message})

    def _discard_body(self) -> None:
        """Read the unread upload of a refused request before replying. Closing a socket
        with unread bytes makes the kernel reset the connection, and the client, still
        sending, sees a broken pipe instead of the reason. Bounded: beyond a few times the
        model cap the connection is just closed."""
        if self.command != "POST" or self._body_read:
            return
        self._body_read = True
        try:
            left = min(
                int(self.headers.get("Content-Length", "0")),
                DRAIN_FACTOR * self.server.max_model_bytes,
            )
        except ValueError:
            return
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    return
                left -= len(chunk)
        except OSError:
            return

    def _authorized(self) -> bool:
        given = self.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, b"Bearer " + self.server.token):
            return True
        self._fail(HTTPStatus.UNAUTHORIZED, "missing or wrong token")
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path != "/info":
            self._fail(HTTPStatus.NOT_FOUND, f"unknown path {self.path}")
            return
        self._reply(HTTPStatus.OK, {"ok": True, "device": self.server.identity})

    def do_POST(self) -> None:
        self._body_read = False
        if not self._authorized():
            return
        try:
            if self.path != "/measure":
                raise RequestError(HTTPStatus.NOT_FOUND, f"unknown path {self.path}")
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required") from None
            if length <= 0:
                raise RequestError(HTTPStatus.BAD_REQUEST, "empty model")
            if length > self.server.max_model_bytes:
                raise RequestError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"model of {length} bytes is over the server's cap of "
                    f"{self.server.max_model_bytes} bytes",
                )
            spec = parse_spec(self.headers.get("X-Measure-Spec"))
            self._body_read = True
            model = self.rfile.read(length)
            if len(model) != length:
                raise RequestError(HTTPStatus.BAD_REQUEST, "truncated upload")
            self._reply(HTTPStatus.OK, self.server.measure(model, spec))
        except RequestError as exc:
            self._fail(exc.status, str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nas.latency serve",
        description="Measure ONNX models on this device for remote hardware targets.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default local only)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--token-file", type=Path, required=True)
    parser.add_argument("--max-model-mb", type=float, default=64.0)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per measurement")
    parser.add_argument("--max-queue", type=int, default=8)
    args = parser.parse_args(argv)
    try:
        token = args.token_file.read_text().strip()
    except OSError as exc:
        print(
            f"error: cannot read --token-file: {exc.strerror}: {args.token_file}", file=sys.stderr
        )
        return 2
    if len(token) < 16:
        print("error: the token must have at least 16 characters", file=sys.stderr)
        return 2
    try:
        server = MeasureServer(
            (args.host, args.port),
            token,
            int(args.max_model_mb * 2**20),
            args.max_seconds,
            args.max_queue,
        )
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"listening on http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
