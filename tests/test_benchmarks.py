"""Smoke tests of the CIFAR-10 benchmark scripts at their ``tiny`` scale.

The scripts run as users run them (subprocesses), chained through shared work folders as
at the real scales: baselines -> search -> FLOPs proxy and supernet ranking. Latency is
measured on quick targets (few repeats); the numbers mean nothing, the plumbing is what
is checked: every result file written, rows complete and consistent with each other.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from compress.prune import block_size
from nas import preset
from nas.checkpoint import load_checkpoint
from nas.latency import (
    HardwareTarget,
    LatencyMeter,
    kendall_tau,
    load_target,
    pass_spread,
    space_blocks,
    validation_archs,
)
from nas.space import load_space
from reports import collect
from tests.conftest import REPO, TINY_SPACE

BENCH = REPO / "benchmarks"


def _script(cwd: Path, name: str, *args: object, result: str | None = None) -> dict:
    """Run benchmark ``name``; its payload (``result``: the result's name, when not the
    script's)."""
    results = cwd / "results"
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--scale", "tiny", "--results", str(results)]
        + [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = result or name
    payload = json.loads((results / f"{result}_tiny.json").read_text())
    assert (results / f"{result}_tiny.md").read_text().startswith(f"# {result} (tiny scale)")
    return payload


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_benchmark_scripts_chain(tmp_path):
    """One test, not several sharing a fixture: under xdist each worker would run the chain
    again. Baselines, then the searches on their budgets (one quick torch target), then
    the FLOPs-proxy and ranking scripts on the same work folder."""
    chain = _chain(tmp_path)
    _check_baselines_and_search(chain)
    _check_flops_proxy_and_ranking(chain)
    _check_final_training(chain)


def _tiny_budget_slack() -> float:
    """The tiny scale's budget = x0.5's measured latency times this (x0.5 is its space's
    smallest arch: at exactly its latency, noise alone would decide whether anything fits)."""
    sys.path.insert(0, str(BENCH))
    from _common import SCALES

    return SCALES["tiny"].budget_slack


def _chain(root: Path):
    target = root / "quick-torch.yaml"
    HardwareTarget(target.stem, "torch", warmup=2, repeats=8, max_cv=0.5, retries=0).to_yaml(target)
    common = ["--targets", target, "--rounds", 1]
    baselines = _script(
        root,
        "baselines",
        "--models",
        "shufflenet_v2_x0_5_cifar,shufflenet_v2_x1_0_cifar",
        "--work",
        root / "base",
        *common,
    )
    search = _script(
        root,
        "search",
        "--work",
        root / "search",
        "--baselines-work",
        root / "base",
        "--trials",
        2,
        "--shortlist",
        2,
        *common,
    )
    return root, target, baselines, search


def _check_baselines_and_search(chain):
    root, target, baselines, search = chain
    rows = {r["model"]: r for r in baselines["rows"]}
    assert set(rows) == {"ShuffleNetV2 x0.5", "ShuffleNetV2 x1.0"}
    for row in rows.values():
        assert 0.0 <= row["test_acc"] <= 1.0 and row["train_s"] > 0
        assert row["quick-torch_min_ms"] <= row["quick-torch_ms"] <= row["quick-torch_max_ms"]
    assert rows["ShuffleNetV2 x1.0"]["mflops"] > rows["ShuffleNetV2 x0.5"]["mflops"]
    assert len(baselines["samples"][f"{target}/ShuffleNetV2 x0.5"]) == 1  # one per round

    # one search per budget; each compared with the baseline that set its budget
    budgets = json.loads((root / "search" / "budgets.json").read_text())[str(target)]
    assert {r["baseline"] for r in search["rows"]} == set(rows)
    for row in search["rows"]:
        key = "x0.5" if "x0.5" in row["baseline"] else "x1.0"
        assert row["budget_ms"] == pytest.approx(budgets[key] * _tiny_budget_slack())
        # the baseline before the searches over the same net in the comparison round
        assert row["budget_vs_baseline"] == pytest.approx(budgets[key] / row["baseline_ms"])
        assert row["baseline_test_acc"] == rows[row["baseline"]]["test_acc"]
        assert row["gain_points"] == pytest.approx(
            100 * (row["pick_test_acc"] - row["baseline_test_acc"])
        )
        assert row["latency_ratio_min"] <= row["latency_ratio"] <= row["latency_ratio_max"]
        # the pick was retrained from scratch unless it is the baseline's own arch
        retrained = root / "search" / "retrain" / row["pick_hash"] / "model.pt"
        assert retrained.exists() == (row["pick_source"] == "retrained")
        # ... and is the shortlisted arch with the best validation accuracy, the supernet's
        # own pick first in the shortlist
        case = f"{target.stem}-{key}-measured"
        shortlist = search["shortlists"][case]
        front = pd.read_csv(root / "search" / "searches" / case / "pareto.csv")
        assert shortlist[0]["supernet_val_acc"] == front["val_acc"].max()
        assert len({s["arch_hash"] for s in shortlist}) == len(shortlist) <= 2
        chosen = shortlist[row["pick_rank"] - 1]
        assert chosen["arch_hash"] == row["pick_hash"]
        assert chosen["val_acc"] == row["pick_val_acc"] == max(s["val_acc"] for s in shortlist)
    # every study started from the hand-designed net at its budget, then the smallest arch
    space = load_space(BENCH / "spaces" / "shufflenetv2_cifar_tiny.yaml")
    for key, name in (("x0.5", "shufflenet_v2_x0_5_cifar"), ("x1.0", "shufflenet_v2_x1_0_cifar")):
        study_name = f"quick-torch-{key}-measured"
        study = optuna.load_study(
            study_name=study_name,
            storage=f"sqlite:///{root / 'search' / 'searches' / study_name / 'study.db'}",
        )
        first = [t.user_attrs["arch_hash"] for t in study.trials[:2]]
        assert first == [preset(name).hash, space.min_arch.hash]


def _check_flops_proxy_and_ranking(chain):
    root, target, _, _ = chain
    supernet = root / "search" / "supernet" / "supernet.pt"
    mtime = supernet.stat().st_mtime_ns
    flops = _script(
        root, "flops_proxy", "--work", root / "search", "--trials", 2, "--targets", target
    )
    assert supernet.stat().st_mtime_ns == mtime  # the same supernet, not a new one
    assert {(r["budget"].split()[0], r["latency_model"]) for r in flops["rows"]} == {
        (b, m) for b in ("x0.5", "x1.0") for m in ("measured", "flops")
    }
    budgets = json.loads((root / "search" / "budgets.json").read_text())[str(target)]
    for row in flops["rows"]:
        # the front's best point alone dominates the strip from its latency to the budget,
        # and no front dominates more than its best accuracy times the budget
        budget, best, best_ms = (
            budgets[row["budget"].split()[0]] * _tiny_budget_slack(),
            row["best_val_acc"],
            row["best_ms"],
        )
        if best is None:  # an empty front dominates nothing
            assert row["hypervolume"] == 0.0
            continue
        floor = best * max(budget - best_ms, 0.0)
        assert floor - 1e-9 <= row["hypervolume"] <= best * budget + 1e-9
    for name, detail in flops["details"].items():
        timed = collect(Path(detail["runs"]["measured"])).trials.dropna(
            subset=["latency_ms", "flops"]
        )
        tau = kendall_tau(timed["flops"], timed["latency_ms"]) if len(timed) > 1 else None
        for row in flops["rows"]:
            if name.startswith(f"{row['target']}-{row['budget'].split()[0]}-"):
                assert _same(row["flops_latency_tau"], tau) and row["archs_timed"] == len(timed)
    for detail in flops["details"].values():
        for pair in detail["misranked"]:
            assert pair["fewer_mflops"] < pair["more_mflops"] and pair["slower_by"] > 1.0

    ranking = _script(
        root,
        "supernet_ranking",
        "--work",
        root / "search",
        "--baselines-work",
        root / "base",
        "--archs",
        5,
        "--cost-rounds",
        2,
    )
    sources = [r["source"] for r in ranking["rows"]]
    assert len(sources) == 5 and sources.count("spread") >= 1
    assert {"ShuffleNetV2 x0.5", "ShuffleNetV2 x1.0"} <= set(sources)
    rows = ranking["rows"]
    assert [r["mflops"] for r in rows] == sorted(r["mflops"] for r in rows)
    # the baselines are the baselines script's own trained nets, not new ones
    tested = {r["model"]: r["test_acc"] for r in chain[2]["rows"]}
    for row in rows:
        if row["source"] in tested:
            assert row["standalone_test_acc"] == tested[row["source"]]
    # tau is the one of these rows (NaN when every accuracy ties after a few steps)
    estimates = [r["supernet_val_acc"] for r in rows]
    # the split-half check: two halves of equal size whose mean is the estimate, and the
    # noise figures are the ones of these halves
    for row in rows:
        assert row["supernet_val_acc"] == pytest.approx(
            (row["supernet_half_a"] + row["supernet_half_b"]) / 2
        )
    diffs = [r["supernet_half_a"] - r["supernet_half_b"] for r in rows]
    assert ranking["noise_var"] == pytest.approx(statistics.variance(diffs) / 4)
    assert ranking["between_var"] == pytest.approx(
        max(0.0, statistics.variance(estimates) - ranking["noise_var"])
    )
    assert _same(
        ranking["kendall_tau"], kendall_tau(estimates, [r["standalone_val_acc"] for r in rows])
    )
    assert _same(
        ranking["kendall_tau_test"],
        kendall_tau(estimates, [r["standalone_test_acc"] for r in rows]),
    )
    assert _same(
        ranking["kendall_tau_val_test"],
        kendall_tau(
            [r["standalone_test_acc"] for r in rows], [r["standalone_val_acc"] for r in rows]
        ),
    )
    for row in rows:
        assert row["of_standalone"] == pytest.approx(
            row["supernet_val_acc"] / row["standalone_val_acc"]
        )
    assert ranking["of_standalone_min"] == min(r["of_standalone"] for r in rows)
    assert ranking["at_90pct"] == sum(r["of_standalone"] >= 0.9 for r in rows)
    # the training cost is measured side by side, one ratio per round, from real steps
    secs = ranking["cost_seconds"]
    assert len(secs["supernet"]) == len(secs["x1.0"]) == 2 and min(map(min, secs.values())) > 0
    assert ranking["cost_ratios"] == pytest.approx(
        [a / b for a, b in zip(secs["supernet"], secs["x1.0"], strict=True)]
    )
    assert min(ranking["cost_ratios"]) <= ranking["cost_ratio"] <= max(ranking["cost_ratios"])
    # every standalone figure is banked; with the spread archs' checkpoints gone (a fresh
    # machine), a re-run compares the same archs with their banked figures, training nothing
    bank = json.loads((root / "results" / "standalone_tiny.json").read_text())["nets"]
    assert {r["arch_hash"] for r in rows} <= {n["arch_hash"] for n in bank}
    assert {r["standalone_from"] for r in rows} == {"checkpoint"}
    spread = {r["arch_hash"] for r in rows if r["source"] == "spread"}
    for arch_hash in spread:
        shutil.rmtree(root / "search" / "retrain" / arch_hash)
    # ... here against a control: the supernet recipe changed (its own folder and result)
    args = ["--work", root / "search", "--baselines-work", root / "base", "--archs", 5]
    control = _script(
        root,
        "supernet_ranking",
        *args,
        "--cost-rounds",
        1,
        "--supernet-option",
        "epochs=2",
        result="supernet_ranking-epochs2",
    )
    assert control["supernet_changes"] == {"epochs": 2}
    assert Path(control["supernet_path"]).parent.name == "supernet-epochs2"
    shared = load_checkpoint(ranking["supernet_path"], kind="supernet")["train"]["epochs"]
    assert load_checkpoint(control["supernet_path"], kind="supernet")["train"]["epochs"] == 2
    secs = control["cost_seconds"]  # the ratio of step times, times the ratio of epochs
    assert control["cost_ratios"] == pytest.approx(
        [a / b * 2 / shared for a, b in zip(secs["supernet"], secs["x1.0"], strict=True)]
    )
    again = control["rows"]
    assert [(r["arch_hash"], r["standalone_val_acc"]) for r in again] == [
        (r["arch_hash"], r["standalone_val_acc"]) for r in rows
    ]
    for row in again:
        assert row["standalone_from"].startswith("bank") == (row["arch_hash"] in spread)
    assert not any((root / "search" / "retrain" / h).exists() for h in spread)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


@pytest.mark.slow
def test_supernet_sharing_ablation(tmp_path):
    payload = _script(tmp_path, "supernet_sharing", "--work", tmp_path / "work", "--subnets", 3)
    rows = {r["variant"]: r for r in payload["rows"]}
    # the tiny space: two widths, repeats and kernels per stage, split ratio 0.5 only
    sizes = {name: row["archs_in_space"] for name, row in rows.items()}
    assert sizes == {
        "one arch": 1,
        "one-arch supernet": 1,
        "widths": 8,
        "split ratios": 1,
        "widths + ratios": 8,
        "depth + kernels": 64,
        "depth": 8,
        "kernels": 8,
    }
    assert rows["one arch"]["subnets_scored"] == 1 and rows["one arch"]["cost_points"] == 0
    # the control: the same single arch, but trained as a supernet with the supernet recipe
    assert rows["one-arch supernet"]["subnets_scored"] == 1
    control = load_checkpoint(tmp_path / "work" / "one-arch-supernet" / "supernet.pt")
    assert control["kind"] == "supernet" and control["train"]["grad_clip"] is not None
    for row in rows.values():
        assert 0.0 <= row["min_val_acc"] <= row["mean_val_acc"] <= row["max_val_acc"] <= 1.0
    # every supernet's sub-nets scored a second time, after recalibrating on more batches
    # (32 at the cpu and gpu scales, 4 at this one)
    assert rows["one arch"]["mean_val_acc_bn4"] is None
    assert all(0.0 <= r["mean_val_acc_bn4"] <= 1.0 for n, r in rows.items() if n != "one arch")
    assert payload["reference"]["stage3.width"] == 232  # nearest x1.0
    assert payload["reference"]["stage3.repeats"] == 4  # the smallest depth
    # resumed: the finished supernets and their scores are kept, nothing is redone
    names = ("supernet.pt", "subnet_scores_bn1.json", "subnet_scores_bn4.json")
    kept = [tmp_path / "work" / "widths" / name for name in names]
    mtimes = [path.stat().st_mtime_ns for path in kept]
    again = _script(
        tmp_path,
        "supernet_sharing",
        "--work",
        tmp_path / "work",
        "--subnets",
        3,
        "--own-ceiling",
        "depth",
    )
    assert [path.stat().st_mtime_ns for path in kept] == mtimes
    # the same rows, and the depth variant's sub-nets each trained alone as its own ceiling
    for row, first in zip(again["rows"], payload["rows"], strict=True):
        assert {k: v for k, v in row.items() if not k.startswith("own_")} == {
            k: v for k, v in first.items() if not k.startswith("own_")
        }
        if row["variant"] != "depth":
            assert row["own_ceiling_val_acc"] is None and first["own_ceiling_val_acc"] is None
            continue
        pairs = again["own_ceiling"]["depth"]
        assert len(pairs) == row["subnets_scored"]
        assert row["own_ceiling_val_acc"] == pytest.approx(
            statistics.fmean(p["standalone_val_acc"] for p in pairs)
        )
        assert row["own_cost_points"] == pytest.approx(
            100 * (row["own_ceiling_val_acc"] - row["mean_val_acc"])
        )
    standalone = tmp_path / "work" / "depth" / "standalone"
    assert len(list(standalone.glob("*/model.pt"))) == rows["depth"]["subnets_scored"]


@pytest.mark.slow
def test_supernet_recipe_ab_separates_dead_from_live(tmp_path):
    payload = _script(tmp_path, "supernet_recipe", "--work", tmp_path / "work")
    rows = {r["variant"]: r for r in payload["rows"]}
    dead = rows.pop("dead branches (old), spos lr 0.02")
    # the control's stride-1 branches got no gradient in training; every live variant's did
    assert dead["dead_tensors_max_after"] > 0
    assert all(row["dead_tensors_max_after"] == 0 for row in rows.values())
    # a larger branch scale, a larger gradient at initialisation (same seed, same batch)
    live = rows["scale 0.1, spos lr 0.02"]["grad_norm_init_max"]
    assert rows["scale 1, spos lr 0.1 clip 1"]["grad_norm_init_max"] > 2 * live
    assert all(row["steps"] == 2 for row in payload["rows"])  # the tiny scale's steps


def test_pipeline_benchmark_times_every_stage(tmp_path):
    """The script on a small config (tiny space, quick target; the stages themselves are
    tested in test_pipeline): stage times read back from the run, left-out stages named."""
    target = tmp_path / "quick-torch.yaml"
    HardwareTarget(target.stem, "torch", warmup=2, repeats=8, max_cv=0.5, retries=0).to_yaml(target)
    config = tmp_path / "small.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "small",
                "data": {
                    "source": "embedded",
                    "train_per_class": 40,
                    "val_per_class": 10,
                    "test_per_class": 20,
                },
                "space": str(TINY_SPACE),
                "target": str(target),
                "supernet": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 32},
                "search": {"latency_budget": "50ms", "trials": 2, "bn_batches": 1},
                "final": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 32},
                "baselines": None,
                "prune": None,
                "quantize": None,
                "report": {"targets": [str(target)], "passes": 1},
            }
        )
    )
    payload = _script(tmp_path, "pipeline", "--run", tmp_path / "run", "--config", config)
    stages = {r["stage"]: r for r in payload["rows"]}
    assert list(stages) == [
        "supernet",
        "search",
        "final",
        "baselines",
        "prune",
        "quantize",
        "report",
        "total",
    ]
    assert [stages[s]["status"] for s in ("supernet", "search", "final", "report")] == ["done"] * 4
    assert all(
        stages[s]["status"].startswith("left out") for s in ("baselines", "prune", "quantize")
    )
    assert stages["total"]["wall_min"] == pytest.approx(
        sum(r["wall_min"] for name, r in stages.items() if name != "total")
    )
    assert stages["total"]["wall_min"] > 0
    assert (tmp_path / "run" / "report" / "index.html").exists()
    # what the run produced is part of the result: the searched models with their
    # accuracy and measured latency, from the report
    assert payload["resumed"] is False and payload["republished"] is False
    produced = payload["outcome"]
    assert produced and {r["role"] for r in produced} == {"front"}
    assert all(r["target"] == target.stem and r["latency_ms"] > 0 for r in produced)
    assert all(0.0 <= r["val_acc"] <= 1.0 for r in produced)
    assert "What the run produced" in (tmp_path / "results" / "pipeline_tiny.md").read_text()
    # run again on the finished run: nothing re-runs, the stage times are the same
    again = _script(tmp_path, "pipeline", "--run", tmp_path / "run", "--config", config)
    assert again["republished"] is True and again["resumed"] is False
    assert again["rows"] == payload["rows"]
    # a run folder that already holds every stage's output but no record of their timing
    # (outputs placed there from elsewhere): nothing re-runs, and the total is not passed
    # off as the pipeline's time
    shutil.copytree(tmp_path / "run", tmp_path / "given")
    (tmp_path / "given" / "pipeline.json").unlink()
    given = _script(
        tmp_path, "pipeline", "--run", tmp_path / "given", "--config", config, "--tag", "given",
        result="pipeline-given",
    )  # fmt: skip
    rows = {r["stage"]: r for r in given["rows"]}
    assert rows["total"]["status"] == "not all timed" and rows["total"]["wall_min"] < 0.5
    assert all(rows[s]["status"].startswith("skipped") for s in ("supernet", "search", "final"))
    shown = (tmp_path / "results" / "pipeline-given_tiny.md").read_text()
    assert "Not timed here: supernet, search, final, report" in shown
    assert "supernet/supernet.pt" in given["given_outputs"] and "`supernet/supernet.pt`" in shown
    # and republished as such: nothing re-runs, the placed outputs are still named
    again = _script(
        tmp_path, "pipeline", "--run", tmp_path / "given", "--config", config, "--tag", "given",
        result="pipeline-given",
    )  # fmt: skip
    assert again["republished"] is True and again["resumed"] is False
    assert again["rows"] == given["rows"] and again["given_outputs"] == given["given_outputs"]


