"""Final training of a searched front: the stage, its command and its mechanisms."""

from __future__ import annotations

import dataclasses
import itertools
import json
import time

import optuna
import pandas as pd
import pytest
import torch

from nas import ConfigError
from nas.arch import ArchConfig
from nas.checkpoint import load_checkpoint, model_from_checkpoint, supernet_from_checkpoint
from nas.data import DataSpec, load_data
from nas.final import FinalTraining, FrontTrainer
from nas.final.__main__ import main as final_main
from nas.latency import HardwareTarget, Measurement, summarize
from nas.search import SearchOptions, run_search
from nas.search._anchors import EXPLORE_BELOW, TRIES, WINDOW, candidates, explore_from
from nas.search._front import measure_archs, rivals
from nas.search._pareto import pareto_front
from nas.space import load_space
from nas.train import TrainConfig, evaluate, loader_for, subnet_model, train
from tests.conftest import TINY_SPACE

QUIET = {"log": lambda _: None}
SHORT = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def data():
    return load_data(DataSpec("embedded"))


@pytest.fixture(scope="module")
def supernet(tiny_supernet):
    return supernet_from_checkpoint(load_checkpoint(tiny_supernet, kind="supernet"))


def test_the_recipe_is_checked_and_names_its_folder():
    with pytest.raises(ConfigError, match="unknown final init 'warm'"):
        FinalTraining(init="warm")
    with pytest.raises(ConfigError, match=">= 1 epoch"):
        FinalTraining(epochs=0)
    with pytest.raises(ConfigError, match="learning rate"):
        FinalTraining(lr=-1.0)
    assert (
        FinalTraining().recipe(0).lr == 0.1 and FinalTraining(init="inherit").recipe(0).lr == 0.02
    )
    slugs = {FinalTraining(**c).slug() for c in ({}, {"epochs": 3}, {"distill": True})}
    assert len(slugs) == 3  # a model trained with another recipe is never reused
    assert FinalTraining.from_dict(FinalTraining(init="inherit").to_dict()).init == "inherit"


