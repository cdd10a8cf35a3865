"""``LatencyMeter``: measure archs, blocks, checkpoints and ONNX files on a target."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

from torch import nn

from nas._errors import ConfigError, MeasurementError
from nas.arch import ArchConfig
from nas.latency._blocks import Block
from nas.latency._cache import LatencyCache
from nas.latency._runtimes import RUNTIMES
from nas.latency._stats import MAX_CONTENTION, MAX_CONTENTION_FLAG, LatencyStats
from nas.latency._target import HardwareTarget


@dataclass(frozen=True)
class Measurement:
    stats: LatencyStats
    subject: str  # what was measured (arch hash, block key, file hash)
    target: str
    cached: bool

    @property
    def median_ms(self) -> float:
        return self.stats.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "target": self.target,
            "cached": self.cached,
            **self.stats.to_dict(),
        }


class LatencyMeter:
    """Measures on one :class:`HardwareTarget` in a separate, pinned process.

    The process starts on the first measurement that is not cached and serves every later
    one (no re-import per model). Results are cached persistently (see ``LatencyCache``);
    the machine's speed calibration always is, in the default cache.
    Use as a context manager, or call :meth:`close`.

    Speed normalisation (``target.normalize``, on by default): shared and virtual machines
    change speed within a fraction of a second (by half, while another tenant shares the
    core). A reference model is timed in blocks alternating with the subject's runs
    (:func:`~nas.latency._stats.run_paired_protocol`) and every latency is scaled to the
    machine's calibrated speed; the raw median and the speed factor are kept in the
    statistics (``raw_median_ms``, ``speed``).

    Contention guard (``target.contention_guard``, or ``guard`` to override; with
    normalisation): a 16 MB memory probe is read before every reference block (always, and
    recorded as ``probe_ms``); with the guard, an attempt whose probe is more than
    ``MAX_CONTENTION`` over the fastest seen on this machine is repeated after a pause, the
    least contended one kept, and flagged ``contended`` (and ``noisy``) if still over
    ``MAX_CONTENTION_FLAG``: the host's other tenants' memory traffic slows each model to
    its own degree, which no speed factor corrects
    (:class:`~nas.latency._stats.ContentionGuard`).
    """

    def __init__(
        self,
        target: HardwareTarget,
        cache: LatencyCache | bool = True,
        timeout_s: float = 900.0,
        guard: bool | None = None,
    ) -> None:
        reason = RUNTIMES[target.runtime].unavailable(target)
        if reason:
            raise ConfigError(f"target {target.name!r} cannot run here: {reason}")
        self.target = target
        self.cores = target.pinned_cores()
        self.cache = (
            cache if isinstance(cache, LatencyCache) else (LatencyCache() if cache else None)
        )
        self.environment = RUNTIMES[target.runtime].environment(target)
        self.timeout_s = timeout_s
        self._process: Any = None
        self._conn: Any = None
        self.guard = target.contention_guard if guard is None else guard
        self._nominal_ms: float | None = None
        self._probe_ms: float | None = None
        self._calibration_reply: dict[str, Any] | None = None

    # -- public -----------------------------------------------------------------------------

    def measure_arch(
        self, arch: ArchConfig, use_cache: bool = True, repeat: int = 0
    ) -> Measurement:
        """Latency of ``ShuffleNetV2(arch)``; ``repeat`` > 0 is a separate, later measurement
        of the same arch (cached under its own key), for medians over time."""
        return self._measure(
            _repeat_key(f"arch:{arch.hash}", repeat),
            {"kind": "arch", "arch": arch.to_dict()},
            use_cache,
        )

    def measure_block(self, block: Block, use_cache: bool = True, repeat: int = 0) -> Measurement:
        return self._measure(
            _repeat_key(block.key, repeat), {"kind": "block", "block": block.to_dict()}, use_cache
        )

    def measure_checkpoint(
        self, path: str | Path, use_cache: bool = True, repeat: int = 0
    ) -> Measurement:
        return self._measure(
            _repeat_key(f"file:{_file_hash(Path(path))}", repeat),
            {"kind": "checkpoint", "path": str(path)},
            use_cache,
        )

    def measure_onnx(
        self,
        path: str | Path,
        input_shape: tuple[int, ...],
        use_cache: bool = True,
        repeat: int = 0,
    ) -> Measurement:
        return self._measure(
            _repeat_key(f"onnx:{_file_hash(Path(path))}:{list(input_shape)}", repeat),
            {"kind": "onnx", "path": str(path), "input_shape": list(input_shape)},
            use_cache,
        )

    def measure_module(
        self, module: nn.Module, input_shape: tuple[int, ...], key: str | None = None
    ) -> Measurement:
        """Measure any module (cached only when ``key`` names it uniquely)."""
        request = {"kind": "module", "module": module, "input_shape": list(input_shape)}
        return self._measure(key or "module", request, use_cache=key is not None)

    def measure_built(
        self,
        factory: str,
        path: str | Path,
        input_shape: tuple[int, ...],
        use_cache: bool = True,
        repeat: int = 0,
    ) -> Measurement:
        """Measure the module ``factory(path)`` builds in the measuring process, where
        ``factory`` is ``"package.module:function"``: for models that cannot travel by
        pickle (quantized modules) or that another package knows how to load."""
        return self._measure(
            _repeat_key(f"built:{factory}:{_file_hash(Path(path))}:{list(input_shape)}", repeat),
            {
                "kind": "built",
                "factory": factory,
                "path": str(path),
                "input_shape": list(input_shape),
            },
            use_cache,
        )

    def close(self) -> None:
        if self._process is not None:
            try:
                self._conn.send_bytes(pickle.dumps(None))
                self._process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._conn.close()
            self._process = self._conn = None

    def __enter__(self) -> LatencyMeter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- internals --------------------------------------------------------------------------

    def _measure(self, subject: str, request: dict[str, Any], use_cache: bool) -> Measurement:
        key = LatencyCache.key(subject, self.target.hash, self.environment)
        if use_cache and self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return Measurement(LatencyStats.from_dict(hit), subject, self.target.name, True)
        paired = self.target.normalize and RUNTIMES[self.target.runtime].local  # remote: as is
        if paired and self.guard:  # else: the probe is only recorded
            fastest = self._probe_fastest()
            limits = {
                "probe_limit_ms": fastest * (1 + MAX_CONTENTION),
                "probe_flag_ms": fastest * (1 + MAX_CONTENTION_FLAG),
            }
            request = {**request, **limits}
        reply = self._ask(request)
        stats = LatencyStats.from_dict(reply["stats"])
        if paired:
            stats = stats.normalized(reply["reference_ms"] / self._nominal())
            if self.guard and stats.probe_ms is not None:
                self._lower_probe(stats.probe_ms)
        if self.cache is not None and use_cache:
            self.cache.put(key, subject, self.target.name, self.environment, stats.to_dict())
        return Measurement(stats, subject, self.target.name, False)

    def _start(self) -> None:
        # A fresh interpreter running our worker module (not multiprocessing's spawn, which
        # would re-run the caller's __main__), talking over a socket pair.
        parent, child = socket.socketpair()
        env = {
            **os.environ,
            "OMP_NUM_THREADS": str(self.target.threads),
            "MKL_NUM_THREADS": str(self.target.threads),
        }
        command = [
            sys.executable,
            "-m",
            "nas.latency._worker",
            str(child.fileno()),
            json.dumps({"target": self.target.to_dict(), "cores": self.cores}),
        ]
        self._process = subprocess.Popen(
            command,
            pass_fds=(child.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        child.close()
        self._conn = Connection(parent.detach())

    def _nominal(self) -> float:
        """The reference model's time at the machine's calibrated speed.

        Calibrated once per runtime setting (``HardwareTarget.speed_hash``), machine and
        library versions: the fastest of several spaced readings (the least disturbed
        state), stored in the machine's default cache (whichever cache the meter's
        measurements use) so every later measurement on this machine is expressed at the
        same speed.
        """
        if self._nominal_ms is None:
            key = LatencyCache.key("calibration", self.target.speed_hash, self.environment)
            # a fact of the machine: its own store, whichever cache (or none, with
            # ``cache=False``) holds the measurements
            machine = LatencyCache()
            # A calibration kept under the whole target's hash (before 2026-12-07) stays
            # this target's: its cached measurements and lookup tables were read at it.
            own = LatencyCache.key("calibration", self.target.hash, self.environment)
            stored = machine.nominal(own)
            if stored is None:
                stored = machine.nominal(key)
            if stored is None:
                rounds = self._calibration()["rounds"]
                stored = machine.set_nominal(key, self.target.name, min(rounds), rounds)
            self._nominal_ms = stored
        return self._nominal_ms

    def _probe_fastest(self) -> float:
        """The memory probe's fastest calibration reading or measurement on this machine
        so far (stored beside the reference's calibration): the contention guard's base."""
        if self._probe_ms is None:
            machine = LatencyCache()
            stored = machine.nominal(self._probe_key)
            if stored is None:
                rounds = self._calibration()["probe_rounds"]
                stored = machine.set_nominal(self._probe_key, self.target.name, min(rounds), rounds)
            self._probe_ms = stored
        return self._probe_ms

    def _calibration(self) -> dict[str, Any]:
        """Spaced readings of the reference and the probe alone (once per meter)."""
        if self._calibration_reply is None:
            self._calibration_reply = self._ask({"kind": "calibrate", "rounds": 9, "gap_s": 0.3})
        return self._calibration_reply

    def _lower_probe(self, probe_ms: float) -> None:
        """A quieter probe than any before: the machine's memory can be that fast."""
        assert self._probe_ms is not None
        if probe_ms < self._probe_ms:
            self._probe_ms = LatencyCache().lower_nominal(self._probe_key, probe_ms)

    @property
    def _probe_key(self) -> str:
        return LatencyCache.key("memory probe", self.target.speed_hash, self.environment)

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        if self._process is None or self._process.poll() is not None:
            self._start()
        try:
            # plain pickle: copies tensors (multiprocessing's pickler would try to share
            # them through a handshake our separately started worker cannot answer)
            self._conn.send_bytes(pickle.dumps(request))
            if not self._conn.poll(self.timeout_s):
                self.close()
                raise MeasurementError(
                    f"measurement on {self.target.name} took longer than {self.timeout_s:.0f} s"
                )
            reply = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError, BrokenPipeError):
            code = self._process.wait() if self._process is not None else None
            self._process = self._conn = None
            raise MeasurementError(
                f"the measuring process for {self.target.name} died (exit code {code})"
            ) from None
        if not reply["ok"]:
            raise MeasurementError(f"measuring on {self.target.name} failed: {reply['error']}")
        return reply


def _repeat_key(subject: str, repeat: int) -> str:
    return subject if repeat == 0 else f"{subject}#{repeat}"


def _file_hash(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"file not found: {path}")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