def _check_final_training(chain):
    root, target, _, search = chain
    final = _script(
        root, "final_training", "--work", root / "search", "--trials", 2, "--targets", target
    )
    picks = {r["pick_hash"] for r in search["rows"]}
    rows = final["rows"]
    assert {r["arch_hash"] for r in rows} == picks
    assert sorted(r["recipe"] for r in rows) == sorted(
        ["scratch", "inherit", "inherit + distillation"] * len(picks)
    )
    for row in rows:
        assert row["lr"] == (0.1 if row["recipe"] == "scratch" else 0.02)
        assert row["epochs"] >= 1 and 0.0 <= row["test_acc"] <= 1.0
        if row["recipe"] == "scratch":
            assert row["val_gain_points"] == 0 and row["wall_vs_scratch"] == 1.0
    means = final["mean_val_acc"]
    assert final["best"] == max(means, key=means.get)
    for name, mean in means.items():
        mine = [r["val_acc"] for r in rows if r["recipe"] == name]
        assert mean == pytest.approx(sum(mine) / len(mine))
    # every model is kept where nas.final keeps it, so a second run trains nothing
    assert len(list((root / "search" / "final").glob("*/*/model.pt"))) == len(rows)


def test_latency_repeat_measures_quiet_then_busy(tmp_path):
    target = tmp_path / "quick-torch.yaml"
    HardwareTarget(target.stem, "torch", warmup=2, repeats=8, max_cv=0.5, retries=0).to_yaml(target)
    payload = _script(tmp_path, "latency_repeat", "--targets", target)
    rows = payload["rows"]
    assert [r["target"] for r in rows] == ["quick-torch"] * 2
    assert rows[0]["mflops"] < rows[1]["mflops"]  # the space's smallest, then its largest
    for row in rows:
        passes = row["quiet_passes_ms"]
        assert len(passes) == 2
        assert row["quiet_ms"] == pytest.approx(statistics.median(passes), abs=1e-4)
        assert row["quiet_spread"] == pytest.approx(pass_spread(passes), abs=1e-4)
        # the diagnosis readouts undo the speed normalisation of the same passes
        for got, passed, speed in zip(row["raw_passes"], passes, row["speed_passes"], strict=True):
            assert got == pytest.approx(passed * speed, rel=1e-3, abs=1e-3)
        assert all(m <= r for m, r in zip(row["raw_min_passes"], row["raw_passes"], strict=True))
        assert row["raw_spread"] == pytest.approx(pass_spread(row["raw_passes"]), abs=1e-3)
        # the control beside the guarded passes: the same protocol, the probe only recorded
        for way in ("guarded", "unguarded"):
            got = row[f"{way}_passes_ms"]
            assert len(got) == 2 and row[f"{way}_spread"] == pytest.approx(
                pass_spread(got), abs=1e-4
            )
            assert all(ms > 0 for ms in row[f"{way}_probe_passes_ms"])
            assert row[f"{way}_attempts"] >= 2
        assert row["guard"] is False and passes == row["unguarded_passes_ms"]  # the default
        assert 0 <= row["guarded_contended"] <= 2
        # the protocol again in passes each round, back to back and spaced: a result per
        # round from 3 to 6 passes, the spread between rounds
        for way in ("adjacent", "spaced"):
            results = row[f"{way}_results_ms"]
            assert len(results) == 2 and len(row[f"{way}_passes_ms"]) == 2
            assert all(3 <= len(p) <= 6 for p in row[f"{way}_passes_ms"])
            assert row[f"{way}_spread"] == pytest.approx(pass_spread(results), abs=1e-4)
            for result, passes_ms in zip(results, row[f"{way}_passes_ms"], strict=True):
                assert min(passes_ms) - 1e-3 <= result <= max(passes_ms) + 1e-3
            # why each result was flagged, and how far it lies from the rounds' median
            flags = row[f"{way}_flags"]
            assert set(flags) <= {"disagree", "cv", "none"}
            assert row[f"{way}_noisy"] == sum(f != "none" for f in flags)
            assert row[f"{way}_disagree"] == flags.count("disagree")
            middle = statistics.median(results)
            for dev, result in zip(row[f"{way}_deviations"], results, strict=True):
                assert dev == pytest.approx(result / middle - 1, abs=1e-3)
        # the busy phase two ways, each against its own quiet median
        quiet = {"norm": row["quiet_ms"], "raw": statistics.median(row["raw_passes"])}
        for way, reference in quiet.items():
            busy = {k.removeprefix(f"busy_{way}_"): v for k, v in row.items() if f"_{way}_" in k}
            assert 3 <= busy["passes"] <= 6
            assert busy["off"] == pytest.approx(busy["ms"] / reference - 1, abs=1e-3)
            assert busy["ok"] == (abs(busy["off"]) <= 0.10 or busy["noisy"])
            assert busy["ok_disagree"] == (abs(busy["off"]) <= 0.10 or busy["flag"] == "disagree")
        # ... and the normalised one against the quiet results in passes
        in_passes = statistics.median(row["adjacent_results_ms"] + row["spaced_results_ms"])
        off = row["busy_norm_vs_passes_off"]
        assert off == pytest.approx(row["busy_norm_ms"] / in_passes - 1, abs=1e-3)
        assert row["busy_norm_vs_passes_ok"] == (abs(off) <= 0.10 or row["busy_norm_noisy"])
    summary = payload["summary"]["quick-torch"]
    for way in ("norm", "raw"):
        assert summary[f"busy_{way}_silently_off"] == sum(not r[f"busy_{way}_ok"] for r in rows)
    assert summary["contended_passes"] == sum(r["guarded_contended"] for r in rows)
    assert summary["busy_norm_vs_passes_silently_off"] == sum(
        not r["busy_norm_vs_passes_ok"] for r in rows
    )
    flagged = summary["flags"]
    assert sum(c["results"] for c in flagged.values()) == 2 * 2 * len(rows)  # 2 ways x 2 rounds
    for flag, counts in flagged.items():
        devs = [
            abs(d)
            for r in rows
            for way in ("adjacent", "spaced")
            for f, d in zip(r[f"{way}_flags"], r[f"{way}_deviations"], strict=True)
            if f == flag
        ]
        assert counts["off"] == sum(d > 0.05 for d in devs)
    for way in ("adjacent", "spaced"):
        spreads = [r[f"{way}_spread"] for r in rows]
        assert summary[f"median_{way}_spread"] == statistics.median(spreads)


