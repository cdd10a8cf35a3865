from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from compress.prune import (
    IMPORTANCES,
    PruneConfig,
    apply,
    channel_groups,
    channel_scores,
    count_channels,
    layout_of,
    prune_checkpoint,
    prune_once,
    pruned_layout,
)
from nas import ConfigError, ShuffleNetV2, Supernet, load_space, preset
from nas.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from nas.data import load_data
from nas.models import ModelLayout
from nas.onnx import export_onnx, max_abs_difference

from .conftest import REPO, TINY_SPACE, randomize_bn
from .helpers import call_cli


def _models():
    space = load_space()
    rng = random.Random(3)
    cases = [
        ("x0_5 imagenet", ShuffleNetV2(preset("shufflenet_v2_x0_5", resolution=64))),
        ("x1_0 cifar", ShuffleNetV2(preset("shufflenet_v2_x1_0_cifar"))),
    ]
    cases += [(f"space sample {i}", ShuffleNetV2(space.sample(rng))) for i in range(4)]
    supernet = Supernet(load_space(TINY_SPACE))
    cases += [
        (f"supernet extract {i}", supernet.extract(supernet.space.sample(i))) for i in range(3)
    ]
    return cases


MODELS = _models()


def _random_removal(layout, rng, fraction=0.3):
    removed = {}
    for name, layer in channel_groups(layout).items():
        n = len(layer.channels)
        count = min(n - 1, int(fraction * n))
        if count:
            removed[name] = set(rng.sample(range(n), count))
    return removed


def _make_inert(model, removed):
    """Zero the BatchNorm scale and shift of every removed channel wherever it appears:
    the channel then carries exact zeros, so removing it must not change the output."""
    modules = dict(model.named_modules())
    layers = channel_groups(layout_of(model))
    with torch.no_grad():
        for name, idxs in removed.items():
            for j in idxs:
                for module, role, index in layers[name].channels[j]:
                    if role == "bn":
                        modules[module].weight[index] = 0.0
                        modules[module].bias[index] = 0.0
                if name.endswith(".mid"):  # its depthwise output has a BN of its own
                    unit = name.rsplit(".", 1)[0]
                    bn = modules[f"{unit}.branch2.4"]
                    bn.weight[j], bn.bias[j] = 0.0, 0.0


@pytest.mark.parametrize(("label", "model"), MODELS, ids=[m[0] for m in MODELS])
def test_pruning_inert_channels_keeps_the_function(label, model):
    torch.manual_seed(0)
    randomize_bn(model)
    model.eval()
    rng = random.Random(label)
    removed = _random_removal(layout_of(model), rng)
    _make_inert(model, removed)
    arch = model.arch
    x = torch.randn(2, arch.in_channels, arch.resolution, arch.resolution)
    with torch.no_grad():
        expected = model(x)
        pruned = apply(model, removed).eval()
        torch.testing.assert_close(pruned(x), expected, atol=1e-5, rtol=1e-4)
    assert count_channels(pruned.layout) == count_channels(layout_of(model)) - sum(
        map(len, removed.values())
    )
    # and once more on the pruned model: layouts compose
    again = _random_removal(pruned.layout, rng, fraction=0.2)
    _make_inert(pruned, again)
    with torch.no_grad():
        torch.testing.assert_close(apply(pruned, again).eval()(x), pruned(x), atol=1e-5, rtol=1e-4)


def test_standard_layout_and_empty_pruning_agree():
    arch = preset("shufflenet_v2_x0_5_cifar")
    layout = ModelLayout.standard(arch)
    assert pruned_layout(layout, {}) == layout  # every unit still a plain 2-group shuffle
    layers = channel_groups(layout)
    stream = [layer for n, layer in layers.items() if not n.endswith((".mid", "last"))]
    assert all(len(ch) > 2 for group in stream for ch in group.channels)  # has consumers
    expected = 24 + 1024 + sum(2 * u.branch + u.short for s in layout.stages for u in s)
    assert count_channels(layout) == expected


