"""Quantizing a checkpoint end to end: fp32 reference, int8 variants, accuracy and
latency side by side on one target, the fastest variant that keeps its accuracy."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from compress._common import input_shape, latency_record, load_source, model_metrics, train_batches
from compress.prune import layout_of
from compress.quantize import _onnx, _torch
from nas import ConfigError
from nas.checkpoint import save_checkpoint
from nas.data import DataSpec, DataSplits
from nas.latency import (
    SIDE_BY_SIDE_ROUNDS,
    HardwareTarget,
    LatencyMeter,
    load_target,
    side_by_side,
)
from nas.models import ShuffleNetV2
from nas.onnx import export_onnx, max_abs_difference
from nas.train import evaluate, loader_for

METHODS = ("ptq", "qat")
RUNTIMES = {"onnxruntime": "cpu-ort-1t", "torch": "cpu-torch-1t"}


def quantize_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    method: str = "ptq",
    runtime: str = "onnxruntime",
    target: str | None = None,
    calib_batches: int = 16,
    data: DataSpec | None = None,
    qat_epochs: int = 1,
    lr: float = 1e-3,
    batch_size: int = 64,
    max_drop: float = 0.01,
    variants: str = "*",
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] = print,
    rounds: int = SIDE_BY_SIDE_ROUNDS,
) -> dict[str, Any]:
    """Static int8 of a model checkpoint into the directory ``out``.

    ``onnxruntime``: ``fp32.onnx`` and one int8 ONNX model per variant (format,
    per-channel, reduce-range), each checked against torch, its validation accuracy
    computed and its latency measured on ``target`` next to fp32; ``int8.onnx`` is the
    fastest variant within ``max_drop`` of fp32's validation accuracy. ``torch``: eager
    int8 (x86 kernels), stored as ``int8.pt``. ``qat`` fine-tunes with fake quantization
    for ``qat_epochs`` before converting. Latencies are measured in ``rounds`` rounds,
    every model once per round in turn, and the median of the rounds is kept (a single
    pass each, one after the other, once put x1.08 for a graph pair that ran x1.50 side
    by side). ``quantize.json`` records everything; test accuracy is computed for fp32
    and the chosen model only, after the choice.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown --method {method!r}: use one of {', '.join(METHODS)}")
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown --runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if calib_batches < 1 or qat_epochs < 1 or rounds < 1 or not 0 <= max_drop < 1:
        raise ConfigError(
            "--calib-batches, --qat-epochs and --rounds must be >= 1, --max-drop in [0, 1)"
        )
    chosen_variants = _onnx.select_variants(variants)
    target = target or RUNTIMES[runtime]
    target_spec = load_target(target)
    if target_spec.runtime != runtime:
        raise ConfigError(
            f"target {target!r} runs {target_spec.runtime}, not {runtime}: pick a target "
            f"of that runtime (for example {RUNTIMES[runtime]})"
        )
    source, out = Path(checkpoint), Path(out)
    _, model, splits = load_source(source, data)
    model.eval()
    fp32 = model_metrics(model, splits)
    log(f"fp32: val acc {fp32['val_acc']:.4f}  test acc {fp32['test_acc']:.4f}")
    if method == "qat":
        prepared = _qat(model, splits, qat_epochs, lr, batch_size, seed, progress)
    else:
        prepared = _torch.prepare(model)
        _calibrate(prepared, splits, model, calib_batches, batch_size, seed)

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if runtime == "onnxruntime":
            base = model if method == "ptq" else _torch.float_model(prepared, model)
            report = _onnxruntime(
                chosen_variants,
                base,
                splits,
                work,
                target_spec,
                calib_batches,
                batch_size,
                seed,
                max_drop,
                log,
                rounds,
            )
        else:
            report = _torch_runtime(
                model, prepared, splits, work, target_spec, fp32["val_acc"], max_drop, log, rounds
            )
        report = {
            "source": str(source),
            "method": method,
            "runtime": runtime,
            "target": target_spec.to_dict(),
            "calib_batches": calib_batches,
            "qat_epochs": qat_epochs if method == "qat" else 0,
            "max_drop": max_drop,
            "latency_rounds": rounds,
            "data": splits.info,
            "fp32": {**fp32, **report.pop("fp32")},
            **report,
        }
        log(_verdict(report))
        (work / "quantize.json").write_text(json.dumps(report, indent=1))
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return report


def _calibrate(
    prepared: torch.nn.Module,
    data: DataSplits,
    model: ShuffleNetV2,
    batches: int,
    batch_size: int,
    seed: int,
) -> None:
    with torch.no_grad():
        for i, (x, _) in enumerate(train_batches(data, model.arch, batch_size, seed + 1)):
            if i == batches:
                break
            prepared(x)