def test_latency_probe_reads_every_model_between_probe_readings(tmp_path):
    payload = _script(tmp_path, "latency_probe")
    rows, readings = payload["rows"], payload["readings"]
    assert len(rows) == 4 and len(readings) == 4  # (reference + 1 arch) x 2 targets
    sweeps = payload["settings"]["sweeps"]
    for row in rows:
        key = row["target"] + "|" + row["model"].removesuffix(" (reference)")
        series = readings[key]
        assert row["readings"] == len(series) == sweeps
        assert all(r["raw_ms"] > 0 and r["copy 16MB"] > 0 and r["read 8MB"] > 0 for r in series)
        fastest = min(r["copy 16MB"] for r in series)
        kept = sum(r["copy 16MB"] <= fastest * (1 + payload["settings"]["gate"]) for r in series)
        assert row["copy 16MB|kept"] == pytest.approx(kept / len(series), abs=1e-3)
        assert row["copy 16MB|kept"] > 0  # the fastest reading is always kept


def test_latency_drift_reads_every_protocol_out_of_the_same_samples(tmp_path):
    payload = _script(tmp_path, "latency_drift")
    records, rows = payload["records"], payload["rows"]
    assert len(records) == 3 and len(rows) == 6  # 3 archs x 2 targets
    assert set(records[0]["probes"]) == {"python", "matmul", "cache", "memory"}
    # each row's readouts recompute from its samples (3 samples, 1 apart: one triple)
    for row, key in zip(rows, records[0]["subjects"], strict=True):
        assert key.startswith(row["target"] + "|")
        series = [r["subjects"][key] for r in records]
        raw = [x["median"] for x in series]
        assert row["raw_10min"] == pytest.approx(pass_spread(raw), abs=1e-4)
        paired = [x["paired_subject"] / x["paired_reference"] for x in series]
        assert row["paired_10min"] == pytest.approx(pass_spread(paired), abs=1e-4)
        assert all(0 < x["min"] <= x["median"] for x in series)
    fresh = [r for r in rows if r.get("fresh_10min") is not None]
    assert len(fresh) == 1 and fresh[0]["fresh_over_raw"] > 0