@pytest.mark.parametrize("importance", sorted(IMPORTANCES))
@pytest.mark.parametrize("global_ranking", [False, True])
def test_prune_once_reaches_the_ratio(importance, global_ranking):
    torch.manual_seed(1)
    model = ShuffleNetV2(preset("shufflenet_v2_x0_5_cifar"))
    data = load_data("synthetic")
    from nas.data import BatchLoader

    batches = BatchLoader(data.train, 16, mean=data.mean, std=data.std, shuffle=True)
    total = count_channels(layout_of(model))
    pruned = prune_once(
        model,
        PruneConfig(0.3, importance, global_ranking),
        round(0.3 * total),
        batches,
        num_batches=2,
    )
    reached = 1 - count_channels(pruned.layout) / total
    assert reached == pytest.approx(0.3, abs=0.02 if not global_ranking else 0.002)
    assert pruned(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert pruned.layout.pruned["original_channels"] == total


@pytest.mark.parametrize("global_ranking", [False, True])
def test_internal_scope_rounded_keeps_block_widths_and_multiples(global_ranking):
    torch.manual_seed(1)
    model = ShuffleNetV2(preset("shufflenet_v2_x1_0_cifar"))
    config = PruneConfig(0.3, global_ranking=global_ranking, scope="internal", round_to=8)
    total = count_channels(layout_of(model), "internal")
    assert total < count_channels(layout_of(model))
    pruned = prune_once(model, config, round(0.3 * total))
    before, after = layout_of(model), pruned.layout
    # block outputs (what crosses splits and shuffles) are the arch's
    for old, new in zip(
        [u for s in before.stages for u in s], [u for s in after.stages for u in s], strict=True
    ):
        assert (new.in_channels, new.keep, new.short, new.branch) == (
            old.in_channels,
            old.keep,
            old.short,
            old.branch,
        )
        assert new.permutation is None
    old_counts = [u.mid for s in before.stages for u in s] + [before.last]
    new_counts = [u.mid for s in after.stages for u in s] + [after.last]
    cut = [new for new, old in zip(new_counts, old_counts, strict=True) if new != old]
    assert cut and all(count % 8 == 0 for count in cut), cut
    reached = 1 - count_channels(after, "internal") / total
    assert reached == pytest.approx(0.3, abs=0.05)
    assert pruned(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_rounding_keeps_multiples_in_every_pruned_layer():
    model = ShuffleNetV2(preset("shufflenet_v2_x0_5_cifar"))
    torch.manual_seed(3)
    randomize_bn(model)
    total = count_channels(layout_of(model))
    pruned = prune_once(model, PruneConfig(0.3, round_to=8), round(0.3 * total))
    before = channel_groups(layout_of(model))
    after = channel_groups(pruned.layout)
    cut = {
        n: len(after[n].channels)
        for n in before
        if len(after[n].channels) != len(before[n].channels)
    }
    assert cut and all(count % 8 == 0 for count in cut.values()), cut


def _nchwc_convs(model: torch.nn.Module, tmp_path, name: str) -> int:
    """Convs that ONNX Runtime's CPU optimiser moved to its blocked NCHWc kernels."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    source = tmp_path / f"{name}.onnx"
    source.write_bytes(export_onnx(model.eval(), (1, 3, 32, 32)))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / f"{name}.opt.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath).graph
    return sum(n.op_type == "Conv" and n.domain == "com.microsoft.nchwc" for n in graph.node)


def test_internal_rounded_pruning_stays_on_onnxruntime_fast_kernels(tmp_path):
    # Pruned with odd channel counts, a model loses ONNX Runtime's NCHWc kernels (measured:
    # a 30%-pruned 9.6 MFLOP pick ran 0.52x as fast as its parent). Internal pruning
    # rounded to 16 (a multiple of both AVX2's and AVX-512's block) keeps every conv the
    # original had on them.
    torch.manual_seed(0)
    model = ShuffleNetV2(preset("shufflenet_v2_x0_5_cifar")).eval()
    original = _nchwc_convs(model, tmp_path, "original")
    if original == 0:
        pytest.skip("this CPU has no NCHWc kernels in ONNX Runtime")
    total = count_channels(layout_of(model))
    plain = prune_once(model, PruneConfig(0.3), round(0.3 * total))
    internal = count_channels(layout_of(model), "internal")
    rounded = prune_once(
        model, PruneConfig(0.3, scope="internal", round_to=16), round(0.3 * internal)
    )
    assert _nchwc_convs(plain, tmp_path, "plain") < original
    assert _nchwc_convs(rounded, tmp_path, "rounded") >= original


def test_pruned_checkpoint_round_trip_and_onnx(tmp_path):
    torch.manual_seed(2)
    model = ShuffleNetV2(preset("shufflenet_v2_x0_5_cifar")).eval()
    randomize_bn(model)
    pruned = apply(model, _random_removal(layout_of(model), random.Random(0))).eval()
    path = save_checkpoint(
        tmp_path / "p.pt",
        {
            "kind": "model",
            "arch": model.arch.to_dict(),
            "layout": pruned.layout.to_dict(),
            "state_dict": pruned.state_dict(),
        },
    )
    loaded = model_from_checkpoint(load_checkpoint(path))  # weights_only, rebuilt from data
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), pruned(x))
    assert max_abs_difference(pruned, export_onnx(pruned, (1, 3, 32, 32)), (1, 3, 32, 32)) < 1e-4


def test_bad_pruning_options():
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        PruneConfig(1.5)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        PruneConfig(0.0)
    with pytest.raises(ConfigError, match="unknown importance"):
        PruneConfig(0.3, "random")
    with pytest.raises(ConfigError, match="unknown pruning scope"):
        PruneConfig(0.3, scope="outer")
    with pytest.raises(ConfigError, match="round-to"):
        PruneConfig(0.3, round_to=0)


# -- command line ----------------------------------------------------------------------


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "compress.prune", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


@pytest.mark.slow
def test_cli_prunes_finetunes_and_reports(tmp_path, trained):
    target = tmp_path / "fast.yaml"
    from nas.latency import HardwareTarget

    HardwareTarget("fast", "torch", warmup=2, repeats=10, normalize=False).to_yaml(target)
    out = tmp_path / "pruned.pt"
    result = _cli(
        "--checkpoint",
        str(trained),
        "--ratio",
        "0.3",
        "--out",
        str(out),
        "--steps",
        "2",
        "--finetune-epochs",
        "1",
        "--target",
        str(target),
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "before:" in result.stdout and "after:" in result.stdout
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["ratio_reached"] == pytest.approx(0.3, abs=0.02)
    assert report["after"]["params"] < 0.8 * report["before"]["params"]
    assert report["after"]["flops"] < report["before"]["flops"]
    assert report["after"]["val_acc"] > 0.5  # fine-tuned, on learnable data (chance 0.25)
    assert report["speedup"] > 0 and report["after"]["latency"]["latency_ms"] > 0
    payload = load_checkpoint(out, kind="model")
    assert payload["layout"] and payload["source"]["prune"]["ratio"] == 0.3
    model_from_checkpoint(payload)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "missing.pt", "--ratio", "0.3"], "checkpoint not found"),
        (["--ratio", "1.5"], "strictly between 0 and 1"),
        (["--ratio", "-0.2"], "strictly between 0 and 1"),
        (["--ratio", "0.3", "--importance", "random"], "unknown importance"),
        (["--ratio", "0.3", "--scope", "stream"], "unknown pruning scope"),
        (["--ratio", "0.3", "--round-to", "0"], "round-to"),
        (["--ratio", "0.3", "--distill"], "give --finetune-epochs too"),
        (
            ["--ratio", "0.3", "--distill", "--finetune-epochs", "1", "--kd-ratio", "-1"],
            "kd_ratio must be a number >= 0",
        ),
    ],
)
def test_cli_bad_input(tmp_path, trained, args, message, capsys):
    from compress.prune.__main__ import main

    if "--checkpoint" not in args:
        args = ["--checkpoint", str(trained), *args]
    code, _, err = call_cli(main, [*args, "--out", tmp_path / "p.pt"], capsys)
    assert code == 2 and err.startswith("error: "), err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "p.pt").exists()


def test_cli_refuses_supernets_and_archless_checkpoints(tmp_path, capsys):
    from compress.prune.__main__ import main

    save_checkpoint(tmp_path / "s.pt", {"kind": "supernet", "space": {}})
    args = ["--ratio", "0.3", "--out", tmp_path / "p.pt"]
    code, _, err = call_cli(main, ["--checkpoint", tmp_path / "s.pt", *args], capsys)
    assert code == 2 and "a model checkpoint is needed" in err
    save_checkpoint(tmp_path / "m.pt", {"kind": "model", "state_dict": {}})
    code, _, err = call_cli(main, ["--checkpoint", tmp_path / "m.pt", *args], capsys)
    assert code == 2 and "has no 'arch'" in err


@pytest.mark.parametrize("importance", sorted(IMPORTANCES))
def test_every_importance_ranks_an_emptied_channel_last(importance):
    """The importance contract: one finite, nonnegative score per channel of every layer,
    and a channel whose weights are all zero (it computes nothing) scores lowest."""
    from compress.prune import NEEDS_GRADIENTS, accumulate_gradients

    torch.manual_seed(0)
    model = ShuffleNetV2(preset("shufflenet_v2_x0_5_cifar"))
    layers = channel_groups(layout_of(model))
    name, layer = next((n, g) for n, g in layers.items() if n.endswith(".mid"))
    modules = dict(model.named_modules())
    with torch.no_grad():  # empty channel 3 of this layer: every weight it owns
        for module, role, index in layer.channels[3]:
            weight = modules[module].weight
            if role in ("out", "dw", "bn"):
                weight[index] = 0
            else:
                weight[:, index] = 0
    if importance in NEEDS_GRADIENTS:
        data = load_data("synthetic")
        from nas.data import BatchLoader

        batches = BatchLoader(data.train, 16, mean=data.mean, std=data.std, shuffle=True)
        accumulate_gradients(model, batches, 2)
    scores = channel_scores(model, layers, importance)
    assert set(scores) == set(layers)
    for n, values in scores.items():
        assert len(values) == len(layers[n].channels)
        assert torch.isfinite(values).all() and (values >= 0).all()
    assert scores[name][3] == scores[name].min() == 0


def test_an_importance_name_is_registered_once():
    from compress.prune import register_importance

    with pytest.raises(ValueError, match="registered already"):
        register_importance("l1")(lambda modules, members: 0.0)


def test_distilled_finetuning_is_taught_by_the_frozen_unpruned_parent(
    tmp_path, trained, monkeypatch
):
    """The mechanism, not only the output: the fine-tune's teacher is the parent itself
    (all its weights, unpruned), frozen, and its soft targets change the training."""
    import compress.prune._run as run_module

    parent = model_from_checkpoint(load_checkpoint(trained, kind="model"))
    seen = {}
    real_train = run_module.train

    def spy(subject, data, config, out, **kwargs):
        seen["teacher"], seen["kd_ratio"] = kwargs["teacher"], config.kd_ratio
        return real_train(subject, data, config, out, **kwargs)

    def prune(out, distill):
        return prune_checkpoint(
            trained, out, PruneConfig(0.3), finetune_epochs=1, distill=distill, kd_ratio=0.5,
            target=None, batch_size=16, progress=False, log=lambda _: None,
        )  # fmt: skip

    monkeypatch.setattr(run_module, "train", spy)
    report = prune(tmp_path / "kd.pt", distill=True)
    teacher = seen["teacher"]
    assert teacher is not None and seen["kd_ratio"] == 0.5 and not teacher.training
    for name, value in parent.state_dict().items():
        torch.testing.assert_close(teacher.state_dict()[name], value)  # unpruned, untouched
    assert report["prune"]["distill"] is True and report["prune"]["kd_ratio"] == 0.5
    plain = prune(tmp_path / "plain.pt", distill=False)
    assert plain["prune"]["distill"] is False
    kd_weights = load_checkpoint(tmp_path / "kd.pt", kind="model")["state_dict"]
    plain_weights = load_checkpoint(tmp_path / "plain.pt", kind="model")["state_dict"]
    assert any(not torch.equal(kd_weights[k], plain_weights[k]) for k in plain_weights)