def _qat(
    model: ShuffleNetV2,
    data: DataSplits,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    progress: bool,
) -> _torch.QuantShuffleNet:
    """Fine-tune with fake quantization (observers learn the ranges, weights adapt);
    BatchNorm statistics are frozen for the last epoch, observers too after the first."""
    torch.manual_seed(seed)
    net = _torch.prepare(model, qat=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, nesterov=True)
    loader = train_batches(data, model.arch, batch_size, seed, augment=True)
    steps = epochs * len(loader)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    bar = tqdm(total=steps, desc="qat", disable=not progress, unit="batch")
    for epoch in range(epochs):
        net.train()
        if epoch == epochs - 1 and epochs > 1:
            net.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)
        if epoch >= 1:
            net.apply(torch.ao.quantization.disable_observer)
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return net.eval()


def _onnxruntime(
    candidates: list[_onnx.OrtVariant],
    model: ShuffleNetV2,
    data: DataSplits,
    work: Path,
    spec: HardwareTarget,
    calib_batches: int,
    batch_size: int,
    seed: int,
    max_drop: float,
    log: Callable[[str], None],
    rounds: int,
) -> dict[str, Any]:
    arch = model.arch
    target = spec.name
    shape = input_shape(arch, spec.batch_size)
    # The graphs have the target's fixed batch size (a free batch dimension adds shape
    # arithmetic around every shuffle and slows fp32 down): calibrate image by image.
    calibration = _onnx.pieces(
        (
            x.numpy()
            for _, (x, _) in zip(
                range(calib_batches), train_batches(data, arch, batch_size, seed + 1), strict=False
            )
        ),
        spec.batch_size,
    )
    val_x, val_y = _split_arrays(data, "val", arch)
    graphs: dict[str, dict[str, Any]] = {}
    graph_logits: list[np.ndarray] = []
    nets = {"reshape": model, "gather": _onnx.gather_shuffle(model)}
    if layout_of(model) == layout_of(nets["gather"]):  # pruned: every unit already gathers
        nets = {"gather": model}
        candidates = [dataclasses.replace(v, graph="gather") for v in candidates]
        candidates = list(dict.fromkeys(candidates))
    for graph, net in nets.items():
        path = work / f"fp32-{graph}.onnx"
        export_onnx(net, shape, path)
        drift = max_abs_difference(model, path, shape)
        if drift > 1e-3:
            raise ConfigError(f"the fp32 ONNX export ({graph}) differs from torch by {drift:.2e}")
        logits = _onnx.predict(path, iter(val_x))
        graph_logits.append(logits)
        graphs[graph] = {
            "graph": graph,
            "file": path.name,
            "onnx_max_difference": drift,
            "onnx_val_acc": float((logits.argmax(1) == val_y).mean()),
            "size_bytes": path.stat().st_size,
            "pre": _onnx.preprocess(path, work / f"pre-{graph}.onnx"),
        }
    fp32_logits = graph_logits[0]  # int8 agreement is against the first fp32 graph
    fp32_val = next(iter(graphs.values()))["onnx_val_acc"]
    variants: list[dict[str, Any]] = []
    for variant in (v for v in candidates if v.graph in graphs):
        path = work / f"int8-{variant.name}.onnx"
        _onnx.quantize(graphs[variant.graph]["pre"], path, variant, calibration)
        logits = _onnx.predict(path, iter(val_x))
        variants.append(
            {
                **variant.to_dict(),
                "file": path.name,
                "val_acc": float((logits.argmax(1) == val_y).mean()),
                "top1_agreement": float((logits.argmax(1) == fp32_logits.argmax(1)).mean()),
                "max_logit_difference": float(np.abs(logits - fp32_logits).max()),
                "ops": _onnx.op_counts(path),
                "size_bytes": path.stat().st_size,
            }
        )
    with LatencyMeter(spec, cache=False) as meter:  # side by side, in one worker, now
        subjects = {f"fp32-{g['graph']}": g for g in graphs.values()}
        subjects |= {f"int8-{v['name']}": v for v in variants}
        timed = side_by_side(
            {
                name: functools.partial(meter.measure_onnx, work / s["file"], shape)
                for name, s in subjects.items()
            },
            rounds,
        )
    for name, subject in subjects.items():
        subject["latency"] = latency_record(target, *timed[name])
    best = min(graphs.values(), key=lambda g: g["latency"]["latency_ms"])
    fp32_latency = best["latency"]
    for g in graphs.values():
        log(f"  fp32-{g['graph']:<27} {g['latency']['latency_ms']:7.3f} ms")
    for v in variants:
        v["speedup"] = fp32_latency["latency_ms"] / v["latency"]["latency_ms"]
        log(
            f"  int8-{v['name']:<27} {v['latency']['latency_ms']:7.3f} ms  "
            f"x{v['speedup']:.2f}  val acc {v['val_acc']:.4f}"
        )
    chosen = _choose(variants, fp32_val, max_drop)
    if not chosen["within_max_drop"]:
        log(
            f"no int8 variant stays within {100 * max_drop:.1f} points of fp32's validation "
            f"accuracy: the fastest is kept, {100 * (fp32_val - chosen['val_acc']):.1f} "
            "points lower (a larger --calib-batches or --max-drop, or keep fp32)"
        )
    test_x, test_y = _split_arrays(data, "test", arch)
    chosen_test = float(
        (_onnx.predict(work / chosen["file"], iter(test_x)).argmax(1) == test_y).mean()
    )
    shutil.copyfile(work / chosen["file"], work / "int8.onnx")
    shutil.copyfile(work / best["file"], work / "fp32.onnx")
    for g in graphs.values():
        g.pop("pre").unlink()
    return {
        "fp32": {
            "onnx_val_acc": fp32_val,
            "onnx_max_difference": max(g["onnx_max_difference"] for g in graphs.values()),
            "latency": fp32_latency,
            "graph": best["graph"],
            "graphs": list(graphs.values()),
            "size_bytes": best["size_bytes"],
            "file": "fp32.onnx",
        },
        "variants": variants,
        "int8": {**chosen, "test_acc": chosen_test, "file": "int8.onnx"},
    }