def test_latency_reference_reads_each_reference_out_of_the_same_samples(tmp_path):
    payload = _script(tmp_path, "latency_reference", "--targets", "cpu-torch-1t")
    records, rows = payload["records"], payload["rows"]
    assert len(records) == 2 and len(rows) == 3  # 3 archs, 1 target
    refs = ("x0_5", "x1_0", "x1_5", "x2_0")
    for row, key in zip(rows, records[0]["subjects"], strict=True):
        series = {k: np.array([r["subjects"][key][k] for r in records]) for k in ("subject", *refs)}
        raw = series["subject"]
        assert row["raw_pct"] == pytest.approx(100 * np.std(np.log(raw)), abs=0.01)
        # today's normalisation: over the x0.5 reference's factor in the same sample
        today = raw / (series["x0_5"] / np.median(series["x0_5"]))
        assert row["over_x0_5_pct"] == pytest.approx(100 * np.std(np.log(today)), abs=0.01)
        x, y = np.log(series["x2_0"]), np.log(raw)
        slope = np.polyfit(x, y, 1)[0] if np.ptp(x) > 0 else None
        assert row["elasticity_x2_0"] == pytest.approx(slope, abs=1e-3)
    # the references' typical times rise along the ladder
    times = payload["reference_ms"]["cpu-torch-1t"]
    assert times["x0_5"] < times["x1_0"] < times["x2_0"]
    # the lookup table's blocks as subjects: smallest and largest by parameters, one between
    blocks = _script(
        tmp_path, "latency_reference", "--targets", "cpu-torch-1t", "--subjects", "blocks",
        "--name", "block_reference", result="block_reference",
    )  # fmt: skip
    keys = [r["block"] for r in blocks["rows"]]
    by_params = sorted(
        space_blocks(load_space("shufflenetv2_cifar")), key=lambda b: (b.params, b.key)
    )
    assert len(keys) == 3 and keys[0] == by_params[0].key and keys[-1] == by_params[-1].key
    assert all(r["mflops"] is None and r["ms"] > 0 for r in blocks["rows"])


