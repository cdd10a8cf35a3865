"""The measuring process: pinned to the target's cores, fresh, and doing nothing else.

It receives requests over a pipe, builds the model, times it with the protocol and sends
back the statistics. The caller blocks while it measures, so nothing of ours competes for
the cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
from torch import nn


def build(request: dict[str, Any], batch_size: int) -> tuple[nn.Module | Path, tuple[int, ...]]:
    """The model a request names, and its input shape at the target's batch size."""
    kind = request["kind"]
    if kind == "arch":
        from nas.arch import ArchConfig
        from nas.models import ShuffleNetV2

        arch = ArchConfig.from_dict(request["arch"])
        return ShuffleNetV2(arch), (batch_size, arch.in_channels, arch.resolution, arch.resolution)
    if kind == "block":
        from nas.latency._blocks import Block

        block = Block(**request["block"])
        return block.build(), (batch_size, block.in_channels, block.size, block.size)
    if kind == "module":
        return request["module"], (batch_size, *request["input_shape"][1:])
    if kind == "checkpoint":
        from nas.checkpoint import load_checkpoint, network_from_checkpoint, network_of

        payload = load_checkpoint(request["path"], kind="model")
        net = network_of(payload)
        shape = (batch_size, net.in_channels, net.resolution, net.resolution)
        return network_from_checkpoint(payload), shape
    if kind == "built":
        import importlib

        module_name, function = request["factory"].split(":")
        model = getattr(importlib.import_module(module_name), function)(request["path"])
        return model, (batch_size, *request["input_shape"][1:])
    if kind == "onnx":
        return Path(request["path"]), (batch_size, *request["input_shape"][1:])
    raise ValueError(f"unknown request kind {kind!r}")


class Reference:
    """A fixed model (ShuffleNetV2 x0.5, 32 px) on the same runtime: the machine's speed;
    and the memory probe: how busy the memory the host's tenants share is.

    Timed alone for the calibration, and in alternating blocks with every subject
    (:func:`~nas.latency._stats.run_paired_protocol`), so that the two read the same
    states of a machine whose speed changes within a second.
    """

    def __init__(self, backend: Any, batch_size: int) -> None:
        from nas.arch import preset
        from nas.latency._stats import memory_probe
        from nas.models import ShuffleNetV2

        torch.manual_seed(0)
        model = ShuffleNetV2(preset("shufflenet_v2_x0_5_cifar"))
        self.time_once = backend.prepare(model, (batch_size, 3, 32, 32))
        self.probe = memory_probe()

    def measure(self) -> tuple[float, float]:
        """The reference's median over 20 runs, alone, and the probe's (ms): one
        calibration reading."""
        from nas.latency._stats import probe_reading, run_protocol

        stats = run_protocol(self.time_once, warmup=3, repeats=20, max_cv=1.0, retries=0)
        return stats.median_ms, probe_reading(self.probe)


def serve(conn: Connection, target_data: dict[str, Any], cores: list[int] | None) -> None:
    from nas.latency._runtimes import RUNTIMES
    from nas.latency._stats import ContentionGuard, run_paired_protocol, run_protocol
    from nas.latency._target import HardwareTarget

    target = HardwareTarget.from_dict(target_data)
    if cores is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    torch.set_num_threads(target.threads)
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(1)
    backend = RUNTIMES[target.runtime](target)
    reference: Reference | None = None
    while True:
        try:
            request = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        if request is None:
            return
        try:
            if target.normalize and backend.local and reference is None:
                reference = Reference(backend, target.batch_size)
            if request["kind"] == "calibrate":
                assert reference is not None
                rounds, probes = [], []
                for _ in range(request["rounds"]):
                    ref_ms, probe_ms = reference.measure()
                    rounds.append(ref_ms)
                    probes.append(probe_ms)
                    time.sleep(request["gap_s"])
                reply = {"ok": True, "rounds": rounds, "probe_rounds": probes}
                conn.send_bytes(pickle.dumps(reply))
                continue
            model, shape = build(request, target.batch_size)
            if not backend.local:  # timed on a device, with the same protocol
                stats_dict = backend.measure(model, shape)  # type: ignore[attr-defined]
                conn.send_bytes(
                    pickle.dumps({"ok": True, "stats": stats_dict, "reference_ms": None})
                )
                continue
            time_once = backend.prepare(model, shape)
            protocol = (target.warmup, target.repeats, target.max_cv, target.retries)
            reference_ms: float | None = None
            if reference is None:
                stats = run_protocol(time_once, *protocol)
            else:  # the machine's speed, read in blocks alternating with the subject's
                guard = ContentionGuard(
                    reference.probe, request.get("probe_limit_ms"), request.get("probe_flag_ms")
                )
                stats, reference_ms = run_paired_protocol(
                    time_once, reference.time_once, *protocol, guard=guard
                )
            conn.send_bytes(
                pickle.dumps({"ok": True, "stats": stats.to_dict(), "reference_ms": reference_ms})
            )
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            conn.send_bytes(pickle.dumps({"ok": False, "error": detail.splitlines()[-1][:500]}))


def main() -> None:
    """``python -m nas.latency._worker FD CONFIG``: serve requests on socket ``FD``."""
    fd, config = int(sys.argv[1]), json.loads(sys.argv[2])
    conn = Connection(fd)
    try:
        serve(conn, config["target"], config["cores"])
    finally:
        conn.close()
    # Nothing is left to clean up, and a normal interpreter exit with torch loaded takes
    # about a second here, which every caller's close() would wait for.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
