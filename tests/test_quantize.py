from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys

import pytest
import torch

from compress.prune import apply, channel_groups, layout_of
from compress.quantize import (
    VARIANTS,
    QuantShuffleNet,
    convert,
    float_model,
    int8_skeleton,
    prepare,
)
from nas import ShuffleNetV2, Supernet, load_space, preset
from nas.checkpoint import load_checkpoint, save_checkpoint
from nas.latency import HardwareTarget

from .conftest import REPO, TINY_SPACE, randomize_bn
from .helpers import call_cli


def _pruned(model, seed=0):
    rng = random.Random(seed)
    removed = {}
    for name, layer in channel_groups(layout_of(model)).items():
        n = len(layer.channels)
        if n > 3:
            removed[name] = set(rng.sample(range(n), n // 3))
    return apply(model, removed)


def _models():
    torch.manual_seed(0)
    space = load_space()
    rng = random.Random(5)
    supernet = Supernet(load_space(TINY_SPACE))
    cases = [
        ("x0_5 imagenet", ShuffleNetV2(preset("shufflenet_v2_x0_5", resolution=64))),
        ("x1_0 cifar", ShuffleNetV2(preset("shufflenet_v2_x1_0_cifar"))),
        ("space sample", ShuffleNetV2(space.sample(rng))),
        ("supernet extract", supernet.extract(supernet.space.sample(1))),
        ("pruned x0_5 cifar", _pruned(ShuffleNetV2(preset("shufflenet_v2_x0_5_cifar")))),
    ]
    for _, model in cases:
        randomize_bn(model)
        model.eval()
    return cases


MODELS = _models()
IDS = [m[0] for m in MODELS]


def _input(model, n=8, seed=0):
    arch = model.arch
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, arch.in_channels, arch.resolution, arch.resolution, generator=g)


@pytest.mark.parametrize(("label", "model"), MODELS, ids=IDS)
def test_fused_float_model_is_the_same_function(label, model):
    x = _input(model)
    with torch.no_grad():
        fused = QuantShuffleNet(model).eval().fuse()
        torch.testing.assert_close(fused(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("label", "model"), MODELS, ids=IDS)
def test_torch_int8_tracks_fp32_and_reloads_weights_only(label, model, tmp_path):
    prepared = prepare(model)
    with torch.no_grad():
        for seed in range(4):
            prepared(_input(model, 16, seed))
    int8 = convert(prepared)
    x = _input(model, 16, seed=9)
    with torch.no_grad():
        expected, got = model(x), int8(x)
    assert got.shape == expected.shape
    error = (got - expected).norm() / expected.norm()
    assert error < 0.15, f"int8 relative error {error:.3f}"
    assert any(
        "Quantized" in type(m).__name__ or "quantized" in type(m).__module__ for m in int8.modules()
    )
    path = save_checkpoint(tmp_path / "int8.pt", {"kind": "int8", "state_dict": int8.state_dict()})
    state = load_checkpoint(path, kind="int8")["state_dict"]  # weights_only=True inside
    rebuilt = int8_skeleton(model)
    rebuilt.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), got)


@pytest.mark.parametrize(("label", "model"), MODELS[1:], ids=IDS[1:])
def test_qat_model_maps_back_to_the_float_model(label, model):
    recovered = float_model(prepare(model, qat=True), model)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(recovered.state_dict()[key], value)


def test_onnxruntime_variants_quantize_real_blocks(tmp_path):
    from compress.quantize import _onnx
    from nas.onnx import export_onnx

    model = MODELS[4][1]  # pruned: explicit permutations, uneven splits
    shape = (1, 3, 32, 32)
    export_onnx(model, shape, tmp_path / "fp32.onnx", dynamic_batch=True)
    pre = _onnx.preprocess(tmp_path / "fp32.onnx", tmp_path / "pre.onnx")
    calibration = [_input(model, 16, s).numpy() for s in range(2)]
    x = _input(model, 16, seed=7)
    fp32 = _onnx.predict(tmp_path / "fp32.onnx", iter([x.numpy()]))
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(fp32), model(x), atol=1e-4, rtol=1e-4)
    for variant in (VARIANTS[0], next(v for v in VARIANTS if v.format == "qoperator")):
        path = _onnx.quantize(pre, tmp_path / f"{variant.name}.onnx", variant, calibration)
        ops = _onnx.op_counts(path)
        if variant.format == "qoperator":
            assert ops.get("QLinearConv", 0) > 10 and "Conv" not in ops
        else:
            assert ops.get("QuantizeLinear", 0) > 10 and ops.get("DequantizeLinear", 0) > 10
        got = _onnx.predict(path, iter([x.numpy()]))
        error = float(((got - fp32) ** 2).sum() ** 0.5 / (fp32**2).sum() ** 0.5)
        assert error < 0.15, f"{variant.name}: relative error {error:.3f}"