def test_latency_reference_interpolates_the_factor_between_the_references_around():
    sys.path.insert(0, str(BENCH))
    try:
        import latency_reference as lr
    finally:
        sys.path.remove(str(BENCH))
    typical = {"x0_5": 2.0, "x1_0": 3.0, "x1_5": 4.5, "x2_0": 8.0}
    factor = {"x0_5": np.array([1.0, 1.2]), "x1_0": np.array([1.0, 1.1]),
              "x1_5": np.array([1.0, 1.05]), "x2_0": np.array([1.0, 0.9])}  # fmt: skip
    ladder = list(typical)
    # at a reference's own time: its factor; beyond the ends: the end's
    assert lr._between(factor, typical, ladder, np.log(3.0))[1] == pytest.approx(1.1)
    assert lr._between(factor, typical, ladder, np.log(1.0))[1] == pytest.approx(1.2)
    assert lr._between(factor, typical, ladder, np.log(20.0))[1] == pytest.approx(0.9)
    # halfway in log time between x1.5 and x2.0: the geometric mean of their factors
    mid = np.log(np.sqrt(4.5 * 8.0))
    assert lr._between(factor, typical, ladder, mid)[1] == pytest.approx(np.sqrt(1.05 * 0.9))
    # the same subject time read between the ladder's ends only
    ends = ["x0_5", "x2_0"]
    w = (np.log(4.0) - np.log(2.0)) / (np.log(8.0) - np.log(2.0))
    expected = 1.2 ** (1 - w) * 0.9**w
    assert lr._between(factor, typical, ends, np.log(4.0))[1] == pytest.approx(expected)