def _parameters(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_inherit_starts_from_the_supernet_weights_and_scratch_does_not(supernet, data, tmp_path):
    arch = supernet.space.sample(3)
    inherited = _parameters(subnet_model(supernet, arch, data, 1))
    for init, same in (("inherit", True), ("scratch", False)):
        # a learning rate too small to move anything: the weights are where training began
        final = FinalTraining(init=init, lr=1e-12, **SHORT)
        model, metrics = FrontTrainer(
            final, supernet, data, tmp_path / init, bn_batches=1, progress=False, **QUIET
        ).train(arch)
        assert "val_acc" in metrics and "test_acc" not in metrics  # test: reported by export
        trained = _parameters(model)
        close = all(torch.allclose(trained[k], v, atol=1e-6) for k, v in inherited.items())
        assert close == same, init


def test_distillation_uses_a_frozen_teacher_and_only_adds_its_term(supernet, data, tmp_path):
    arch = supernet.space.min_arch
    teacher = subnet_model(supernet, supernet.space.max_arch, data, 1)
    before = _parameters(teacher)

    def weights(name, kd_ratio=1.0, with_teacher=True):
        config = TrainConfig(**SHORT, kd_ratio=kd_ratio, eval_every=0)
        train(
            arch,
            data,
            config,
            tmp_path / name,
            progress=False,
            report_test=False,
            teacher=teacher if with_teacher else None,
            **QUIET,
        )
        return load_checkpoint(tmp_path / name / "model.pt", kind="model")["state_dict"]

    plain, distilled, zero = (
        weights("plain", with_teacher=False),
        weights("kd"),
        weights("kd0", 0.0),
    )
    assert any(not torch.equal(plain[k], distilled[k]) for k in plain)  # the teacher counts
    assert all(torch.equal(plain[k], zero[k]) for k in plain)  # and nothing else changed
    assert all(torch.equal(before[k], v) for k, v in _parameters(teacher).items())


def _quick_search(run, supernet, target, **options):
    """A search of the tiny supernet at a budget that admits every arch, quietly."""
    return SearchOptions(
        latency_budget_ms=50.0,
        target=str(target),
        supernet=supernet,
        run=run,
        progress=False,
        bn_batches=1,
        **options,
    )


@pytest.mark.slow
def test_the_command_trains_a_finished_searchs_front(tmp_path, tiny_supernet, fast_target, data):
    run = tmp_path / "run"
    summary = run_search(_quick_search(run, tiny_supernet, fast_target, trials=3), **QUIET)
    estimates = pd.read_csv(run / "pareto.csv")
    assert set(estimates.training) == {"supernet weights"}
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SHORT.items()]
    assert final_main(["--run", str(run), "--no-progress", *flags]) == 0

    front = pd.read_csv(run / "pareto.csv")
    assert list(front.arch_hash) == list(estimates.arch_hash)  # the same front, trained
    assert set(front.training) == {"scratch, 1 epochs"}
    final = FinalTraining(**SHORT)
    for row in front.itertuples():
        payload = load_checkpoint(run / row.checkpoint, kind="model")
        assert payload["source"]["final"] == final.to_dict()
        assert payload["metrics"]["val_acc_supernet"] == pytest.approx(row.val_acc_supernet)
        assert (run / "final" / final.slug() / row.arch_hash / "model.pt").is_file()
        arch = ArchConfig.from_yaml(run / "archs" / f"{row.arch_hash}.yaml")
        model = model_from_checkpoint(payload)
        assert evaluate(model, loader_for(data.val, data, arch, 256, "cpu"))["acc"] == (
            pytest.approx(row.val_acc)
        )
    recorded = json.loads((run / "summary.json").read_text())["options"]
    assert recorded["final"] == final.to_dict()
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{run / 'study.db'}")
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3  # no new ones

    # a second run reuses the trained models
    stamps = {p: p.stat().st_mtime_ns for p in (run / "final").rglob("model.pt")}
    assert final_main(["--run", str(run), "--no-progress", *flags]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # a shortlist of 2: each front arch's next best estimate no slower is trained too (the
    # front's own models reused: the shortlist is not part of the recipe), and the front
    # delivered is the Pareto set of the trained models
    assert final_main(["--run", str(run), "--no-progress", *flags, "--shortlist=2"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    listed = json.loads((run / "summary.json").read_text())["shortlist"]
    assert {r["arch_hash"] for r in listed if r["estimated_front"]} == set(front.arch_hash)
    proxy = {t.user_attrs["arch_hash"]: t.values[1] for t in study.get_trials()}
    slowest = max(proxy[h] for h in front.arch_hash)
    extra = [r for r in listed if not r["estimated_front"]]
    assert len(extra) <= len(front) and all(proxy[r["arch_hash"]] <= slowest for r in extra)
    keep = pareto_front([(r["val_acc"], r["latency_ms"]) for r in listed])
    assert [r["delivered"] for r in listed] == [i in keep for i in range(len(listed))]
    delivered = pd.read_csv(run / "pareto.csv")
    assert set(delivered.arch_hash) == {r["arch_hash"] for r in listed if r["delivered"]}
    assert set(delivered.training) == {"scratch, 1 epochs, best of 2 per front arch"}


def test_anchors_deliver_the_best_estimate_that_spends_each_nets_latency(
    tmp_path, tiny_supernet, fast_target
):
    """``--anchor``: each net measured on the target, and the first of its candidates (the
    best estimates within 80-97% of its latency) that measures no slower is delivered."""
    big = tmp_path / "largest.yaml"
    load_space(TINY_SPACE).max_arch.to_yaml(big)
    nets = (str(big), "mobilenet_v3_small_cifar")  # an arch of the space, a reference net
    run = tmp_path / "run"
    options = _quick_search(run, tiny_supernet, fast_target, trials=6, sampler="random", explore=4)
    summary = run_search(dataclasses.replace(options, anchors=nets), **QUIET)
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{run / 'study.db'}")
    searched = [
        (t.user_attrs["arch_hash"], t.user_attrs["val_acc"], t.user_attrs["latency_ms"])
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    ]
    delivered = set(pd.read_csv(run / "pareto.csv").arch_hash)
    assert [a["name"] for a in summary["anchors"]] == list(nets)
    for anchor in summary["anchors"]:
        ms = anchor["latency_ms"]
        assert ms > 0 and len(anchor["passes_ms"]) >= 3
        assert anchor["window_ms"] == pytest.approx([WINDOW[0] * ms, WINDOW[1] * ms])
        if anchor["arch_hash"] is not None:
            assert anchor["arch_hash"] in candidates(searched, ms)[:TRIES]
            assert anchor["arch_latency_ms"] <= ms and anchor["arch_hash"] in delivered
    # MobileNetV3-small is slower than every arch of the tiny space: an arch is delivered
    # (the largest arch's window fills with its explored neighbours, nearly as slow as it,
    # so whether one of them measures no slower end to end is up to the timing noise)
    assert summary["anchors"][1]["arch_hash"] is not None
    assert json.loads((run / "summary.json").read_text())["options"]["anchors"] == list(nets)

    # an anchor whose window held too few of the search's archs got trials of its own: the
    # neighbours of the best arch in its window (or the one nearest it) not yet evaluated
    space = load_space(TINY_SPACE)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    drawn = [t for t in trials if "explore" not in t.user_attrs]
    assert len(drawn) == 6
    seen = [
        (space.arch_from_params(t.params), t.user_attrs["val_acc"], t.user_attrs["latency_ms"])
        for t in drawn
    ]
    explored = 0
    for anchor in summary["anchors"]:
        plan = anchor["explored"]
        ms = anchor["latency_ms"]
        ran = {
            t.user_attrs["arch_hash"]
            for t in trials
            if t.user_attrs.get("explore") == anchor["name"]
        }
        if plan["from"] is None:
            assert plan["in_window"] >= EXPLORE_BELOW and not ran
            continue
        explored += 1
        assert plan["in_window"] < EXPLORE_BELOW and plan["trials"] == len(ran) > 0
        assert len(ran) <= 4  # --explore 4
        if explored == 1:  # the first explored anchor starts from the search's archs alone
            assert plan["from"] == explore_from(seen, ms).hash
            assert plan["in_window"] == sum(WINDOW[0] * ms <= x <= WINDOW[1] * ms for *_, x in seen)
        start = next(t for t in trials if t.user_attrs["arch_hash"] == plan["from"])
        neighbours = {a.hash for a in space.neighbours(space.arch_from_params(start.params))}
        assert ran <= neighbours and not ran & {a.hash for a, *_ in seen}
    assert explored  # 6 random trials leave a window nearly empty

    # resumed, the search runs no trial again
    again = run_search(dataclasses.replace(options, anchors=nets), **QUIET)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == len(trials)
    assert [a["explored"] for a in again["anchors"]] == [a["explored"] for a in summary["anchors"]]

    # killed mid-exploration, with --trials raised on resume: the waiting neighbour runs
    # first, then the search draws as many trials as --trials grew by (explorations do not
    # count towards it), and the stored plans add nothing
    held = {t.user_attrs["arch_hash"] for t in study.get_trials() if "arch_hash" in t.user_attrs}
    left = next(
        a
        for t in drawn
        for a in space.neighbours(space.arch_from_params(t.params))
        if a.hash not in held
    )
    study.enqueue_trial(
        {k: v for k, v in left.to_params().items() if k in space.searchable}, {"explore": nets[1]}
    )
    more = run_search(dataclasses.replace(options, anchors=nets, trials=8), **QUIET)
    after = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sum("explore" not in t.user_attrs for t in after) == 8
    assert more["trials"]["explored"] == len(after) - 8 == len(trials) - 6 + 1
    assert any(t.user_attrs["arch_hash"] == left.hash for t in after)
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))


def test_exploration_starts_from_the_best_estimate_in_the_window_or_the_arch_nearest_it():
    a, b, c, d = (load_space(TINY_SPACE).sample(i) for i in range(4))
    searched = [(a, 0.50, 10.0), (b, 0.40, 9.0), (c, 0.60, 5.0), (d, 0.70, 12.0)]
    assert explore_from(searched, 10.0) is b  # 8.0-9.7 ms holds b alone
    assert explore_from(searched, 11.0) is a  # a and b inside: the better estimate
    assert explore_from(searched, 7.0) is c  # 5.6-6.79 ms is empty: c is 1.12x under it
    assert explore_from(searched, 2.0) is c  # faster than every arch: the fastest
    assert explore_from(searched, 20.0) is d  # slower than every arch: the slowest
    assert explore_from([], 10.0) is None


def test_anchor_candidates_are_the_best_estimates_that_spend_most_of_the_latency():
    searched = [("a", 0.50, 10.0), ("b", 0.40, 9.0), ("c", 0.60, 5.0), ("d", 0.70, 12.0)]
    assert candidates(searched, 10.0) == ["b"]  # 8.0-9.7 ms: "a" measured over 97%
    assert candidates(searched, 11.0) == ["a", "b"]  # best estimate first
    assert candidates(searched, 7.0) == ["c"]  # none in 5.6-6.79 ms: the best below
    assert candidates(searched, 4.0) == []
    assert candidates(searched, 13.0) == ["d"]  # "a", "b" and "c" spend under 80% of it


def test_the_front_is_measured_round_by_round_the_targets_gap_apart():
    # every candidate once per round, rounds spread in time: a stretch of contention on a
    # shared host falls on one pass of several archs, not on every pass of one
    class Meter:
        target = HardwareTarget("t", "torch", pass_gap_s=0.05)

        def __init__(self) -> None:
            self.calls: list[tuple[str, int, float]] = []

        def measure_arch(self, arch: str, repeat: int = 0) -> Measurement:
            self.calls.append((arch, repeat, time.monotonic()))
            return Measurement(summarize([2.0] * 5), f"arch:{arch}", "t", cached=False)

    meter = Meter()
    got = measure_archs(meter, ["a", "b"], "front", progress=False)  # type: ignore[arg-type]
    assert [(a, r) for a, r, _ in meter.calls] == [(a, r) for r in range(3) for a in "ab"]
    starts = [t for a, _, t in meter.calls if a == "a"]
    assert all(later - earlier >= 0.05 for earlier, later in itertools.pairwise(starts))
    assert [s.latency_ms for s in got] == [2.0, 2.0]


def test_rivals_are_the_best_estimates_no_slower_than_each_front_arch():
    front = [("a", 1.0), ("b", 3.0)]
    trials = [
        ("a", 0.5, 1.0),
        ("b", 0.7, 3.0),
        ("c", 0.45, 0.9),  # under a: a's rival
        ("d", 0.6, 2.0),  # under b only, and b's best other estimate
        ("e", 0.65, 3.5),  # slower than every front arch: never
        ("f", 0.3, 0.8),
    ]
    assert rivals(front, trials, 1) == []
    assert rivals(front, trials, 2) == ["c", "d"]
    assert rivals(front, trials, 3) == ["c", "f", "d"]  # b's second would be c: taken
    assert rivals(front, trials, 9) == ["c", "f", "d"]
    with pytest.raises(ConfigError, match="shortlist must be >= 1"):
        FinalTraining(shortlist=0)
    assert FinalTraining(shortlist=3).slug() == FinalTraining().slug()


def test_a_run_without_a_finished_search_is_one_line(tmp_path, capsys):
    from nas.cli import run as run_cli

    assert run_cli(final_main, ["--run", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no finished search" in err[0]