@pytest.mark.parametrize(("label", "model"), MODELS, ids=IDS)
def test_gather_shuffle_is_the_same_function_without_reshapes(label, model, tmp_path):
    import onnx

    from compress.quantize._onnx import gather_shuffle, op_counts
    from nas.onnx import export_onnx

    converted = gather_shuffle(model).eval()
    x = _input(model, 4)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x))
    export_onnx(converted, tuple(x[:1].shape), tmp_path / "g.onnx")
    ops = op_counts(tmp_path / "g.onnx")
    units = sum(model.arch.repeats)
    assert ops["Gather"] == units and "Transpose" not in ops and "Reshape" not in ops
    assert onnx.load(str(tmp_path / "g.onnx"))


# -- command line ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    root = tmp_path_factory.mktemp("targets")
    for runtime in ("onnxruntime", "torch"):
        HardwareTarget(f"fast-{runtime}", runtime, warmup=2, repeats=10, normalize=False).to_yaml(
            root / f"{runtime}.yaml"
        )
    return root


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "compress.quantize", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


@pytest.mark.slow
def test_cli_onnxruntime_ptq(tmp_path, trained, targets):
    out = tmp_path / "q"
    result = _cli(
        "--checkpoint", str(trained), "--out", str(out), "--target",
        str(targets / "onnxruntime.yaml"), "--calib-batches", "2", "--batch-size", "16",
        "--variants", "*-qdq-per-channel,gather-qoperator-per-tensor", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "int8 (" in result.stdout and " vs fp32 " in result.stdout
    report = json.loads((out / "quantize.json").read_text())
    assert {v["name"] for v in report["variants"]} == {
        "reshape-qdq-per-channel",
        "gather-qdq-per-channel",
        "gather-qoperator-per-tensor",
    }
    assert [g["graph"] for g in report["fp32"]["graphs"]] == ["reshape", "gather"]
    for v in report["variants"]:
        assert (out / v["file"]).exists() and v["latency"]["latency_ms"] > 0
        assert v["top1_agreement"] > 0.8
    # a speedup is a ratio measured now, side by side: never a latency from the cache
    timed = [*report["variants"], *report["fp32"]["graphs"]]
    assert not any(t["latency"]["cached"] for t in timed)
    for t in timed:  # every graph once per round, in turn; the median of the rounds kept
        rounds = t["latency"]["rounds_ms"]
        assert len(rounds) == report["latency_rounds"] == 3
        assert t["latency"]["latency_ms"] == pytest.approx(statistics.median(rounds))
    chosen = report["int8"]
    eligible = [v for v in report["variants"] if v["within_max_drop"]]
    if eligible:
        assert chosen["latency"]["latency_ms"] == min(v["latency"]["latency_ms"] for v in eligible)
    assert (out / "int8.onnx").exists() and (out / "fp32.onnx").exists()
    assert report["fp32"]["onnx_max_difference"] < 1e-3
    assert abs(report["fp32"]["onnx_val_acc"] - report["fp32"]["val_acc"]) < 0.02
    assert ("test_acc" in chosen and "test_acc" not in report["variants"][1]) or chosen is not None
    assert not any(p.name.startswith(".q.") for p in tmp_path.iterdir())  # no work dir left


@pytest.mark.slow
def test_cli_torch_qat(tmp_path, trained, targets):
    out = tmp_path / "q"
    result = _cli(
        "--checkpoint", str(trained), "--out", str(out), "--runtime", "torch", "--method", "qat",
        "--target", str(targets / "torch.yaml"), "--batch-size", "32", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "quantize.json").read_text())
    assert report["method"] == "qat" and report["runtime"] == "torch"
    assert report["int8"]["val_acc"] >= report["fp32"]["val_acc"] - 0.25
    payload = load_checkpoint(out / "int8.pt", kind="int8")
    assert payload["engine"] == "x86" and payload["arch"]["widths"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "missing.pt"], "checkpoint not found"),
        (["--method", "awq"], "unknown --method"),
        (["--runtime", "tensorrt"], "unknown --runtime"),
        (["--runtime", "torch", "--target", "cpu-ort-1t"], "runs onnxruntime, not torch"),
        (["--calib-batches", "0"], "--calib-batches"),
        (["--variants", "fp16-*"], "matches none of"),
    ],
)
def test_cli_bad_input(tmp_path, trained, args, message, capsys):
    from compress.quantize.__main__ import main

    if "--checkpoint" not in args:
        args = ["--checkpoint", str(trained), *args]
    code, _, err = call_cli(main, [*args, "--out", tmp_path / "q"], capsys)
    assert code == 2 and err.startswith("error: "), err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "q").exists()


def test_no_variant_within_the_drop_keeps_the_fastest_and_says_so():
    from compress.quantize._run import _choose

    def variant(name: str, ms: float, val: float) -> dict:
        return {"name": name, "val_acc": val, "latency": {"latency_ms": ms}}

    variants = [variant("a", 0.6, 0.45), variant("b", 0.5, 0.44), variant("c", 0.7, 0.49)]
    assert _choose(variants, 0.50, 0.02)["name"] == "c"  # the one within 2 points
    chosen = _choose(variants[:2], 0.50, 0.02)
    assert chosen["name"] == "b" and chosen["within_max_drop"] is False