@pytest.mark.slow
def test_prune_goal_compares_the_allocations_side_by_side(tmp_path, trained):
    target = tmp_path / "quick-ort.yaml"
    HardwareTarget(target.stem, "onnxruntime", warmup=2, repeats=8, retries=0).to_yaml(target)
    # three of the five arms, one of each kind: no layer costs, latency costs (with
    # distillation), unblocked widths; the script's --arms keeps that order
    arms = ["uniform", "latency+kd", "ratio"]
    args = ["--checkpoint", trained, "--target", target, "--latency", "0.8x"]
    payload = _script(
        tmp_path, "prune_goal", *args, "--scope", "internal", "--work", tmp_path / "w",
        "--arms", ",".join(arms),
    )  # fmt: skip
    rows = payload["rows"]
    # an arm whose goal is out of reach within the channels a goal may remove (--ratio's
    # unblocked widths can leave ONNX Runtime's fast kernels; a loaded machine can slow
    # every probe) is recorded as such, not a row
    refused = [key.split(" ", 1)[1] for key in payload["out_of_reach"]]
    assert rows and [r["allocation"] for r in rows] == [a for a in arms if a not in refused]
    assert all("out of reach on quick-ort" in why for why in payload["out_of_reach"].values())
    assert [r["distill"] for r in rows] == [r["allocation"] == "latency+kd" for r in rows]
    (h,) = {r["arch_hash"] for r in rows}
    parent = payload["samples"][f"{h} parent"]
    for row in rows:
        pruned = payload["samples"][f"{h} {row['allocation']}"]
        assert row["speedup"] == pytest.approx(
            statistics.median(p / m for p, m in zip(parent, pruned, strict=True))
        )
        assert row["goal_error"] == pytest.approx(
            statistics.median(m / (0.8 * p) - 1 for p, m in zip(parent, pruned, strict=True))
        )
        assert row["goal_met"] == (abs(row["goal_error"]) <= 0.05)
        report = payload["reports"][f"{h} {row['allocation']}"]
        assert report["prune"]["finetune_epochs"] == 1  # the same fine-tuning for every arm
        costs = report["prune"]["latency_goal"]["layer_costs_ms"]
        assert (costs is not None) == row["allocation"].startswith("latency")
        # --ratio's widths: not kept to the runtime's channel block
        block = block_size(HardwareTarget("t", "onnxruntime"))
        assert report["prune"]["round_to"] == (1 if row["allocation"] == "ratio" else block)
    best = max(rows, key=lambda r: r["val_acc"])["allocation"]
    assert payload["best"] == {h: best}


@pytest.mark.slow
def test_int8_profile_splits_each_graph_by_op_kind(tmp_path):
    target = tmp_path / "quick-ort.yaml"
    HardwareTarget(target.stem, "onnxruntime", warmup=2, repeats=8, retries=0).to_yaml(target)
    payload = _script(tmp_path, "int8_profile", "--target", target, "--work", tmp_path / "w")
    rows = {r["graph"]: r for r in payload["rows"]}
    assert set(rows) == {
        "fp32-reshape",
        "fp32-gather",
        "int8-reshape-qdq-per-tensor",
        "int8-gather-qdq-per-tensor",
    }
    kinds = ("conv", "layout", "quantize", "shuffle", "pool+fc", "other")
    for name, row in rows.items():
        profile = payload["profiles"][name]
        # every op's time lands in exactly one kind, and the ops ran inside the runs
        assert sum(row[f"{k}_ms"] for k in kinds) == pytest.approx(
            sum(profile["per_op_ms"].values())
        )
        assert 0 < sum(profile["per_op_ms"].values()) <= row["profiled_ms"] * 1.5
        # the convolutions' time, split by shape: pointwise, depthwise and the dense stem
        split = [row[f"conv_{c}_ms"] for c in ("1x1", "depthwise", "dense")]
        assert sum(split) == pytest.approx(row["conv_ms"], rel=0.05) and min(split) > 0
        assert profile["convs"]["dense"] == 1 and profile["convs"]["depthwise"] > 0
        if name.startswith("fp32"):  # float convolutions only, in ONNX Runtime's NCHWc layout
            assert row["float_convs"] > 0 and row["q_dq"] == 0
            assert profile["optimised_nodes"].get("com.microsoft.nchwc:Conv", 0) > 0
        else:  # every convolution quantized
            assert row["float_convs"] == 0
            assert profile["optimised_nodes"].get("com.microsoft:QLinearConv", 0) > 0
        assert row["speedup_vs_best_fp32"] == pytest.approx(
            min(rows[g]["latency_ms"] for g in rows if g.startswith("fp32")) / row["latency_ms"]
        )
    # the reshape shuffle leaves transposes in the graph, the gather shuffle does not (fp32)
    assert rows["fp32-reshape"]["transposes"] > rows["fp32-gather"]["transposes"] == 0
    assert payload["chosen_int8"] in {n.removeprefix("int8-") for n in rows}


