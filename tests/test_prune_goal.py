"""Pruning to a latency goal (issue 24): the goal's syntax, the bisection over the channels
removed, the runtime's channel block, and the command end to end on a real target."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import compress.prune._goal as goal_module
import compress.prune._run as run_module
from compress.prune import (
    GoalOutOfReach,
    LatencyGoal,
    PruneConfig,
    block_size,
    prune_checkpoint,
    search_removal,
)
from nas import ConfigError
from nas.checkpoint import load_checkpoint, model_from_checkpoint
from nas.latency import HardwareTarget, LatencyCache, LatencyMeter

from .helpers import call_cli


@pytest.mark.parametrize(
    ("text", "value", "relative"),
    [("0.6x", 0.6, True), (" 0.25 x", 0.25, True), ("3ms", 3.0, False), ("1500us", 1.5, False)],
)
def test_goals_parse(text, value, relative):
    goal = LatencyGoal.parse(text)
    assert (goal.value, goal.relative) == (pytest.approx(value), relative)
    assert goal.ms(10.0) == pytest.approx(value * 10 if relative else value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1.5x", "strictly between 0 and 1"),
        ("0x", "strictly between 0 and 1"),
        ("25", "has no unit"),
        ("-3ms", "negative"),
        ("fast", "give a factor of the parent's latency (0.6x) or a time (3ms)"),
    ],
)
def test_bad_goals_say_what_to_write(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LatencyGoal.parse(text)


def _staircase(removed: int) -> float:
    """Latency of a net with 100 channels that steps down every 8 channels removed, as
    block-rounded widths do: 10 ms whole, 2 ms with everything removed."""
    return 10.0 - 8.0 * (removed // 8 * 8) / 100


def test_the_bisection_lands_within_the_tolerance():
    chosen, probes = search_removal(_staircase, 7.0, 100)
    assert abs(chosen.latency_ms / 7.0 - 1) <= 0.05 and chosen in probes
    assert len(probes) <= 8  # log2(100) + 1
    assert all(p.latency_ms == _staircase(p.removed) for p in probes)


def test_an_unreachable_band_takes_the_closest_under_the_goal():
    # 10 -> 5 ms in one step: nothing lies within 5% of 7.5 ms
    chosen, probes = search_removal(lambda n: 10.0 if n < 50 else 5.0, 7.5, 100)
    assert chosen.latency_ms == 5.0 and chosen.removed == 50  # the least removed that is fast
    assert [p.removed for p in probes][:2] == [50, 25]
    # a goal below anything reachable: the fastest probe
    chosen, _ = search_removal(_staircase, 1.0, 100)
    assert chosen.latency_ms == min(_staircase(n) for n in range(101))


def test_a_goal_out_of_reach_is_measured_at_the_most_removable():
    # a runtime whose latency barely falls with channels: 10 ms whole, 9 ms at 3,000 removed
    def flat(removed: int) -> float:
        return 10.0 - removed / 3000

    chosen, probes = search_removal(flat, 5.0, 3000)
    assert max(p.removed for p in probes[:10]) < 3000  # the bisection ran out of probes
    assert len(probes) == 11 and probes[-1].removed == 3000  # then the most removable
    assert chosen == probes[-1] and chosen.latency_ms == 9.0


def _params_latency(floor: float):
    """A fake measurement of the real pruned candidates: 10 ms for the parent, falling
    linearly with the parameters kept down to ``floor`` x 10 ms (per-op overhead)."""
    whole: list[int] = []

    def measure(self, module, shape, key=None):
        size = sum(p.numel() for p in module.parameters())
        whole.append(whole[0] if whole else size)  # the first module measured is the parent
        return SimpleNamespace(median_ms=10.0 * (floor + (1 - floor) * size / whole[0]))

    return measure


@pytest.mark.parametrize(("floor", "max_removed"), [(0.8, 0.6), (0.0, 0.1)])
def test_a_goal_beyond_the_most_removable_is_refused(
    tmp_path, trained, monkeypatch, floor, max_removed
):
    monkeypatch.setattr(LatencyMeter, "measure_module", _params_latency(floor))
    goal = LatencyGoal.parse("0.6x", max_removed=max_removed)
    with pytest.raises(GoalOutOfReach, match="out of reach on cpu-torch-1t: with") as error:
        prune_checkpoint(
            trained,
            tmp_path / "p.pt",
            PruneConfig(0.5),
            latency=goal,
            target="cpu-torch-1t",
            log=lambda _: None,
        )
    assert f"--max-removed {max_removed:g}" in str(error.value) and "\n" not in str(error.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_most_removable_bounds_a_reachable_goal(trained, monkeypatch):
    monkeypatch.setattr(LatencyMeter, "measure_module", _params_latency(0.0))
    model = model_from_checkpoint(load_checkpoint(trained, kind="model"))
    config = PruneConfig(0.5)
    removed, record = goal_module.goal_removal(
        model, config, LatencyGoal.parse("0.8x"), HardwareTarget("t", "torch"), [], lambda _: None
    )
    original = goal_module.count_channels(goal_module.layout_of(model), config.scope)
    assert 0 < removed <= 0.6 * original and record["max_removed"] == 0.6
    assert abs(record["chosen"]["latency_ms"] / record["goal_ms"] - 1) <= 0.05
    assert all(p["removed"] <= 0.6 * original for p in record["probes"])


def test_nothing_removable_is_an_error():
    with pytest.raises(ConfigError, match="nothing to prune"):
        search_removal(_staircase, 5.0, 0)


@pytest.mark.parametrize(
    ("runtime", "flags", "block"),
    [
        ("onnxruntime", ["avx", "avx2", "fma"], 8),
        ("onnxruntime", ["avx", "avx2", "avx512f"], 16),
        ("onnxruntime", ["sse4_2"], 1),
        ("torch", ["avx", "avx2", "avx512f"], 1),
    ],
)
def test_the_block_size_follows_the_runtime_and_the_isa(monkeypatch, runtime, flags, block):
    monkeypatch.setattr(goal_module, "cpu_flags", lambda: flags)
    assert block_size(HardwareTarget("t", runtime)) == block


@pytest.fixture(scope="module")
def ort_target(tmp_path_factory):
    path = tmp_path_factory.mktemp("goal") / "quick-ort.yaml"
    HardwareTarget("quick-ort", "onnxruntime", warmup=5, repeats=30, retries=1).to_yaml(path)
    return path


@pytest.mark.slow
def test_the_command_prunes_to_a_relative_goal_on_the_target(
    tmp_path, trained, ort_target, capsys, monkeypatch
):
    from compress.prune.__main__ import main

    def cached(*args, **kwargs):
        raise AssertionError("a goal or a speedup was read from, or written to, the cache")

    # the goal is a share of the parent's latency now, and the speedup a ratio side by side
    monkeypatch.setattr(LatencyCache, "get", cached)
    monkeypatch.setattr(LatencyCache, "put", cached)

    out = tmp_path / "p.pt"
    args = ["--checkpoint", trained, "--latency", "0.7x", "--target", ort_target, "--out", out]
    code, stdout, err = call_cli(main, [*args, "--no-progress"], capsys)
    assert code == 0, err
    report = json.loads(out.with_suffix(".json").read_text())
    goal = report["prune"]["latency_goal"]
    assert goal["goal"] == "0.7x" and goal["goal_ms"] == pytest.approx(0.7 * goal["parent_ms"])
    assert goal["chosen"] in goal["probes"] and len(goal["probes"]) >= 1
    assert report["prune"]["round_to"] == block_size(HardwareTarget("t", "onnxruntime"))
    # measured again at the end, side by side with the parent; the verdict is recorded
    assert report["goal_error"] == pytest.approx(
        report["after"]["latency"]["latency_ms"] / (0.7 * report["before"]["latency"]["latency_ms"])
        - 1
    )
    assert report["goal_met"] == (abs(report["goal_error"]) <= 0.05)
    assert report["faster"] == (report["speedup"] > 1.0)
    assert f"latency goal 0.7x: {'met' if report['goal_met'] else 'missed'}" in stdout
    if report["kept"]:
        assert load_checkpoint(out, kind="model")["layout"]
    else:
        assert not out.exists() and out.with_suffix(".not-faster.pt").exists()


def test_a_result_no_faster_than_its_parent_is_not_kept(tmp_path, trained, monkeypatch):
    """The verdict path: the side-by-side measurement (here: the parent reads faster) is
    what decides, whatever the probes said."""
    parent, child = {"latency_ms": 1.0}, {"latency_ms": 1.2}
    monkeypatch.setattr(run_module, "measure", lambda paths, target: [parent, child])
    monkeypatch.setattr(
        run_module,
        "goal_removal",
        lambda model, config, goal, target, batches, log: (40, {"goal": str(goal)}),
    )
    out = tmp_path / "p.pt"
    report = prune_checkpoint(
        trained, out, PruneConfig(0.5), latency=LatencyGoal.parse("0.7x"), log=lambda _: None
    )
    assert report["kept"] is False and report["faster"] is False
    assert not out.exists() and (tmp_path / "p.not-faster.pt").exists()
    assert json.loads(out.with_suffix(".json").read_text())["checkpoint"].endswith(
        "p.not-faster.pt"
    )
    # with a ratio the user asked for fewer channels: kept, and said to be not faster
    kept = prune_checkpoint(trained, tmp_path / "r.pt", PruneConfig(0.3), log=lambda _: None)
    assert kept["kept"] is True and kept["faster"] is False and (tmp_path / "r.pt").exists()


def test_a_goal_at_or_above_the_parent_is_refused(tmp_path, trained, ort_target):
    with pytest.raises(ConfigError, match="is not below the parent's"):
        prune_checkpoint(
            trained,
            tmp_path / "p.pt",
            PruneConfig(0.5),
            latency=LatencyGoal.parse("1000ms"),
            target=str(ort_target),
            log=lambda _: None,
        )
    assert not (tmp_path / "p.pt").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--latency", "25"], "has no unit"),
        (["--latency", "1.2x"], "strictly between 0 and 1"),
        (["--latency", "0.6x", "--ratio", "0.3"], "not allowed with argument"),
        (["--latency", "0.6x", "--target", "none"], "--latency needs a --target"),
        (["--ratio", "0.3", "--max-removed", "0.5"], "--max-removed bounds a --latency goal"),
        (["--latency", "0.6x", "--max-removed", "1.5"], "strictly between 0 and 1"),
        ([], "one of the arguments --latency --ratio is required"),
    ],
)
def test_cli_bad_goals(tmp_path, trained, args, message, capsys):
    from compress.prune.__main__ import main

    code, _, err = call_cli(
        main, ["--checkpoint", trained, *args, "--out", tmp_path / "p.pt"], capsys
    )
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "p.pt").exists()
