"""Where the time of int8 goes at ImageNet resolution on ONNX Runtime (issue 24, item 5).

    python benchmarks/int8_profile.py --scale cpu

Trains torchvision's ShuffleNetV2 x1.0 (ImageNet stem, 224 px) for one epoch on the
embedded data (its accuracy only has to be a real one, for int8 to show what it keeps),
runs ``compress.quantize`` on cpu-ort-1t (the fp32 graphs and every int8 variant measured
side by side in one worker), then profiles each graph with ONNX Runtime's own profiler,
one thread, batch 1: per op type, the time per image, and the graph after ONNX Runtime's
optimisations (NCHWc convolutions, layout reorders, transposes, quantize and dequantize
nodes). The profiled time includes the profiler's own cost per node; the latency column
is the side-by-side measurement. Writes results/int8_profile_<scale>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_results

from compress.quantize import quantize_checkpoint
from nas import preset
from nas.data import load_data
from nas.train import FINAL, STATE, TrainConfig, train


@dataclass(frozen=True)
class Scale:
    preset: str
    resolution: int
    steps_per_epoch: int | None  # None: one whole epoch
    warmup: int  # profiled runs left out
    runs: int  # profiled runs kept
    calib_batches: int
    rounds: int  # latency rounds of compress.quantize, every graph once per round
    variants: str = "*"  # compress.quantize's --variants


SCALES = {
    "cpu": Scale("shufflenet_v2_x1_0", 224, None, 10, 40, 16, 7),
    "tiny": Scale("shufflenet_v2_x0_5", 64, 2, 1, 2, 1, 2, "*-qdq-per-tensor"),
}

# op type -> where its time goes (the rest: "other")
KINDS = {
    "conv": ("Conv", "FusedConv", "QLinearConv", "NhwcFusedConv", "ConvInteger"),
    "layout": ("ReorderInput", "ReorderOutput", "Transpose"),
    "quantize": ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"),
    "shuffle": ("Gather", "Reshape", "Split", "Slice", "Concat", "QLinearConcat"),
    "pool+fc": (
        "MaxPool",
        "GlobalAveragePool",
        "QLinearGlobalAveragePool",
        "Gemm",
        "QGemm",
        "MatMul",
        "QLinearMatMul",
        "Flatten",
    ),
}
KIND_OF = {op: kind for kind, ops in KINDS.items() for op in ops}


def profile(path: Path, image: np.ndarray, warmup: int, runs: int, work: Path) -> dict[str, Any]:
    """Per op type and per convolution class time per run (ms, the median over ``runs``
    profiled runs after ``warmup``: a shared CPU slows runs down in bursts), and the node
    counts of the graph as ONNX Runtime optimised it."""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(work / f"profile-{path.stem}")
    optimised = work / f"optimised-{path.name}"
    options.optimized_model_filepath = str(optimised)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(warmup + runs):
        session.run(None, {name: image})
    events = json.loads(Path(session.end_profiling()).read_text())
    run_events = sorted(
        (e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"),
        key=lambda e: e["ts"],
    )
    kept = run_events[warmup:]
    graph = onnx.load(str(optimised)).graph
    convs = conv_classes(graph)
    per_run: list[dict[str, float]] = [defaultdict(float) for _ in kept]
    per_run_conv: list[dict[str, float]] = [defaultdict(float) for _ in kept]
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        for i, run in enumerate(kept):
            if run["ts"] <= e["ts"] <= run["ts"] + run["dur"]:
                per_run[i][e["args"]["op_name"]] += e["dur"] / 1000
                node = e["name"].removesuffix("_kernel_time")
                if node in convs:
                    per_run_conv[i][convs[node]] += e["dur"] / 1000
                break
    nodes = Counter(f"{n.domain + ':' if n.domain else ''}{n.op_type}" for n in graph.node)
    return {
        "per_op_ms": _medians(per_run),
        "per_conv_ms": {c: _medians(per_run_conv).get(c, 0.0) for c in CONV_CLASSES},
        "run_ms": statistics.median(e["dur"] / 1000 for e in kept),
        "optimised_nodes": dict(sorted(nodes.items())),
        "convs": {c: sum(1 for v in convs.values() if v == c) for c in CONV_CLASSES},
    }


CONV_CLASSES = ("1x1", "depthwise", "dense")


def conv_classes(graph: Any) -> dict[str, str]:
    """Each convolution node of an (optimised) graph by name: ``1x1`` (pointwise),
    ``depthwise`` (grouped), or ``dense`` (a full k x k conv: the stem)."""
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    out = {}
    for node in graph.node:
        if "Conv" not in node.op_type:
            continue
        attrs = {a.name: a for a in node.attribute}
        weight = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
        kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else None
        kernel = kernel or shapes.get(weight, [0, 0, 0, 0])[2:]
        if "group" in attrs and attrs["group"].i > 1:
            out[node.name] = "depthwise"
        else:
            out[node.name] = "1x1" if list(kernel) == [1, 1] else "dense"
    return out


def _medians(per_run: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for run in per_run for k in run}
    medians = {k: statistics.median(run.get(k, 0.0) for run in per_run) for k in keys}
    return dict(sorted(medians.items(), key=lambda kv: -kv[1]))


def by_kind(per_op: dict[str, float]) -> dict[str, float]:
    kinds: dict[str, float] = defaultdict(float)
    for op, ms in per_op.items():
        kinds[KIND_OF.get(op, "other")] += ms
    return {k: kinds.get(k, 0.0) for k in (*KINDS, "other")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SCALES), default="cpu")
    parser.add_argument("--work", type=Path, help="default runs/bench-int8-profile-<scale>")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--target", default="cpu-ort-1t")
    args = parser.parse_args()
    scale = SCALES[args.scale]
    work = args.work or Path(f"runs/bench-int8-profile-{args.scale}")
    started = time.time()

    arch = preset(scale.preset, resolution=scale.resolution)
    model_dir = work / "model"
    checkpoint = model_dir / FINAL["model"]
    if not checkpoint.exists():
        train(
            arch,
            load_data("embedded"),
            TrainConfig(epochs=1, batch_size=64, lr=0.1, steps_per_epoch=scale.steps_per_epoch),
            model_dir,
            resume=(model_dir / STATE).exists(),
        )
    report = quantize_checkpoint(
        checkpoint,
        work / "int8",
        target=args.target,
        calib_batches=scale.calib_batches,
        variants=scale.variants,
        progress=False,
        rounds=scale.rounds,
    )
    qdir = work / "int8"
    image = np.random.default_rng(0).standard_normal((1, 3, arch.resolution, arch.resolution))
    image = image.astype(np.float32)
    graphs = [
        ("fp32", g["graph"], qdir / g["file"], g["latency"]["latency_ms"], report["fp32"])
        for g in report["fp32"]["graphs"]
    ]
    graphs += [
        ("int8", v["name"], qdir / v["file"], v["latency"]["latency_ms"], v)
        for v in report["variants"]
    ]
    best_fp32 = report["fp32"]["latency"]["latency_ms"]
    fp32_val = report["fp32"]["onnx_val_acc"]
    rows, details = [], {}
    for dtype, name, path, latency_ms, info in graphs:
        prof = profile(path, image, scale.warmup, scale.runs, work)
        kinds = by_kind(prof["per_op_ms"])
        nodes = prof["optimised_nodes"]
        rows.append(
            {
                "graph": f"{dtype}-{name}",
                "latency_ms": latency_ms,
                "speedup_vs_best_fp32": best_fp32 / latency_ms,
                "val_acc": info.get("val_acc", info.get("onnx_val_acc")),
                "profiled_ms": prof["run_ms"],
                **{f"{k}_ms": v for k, v in kinds.items()},
                **{f"conv_{c}_ms": v for c, v in prof["per_conv_ms"].items()},
                "reorders": sum(
                    n for op, n in nodes.items() if op.endswith(("ReorderInput", "ReorderOutput"))
                ),
                "transposes": nodes.get("Transpose", 0),
                "q_dq": sum(n for op, n in nodes.items() if op.endswith("QuantizeLinear")),
                "float_convs": sum(
                    n for op, n in nodes.items() if op.split(":")[-1] in ("Conv", "FusedConv")
                ),
            }
        )
        details[f"{dtype}-{name}"] = prof
    best_int8 = max((r for r in rows if r["graph"].startswith("int8")), key=_speed)
    drop = fp32_val - best_int8["val_acc"]
    verdict = (
        f"best int8 ({best_int8['graph']}) runs {best_int8['speedup_vs_best_fp32']:.2f}x the "
        f"best fp32 graph ({best_fp32:.2f} ms) at {drop * 100:+.1f} validation points "
        "(positive: lost)"
    )
    extra = {
        "arch": arch.short_name(),
        "target": args.target,
        "chosen_int8": report["int8"]["name"],
        "fp32_val_acc": fp32_val,
        "verdict": verdict,
        "quantize_report": report,
        "profiles": details,
        "wall_s": time.time() - started,
    }
    columns = list(rows[0])
    notes = (
        f"{verdict}. Times per op kind (ms per image) from ONNX Runtime's profiler, "
        f"the median of {scale.runs} runs after {scale.warmup} warm-up runs, 1 thread, batch 1; "
        "the latency column is compress.quantize's side-by-side measurement. Node counts "
        "are of the graph after ONNX Runtime's optimisations; conv_1x1 / conv_depthwise / "
        "conv_dense split conv_ms by the convolution's shape (dense: the stem). The profiler "
        "adds its own cost to every node: profiled_ms against latency_ms shows how much."
    )
    write_results("int8_profile", args.scale, rows, extra, columns, notes, args.results)
    print(verdict)


def _speed(row: dict[str, Any]) -> float:
    return float(row["speedup_vs_best_fp32"])


if __name__ == "__main__":
    main()