def test_the_pipeline_result_leads_with_the_reports_answer():
    """On the committed cpu-scale run's models, as the README states them: the trained
    front beats every baseline on both targets, fp32 alone and with its compressed forms."""
    sys.path.insert(0, str(BENCH))
    try:
        import pipeline
    finally:
        sys.path.remove(str(BENCH))
    rows = json.loads((BENCH / "results" / "pipeline_cpu.json").read_text())["outcome"]
    notes = pipeline.answer_notes(rows)
    sections = notes.split("`cpu-")[1:]
    assert [s.split("`", 1)[0] for s in sections] == ["torch-1t"] * 2 + ["ort-1t"] * 2
    for section in sections:  # fp32 front, then with its pruned and int8 forms, per target
        assert "no searched model" not in section and section.count("beaten by") == 3
    assert pipeline.answer_notes([r for r in rows if r["role"] != "baseline"]) == ""


def test_standalone_figures_are_reused_only_with_their_own_recipe(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        import _standalone
    finally:
        sys.path.remove(str(BENCH))
    x05, x10 = preset("shufflenet_v2_x0_5_cifar"), preset("shufflenet_v2_x1_0_cifar")
    _standalone.record(tmp_path, "tiny", x10, {"val_acc": 0.5, "test_acc": 0.4}, "a")
    _standalone.record(tmp_path, "tiny", x05, {"val_acc": 0.3, "test_acc": 0.2}, "b")
    other = {**_standalone.recipe_of("tiny"), "recipe": {"epochs": 999}}
    _standalone.record(tmp_path, "cpu", x05, {"val_acc": 0.9, "test_acc": 0.9}, "c", other)
    bank = _standalone.lookup(tmp_path, "tiny")
    assert set(bank) == {x05.hash, x10.hash}
    assert bank[x10.hash]["val_acc"] == 0.5 and bank[x05.hash]["source"] == "b"
    # the cpu bank's only net was trained with another recipe: not reused
    assert _standalone.lookup(tmp_path, "cpu") == {}
    # a net recorded before a data field existed (with its default) is still reused
    path = _standalone.bank_path(tmp_path, "tiny")
    older = json.loads(path.read_text())
    del older["nets"][0]["trained_with"]["data"]["channels"]
    path.write_text(json.dumps(older))
    assert set(_standalone.lookup(tmp_path, "tiny")) == {x05.hash, x10.hash}
    # recording again replaces, and the file lists nets by FLOPs
    _standalone.record(tmp_path, "tiny", x10, {"val_acc": 0.6, "test_acc": 0.5}, "a")
    nets = json.loads(_standalone.bank_path(tmp_path, "tiny").read_text())["nets"]
    assert [n["arch_hash"] for n in nets] == [x05.hash, x10.hash] and nets[1]["val_acc"] == 0.6
    assert nets[1]["trained_with"] == _standalone.recipe_of("tiny")


@pytest.mark.slow
def test_compression_prunes_to_the_goal_on_the_target(tmp_path):
    """One quick ONNX Runtime target (the torch int8 path is tested in test_quantize)."""
    target = tmp_path / "quick-ort.yaml"
    spec = HardwareTarget(target.stem, "onnxruntime", warmup=2, repeats=8, retries=0)
    spec.to_yaml(target)
    args = ["--preset", "shufflenet_v2_x0_5_cifar", "--rounds", 2, "--latency", "0.8x"]
    args += ["--targets", target, "--variants", "gather-qdq-per-tensor"]
    payload = _script(tmp_path, "compression", *args, "--work", tmp_path / "w")
    rows = {r["model"]: r for r in payload["rows"]}
    assert list(rows) == ["fp32", "pruned fp32", "int8", "pruned int8"]
    assert {r["target"] for r in payload["rows"]} == {"quick-ort"}
    fp32, pruned = payload["samples"]["quick-ort/fp32"], payload["samples"]["quick-ort/pruned fp32"]
    assert len(fp32) == len(pruned) == 2 and rows["fp32"]["speedup"] == 1.0
    # the model pruned to the goal on this target, in its channel block, is the one quantized
    report = payload["prune"]["quick-ort"]
    assert report["prune"]["latency_goal"]["goal"] == "0.8x"
    assert report["prune"]["round_to"] == block_size(spec)
    assert rows["pruned fp32"]["goal_error"] == pytest.approx(
        statistics.median(m / (0.8 * f) - 1 for f, m in zip(fp32, pruned, strict=True))
    )
    assert rows["pruned fp32"]["flops_M"] < rows["fp32"]["flops_M"]
    assert payload["quantize"]["pruned/quick-ort"]["source"] == report["checkpoint"]
    assert rows["int8"]["vs_ort_fp32"] == pytest.approx(rows["int8"]["speedup"])
    # a goal compress.prune refused as out of reach (recorded, so a rerun does not prune
    # again): that target gets no pruned rows, and the notes say why
    why = "--latency 0.8x is out of reach on quick-ort: (recorded)"
    (tmp_path / "w" / "pruned-quick-ort.out-of-reach.txt").write_text(why + "\n")
    (tmp_path / "w" / "pruned-quick-ort.json").unlink()
    payload = _script(tmp_path, "compression", *args, "--work", tmp_path / "w")
    assert [r["model"] for r in payload["rows"]] == ["fp32", "int8"]
    assert payload["out_of_reach"] == {"quick-ort": why} and payload["prune"] == {}


def test_supernet_step_speed_times_fresh_and_repeated_steps(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "supernet_step_speed.py"),
            "--device",
            "cpu",
            "--steps",
            "2",
            "--batch",
            "4",
            "--space",
            str(TINY_SPACE),
            "--settings",
            "fp32-nchw,bf16-cl",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "supernet_step_speed_cpu.json").read_text())
    assert [r["setting"] for r in result["rows"]] == ["fp32-nchw", "bf16-cl"]
    for row in result["rows"]:
        assert len(row["fresh_ms"]) == len(row["repeat_ms"]) == 2
        assert all(t > 0 for t in row["fresh_ms"] + row["repeat_ms"])
    table = (tmp_path / "supernet_step_speed_cpu.md").read_text()
    assert "| fp32-nchw |" in table and "| bf16-cl |" in table


