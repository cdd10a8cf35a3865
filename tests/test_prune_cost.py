"""Latency-aware allocation (``--allocate latency``): layer costs measured on the target,
channels ranked by importance per cost. Tested on the real blocks, with a latency model
whose true per-layer costs are known, then once end to end on ONNX Runtime."""

from __future__ import annotations

import json

import pytest
import torch

from compress.prune import (
    LatencyGoal,
    PruneConfig,
    channel_groups,
    in_scope,
    layer_costs,
    layout_of,
    prune_checkpoint,
    prune_once,
)
from compress.prune._cost import FLOOR
from nas import ConfigError, ShuffleNetV2, preset
from nas.latency import HardwareTarget
from nas.pipeline import PruneStage

from .helpers import call_cli

SCOPE = "internal"  # branch middles and conv5: 17 layers on x0.5


def _model() -> ShuffleNetV2:
    return ShuffleNetV2(preset("shufflenet_v2_x0_5_cifar")).eval()


def _true_costs(model: ShuffleNetV2) -> dict[str, float]:
    """A known, uneven price per channel: conv5 dear, stage 4 middles cheap, stage 2 free."""
    names = in_scope(channel_groups(layout_of(model)), SCOPE)
    return {
        n: 0.0 if n.startswith("stage2") else 0.5 if n == "last" else 0.001 * (1 + len(n) % 3)
        for n in names
    }


def _latency_model(true: dict[str, float]):
    """Milliseconds of a candidate: 1 ms plus each layer's price times its channels."""

    def latency_ms(candidate: ShuffleNetV2) -> float:
        layers = channel_groups(layout_of(candidate))
        return 1.0 + sum(true[n] * len(layers[n].channels) for n in true)

    return latency_ms


def test_costs_recover_each_layers_price_per_channel():
    model = _model()
    true = _true_costs(model)
    latency_ms = _latency_model(true)
    costs, probes = layer_costs(
        model, PruneConfig(0.5, scope=SCOPE), latency_ms, latency_ms(model), log=lambda _: None
    )
    assert set(costs) == set(true)
    positive = sorted(c for c in true.values() if c > 0)
    floor = FLOOR * positive[len(positive) // 2]
    for name, price in true.items():
        assert costs[name] == pytest.approx(max(price, floor)), name  # a channel is never free
        assert probes[name]["removed"] >= 1
        assert probes[name]["saved_ms"] == pytest.approx(price * probes[name]["removed"])


def test_a_parent_that_drifts_more_than_the_savings_is_reported():
    model = _model()
    true = _true_costs(model)
    latency_ms = _latency_model(true)
    parent = latency_ms(model)
    said: list[str] = []
    costs, probes = layer_costs(
        model, PruneConfig(0.5, scope=SCOPE), latency_ms, parent, said.append, lambda: parent + 5
    )
    assert probes["parent"] == {"removed": 0, "latency_ms": parent + 5, "saved_ms": -5}
    assert "parent" not in costs and any("costs are noise here" in line for line in said)
    quiet: list[str] = []
    layer_costs(
        model, PruneConfig(0.5, scope=SCOPE), latency_ms, parent, quiet.append, lambda: parent
    )
    assert not any("warning" in line for line in quiet)


def test_costs_respect_the_channel_block():
    model = _model()
    latency_ms = _latency_model(_true_costs(model))
    _, probes = layer_costs(
        model,
        PruneConfig(0.5, scope=SCOPE, round_to=8),
        latency_ms,
        latency_ms(model),
        log=lambda _: None,
    )
    layers = in_scope(channel_groups(layout_of(model)), SCOPE)
    for name, probe in probes.items():
        assert (len(layers[name].channels) - probe["removed"]) % 8 == 0, name


def test_latency_allocation_saves_more_per_channel_removed():
    """The knapsack's point: for the same number of channels removed, the latency-aware
    ranking takes them where they cost the most, so the pruned net is faster; the
    importance ranking alone does not know the prices."""
    model = _model()
    true = _true_costs(model)
    latency_ms = _latency_model(true)
    config = PruneConfig(0.3, scope=SCOPE, global_ranking=True)
    costs, _ = layer_costs(model, config, latency_ms, latency_ms(model), log=lambda _: None)
    removed = 150
    by_importance = prune_once(model, config, removed)
    by_latency = prune_once(model, config, removed, costs=costs)
    assert by_latency.layout is not None and by_importance.layout is not None
    assert by_latency.layout.pruned["allocation"] == "latency"
    assert by_latency.layout.pruned["removed_channels"] == pytest.approx(removed, abs=2)
    saved = {
        name: latency_ms(model) - latency_ms(m)
        for name, m in (("importance", by_importance), ("latency", by_latency))
    }
    assert saved["latency"] > 1.5 * saved["importance"], saved
    left = channel_groups(layout_of(by_latency))
    assert len(left["last"].channels) < len(
        channel_groups(layout_of(by_importance))["last"].channels
    )
    assert all(len(left[n].channels) >= 1 for n in true)  # every layer keeps a channel
    by_latency(torch.randn(2, 3, 32, 32))  # and the pruned net runs


def test_latency_allocation_needs_a_goal(tmp_path, trained):
    with pytest.raises(ConfigError, match="give a --latency goal too"):
        prune_checkpoint(
            trained, tmp_path / "p.pt", PruneConfig(0.3, allocation="latency"), log=lambda _: None
        )
    assert not (tmp_path / "p.pt").exists()
    with pytest.raises(ConfigError, match="unknown allocation 'flops'"):
        PruneConfig(0.3, allocation="flops")
    with pytest.raises(ConfigError, match=r"give prune.latency \(e.g. 0.7x\) too"):
        PruneStage(allocate="latency")
    with pytest.raises(ConfigError, match="choose importance or latency"):
        PruneStage(latency="0.7x", allocate="knapsack")
    assert PruneStage(latency="0.7x", allocate="latency").allocate == "latency"


def test_cli_refuses_latency_allocation_without_a_goal(tmp_path, trained, capsys):
    from compress.prune.__main__ import main

    args = ["--checkpoint", trained, "--ratio", "0.3", "--allocate", "latency"]
    code, _, err = call_cli(main, [*args, "--out", tmp_path / "p.pt"], capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "give a --latency goal too" in err and not (tmp_path / "p.pt").exists()


@pytest.mark.slow
def test_latency_allocation_end_to_end_on_onnxruntime(tmp_path, trained):
    target = tmp_path / "quick-ort.yaml"
    HardwareTarget("quick-ort", "onnxruntime", warmup=3, repeats=10, retries=1).to_yaml(target)
    out = tmp_path / "p.pt"
    report = prune_checkpoint(
        trained,
        out,
        PruneConfig(0.5, scope=SCOPE, round_to=8, allocation="latency"),
        latency=LatencyGoal.parse("0.8x"),
        target=str(target),
        log=lambda _: None,
    )
    goal = report["prune"]["latency_goal"]
    assert goal["allocation"] == "latency" and goal["layer_costs_ms"]
    assert all(c > 0 for c in goal["layer_costs_ms"].values())
    assert set(goal["layer_probes"]) == set(goal["layer_costs_ms"]) | {"parent"}
    assert report["prune"]["allocation"] == "latency"
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["prune"]["latency_goal"]["layer_costs_ms"] == goal["layer_costs_ms"]
    assert report["faster"] == (report["speedup"] > 1.0)