def _torch_runtime(
    model: ShuffleNetV2,
    prepared: _torch.QuantShuffleNet,
    data: DataSplits,
    work: Path,
    spec: HardwareTarget,
    fp32_val: float,
    max_drop: float,
    log: Callable[[str], None],
    rounds: int,
) -> dict[str, Any]:
    arch = model.arch
    target = spec.name
    shape = input_shape(arch, spec.batch_size)
    int8 = _torch.convert(prepared)
    val = evaluate(int8, loader_for(data.val, data, arch, 256, "cpu"))["acc"]
    test = evaluate(int8, loader_for(data.test, data, arch, 256, "cpu"))["acc"]
    fp32_path = save_checkpoint(
        work / "fp32.pt",
        {
            "kind": "model",
            "arch": arch.to_dict(),
            "layout": _layout(model),
            "state_dict": model.state_dict(),
        },
    )
    path = save_checkpoint(
        work / "int8.pt",
        {
            "kind": "int8",
            "arch": arch.to_dict(),
            "layout": _layout(model),
            "engine": _torch.ENGINE,
            "state_dict": int8.state_dict(),
        },
    )
    with LatencyMeter(spec, cache=False) as meter:  # side by side, in one worker, now
        timed = side_by_side(
            {
                "fp32": functools.partial(meter.measure_checkpoint, fp32_path),
                "int8": functools.partial(
                    meter.measure_built, "compress.quantize._torch:load_int8", path, shape
                ),
            },
            rounds,
        )
    fp32_latency = latency_record(target, *timed["fp32"])
    int8_latency = latency_record(target, *timed["int8"])
    chosen = {
        "name": f"torch-{_torch.ENGINE}-per-channel",
        "val_acc": val,
        "test_acc": test,
        "latency": int8_latency,
        "speedup": fp32_latency["latency_ms"] / int8_latency["latency_ms"],
        "within_max_drop": val >= fp32_val - max_drop,
        "size_bytes": path.stat().st_size,
        "file": path.name,
    }
    log(f"  {chosen['name']:<32} {int8_latency['latency_ms']:7.3f} ms  x{chosen['speedup']:.2f}")
    return {
        "fp32": {"latency": fp32_latency, "file": fp32_path.name},
        "variants": [chosen],
        "int8": chosen,
    }


def _layout(model: ShuffleNetV2) -> dict[str, Any] | None:
    return model.layout.to_dict() if model.layout is not None else None


def _choose(variants: list[dict[str, Any]], fp32_val: float, max_drop: float) -> dict[str, Any]:
    for v in variants:
        v["within_max_drop"] = v["val_acc"] >= fp32_val - max_drop
    eligible = [v for v in variants if v["within_max_drop"]] or variants
    return min(eligible, key=lambda v: v["latency"]["latency_ms"])


def _split_arrays(
    data: DataSplits, split: str, arch: Any
) -> tuple[Iterator[np.ndarray], np.ndarray]:
    xs, ys = [], []
    for x, y in loader_for(getattr(data, split), data, arch, 256, "cpu"):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return xs, np.concatenate(ys)  # type: ignore[return-value]


def _graph(fp32: dict[str, Any]) -> str:
    return f" (fastest fp32 graph: {fp32['graph']})" if "graph" in fp32 else ""


def _verdict(report: dict[str, Any]) -> str:
    fp32, int8 = report["fp32"], report["int8"]
    target = report["target"]["name"]
    fast = int8["speedup"]
    drop = fp32["val_acc"] - int8["val_acc"]
    line = (
        f"int8 ({int8['name']}) on {target}: {int8['latency']['latency_ms']:.3f} ms vs fp32 "
        f"{fp32['latency']['latency_ms']:.3f} ms{_graph(fp32)}, x{fast:.2f}; "
        f"val acc {int8['val_acc']:.4f} "
        f"({-drop * 100:+.2f} points), test acc {int8['test_acc']:.4f}"
    )
    if fast < 1.0:
        line += f"\nint8 is NOT faster than fp32 on {target}: keep the fp32 model there"
    return line


__all__ = ["METHODS", "RUNTIMES", "quantize_checkpoint"]