def test_latency_contention_loads_the_other_core_and_reads_each_model_under_it(tmp_path):
    payload = _script(tmp_path, "latency_contention")
    rows = payload["rows"]
    assert {r["target"] for r in rows} == {"probe", "cpu-torch-1t", "cpu-ort-1t"}
    readings = payload["readings"]
    for row in rows:
        model = row["model"].removesuffix(" (reference)")
        by_condition = readings[f"{row['target']}|{model}"]
        quiet = statistics.median(raw for raw, _ in by_condition["quiet"])
        assert len(by_condition["quiet"]) == 2 and len(by_condition["memory"]) == 1
        for load in ("memory", "compute"):
            raw = statistics.median(r for r, _ in by_condition[load])
            assert row[f"{load}_raw"] == pytest.approx(raw / quiet - 1, abs=1e-4)
        # a model built afresh each quiet round, except the reference itself
        assert ("fresh" in by_condition) == (row["target"] != "probe" and model == row["model"])
    settings = payload["settings"]
    assert settings["load_core"] != settings["measuring_core"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_contention_load_generator_burns_the_core_it_names():
    sys.path.insert(0, str(BENCH))
    from latency_contention import load_generator

    core = max(os.sched_getaffinity(0))
    for kind in ("compute", "memory"):
        process = load_generator(kind, core, 1.5)  # returns once the load runs
        assert os.sched_getaffinity(process.pid) == {core}
        _, status, usage = os.wait4(process.pid, 0)  # it ends by itself
        process.returncode = os.waitstatus_to_exitcode(status)
        assert process.returncode == 0
        # busy in its loop, not asleep nor only faulting pages in: user time (0.3 s of its
        # 1.5: xdist workers may share the core meanwhile)
        assert usage.ru_utime > 0.3, kind


def test_latency_predictor_scores_each_pass_and_a_fresh_process_beside_the_old(tmp_path):
    target = tmp_path / "quick-torch.yaml"
    HardwareTarget(target.stem, "torch", warmup=2, repeats=8, max_cv=0.5, retries=0).to_yaml(target)
    space = REPO / "tests" / "data" / "micro_space.yaml"
    payload = _script(
        tmp_path,
        "latency_predictor",
        *("--targets", target, "--space", space, "--samples", 5, "--fit-samples", 3),
        *("--passes", 2, "--build-passes", 1, "--worker-age-control", 1),
    )
    (row,) = payload["rows"]
    out = tmp_path / "results" / "latency_predictor" / "quick-torch"
    frame, passes = pd.read_csv(out / "validation.csv"), pd.read_csv(out / "passes.csv")
    assert len(frame) == 5
    # the median of the passes is what is scored; each pass is kept beside it
    assert (frame[["pass1_ms", "pass2_ms"]].median(axis=1) - frame.measured_ms).abs().max() < 1e-9
    assert list(passes["pass"]) == [1, 2, 3, 4]
    assert list(passes.process) == ["long-lived", "long-lived", "fresh", "long-lived"]
    for _, p in passes.iterrows():
        assert 0 <= p.within_10pct <= 1 and p.minutes > 0
    first = passes.iloc[0]
    error = 100 * (frame.predicted_ms - frame.pass1_ms) / frame.pass1_ms
    assert first.within_10pct == pytest.approx(float((error.abs() <= 10).mean()))
    assert first.median_error_pct == pytest.approx(float(error.median()))
    assert first.median_vs_pass1_pct == 0 and row["pass1_within_10pct"] == first.within_10pct
    # before normalisation: did the speed factor follow what moved the archs?
    raw = frame.pass2_ms * frame.pass2_speed / (frame.pass1_ms * frame.pass1_speed) - 1
    assert passes.median_raw_vs_pass1_pct.iloc[1] == pytest.approx(100 * raw.median())
    assert (frame.pass1_speed != 1).all()  # the quick target is normalised
    reference = frame.pass2_speed / frame.pass1_speed - 1
    assert passes.reference_vs_pass1_pct.iloc[1] == pytest.approx(100 * reference.median())
    offset = 100 * (frame.pass2_ms / frame.pass1_ms - 1)
    small = frame.predicted_ms < frame.predicted_ms.median()
    assert passes.smaller_half_vs_pass1_pct.iloc[1] == pytest.approx(offset[small].median())
    assert passes.larger_half_vs_pass1_pct.iloc[1] == pytest.approx(offset[~small].median())
    fastest = frame[["pass1_ms", "pass2_ms"]].min(axis=1)
    assert row["fastest_kendall_tau"] == pytest.approx(kendall_tau(fastest, frame.predicted_ms))
    # every pass of every validation arch is in the cache (repeats 0-3)
    archs = validation_archs(load_space(space), 5)
    with LatencyMeter(load_target(target)) as meter:
        read = [[meter.measure_arch(a, repeat=n) for n in range(4)] for a in archs]
    assert all(m.cached for ms in read for m in ms)
    # the fresh pass (repeat 2) against the long-lived pass read beside it (3), arch by arch
    ratio = [ms[2].stats.median_ms / ms[3].stats.median_ms - 1 for ms in read]
    assert row["fresh_vs_old_pct"] == pytest.approx(100 * float(np.median(ratio)))
    assert passes.vs_long_lived_pct.iloc[2] == row["fresh_vs_old_pct"]
    assert passes.vs_long_lived_pct.isna().sum() == 3
    # how the smallest arch's raw time followed the speed factor over all 4 passes
    stats = [m.stats for m in read[int(frame.predicted_ms.argmin())]]
    x, y = np.log([s.speed for s in stats]), np.log([s.median_ms * s.speed for s in stats])
    assert row["elasticity_smallest_fifth"] == pytest.approx(np.polyfit(x, y, 1)[0])
