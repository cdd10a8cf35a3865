from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request

import optuna
import pandas as pd
import pytest

from nas import ArchConfig, load_space
from nas.checkpoint import load_checkpoint, model_from_checkpoint
from nas.data import DataSpec, load_data
from nas.search import SearchOptions, dominates, hypervolume, pareto_front, run_search
from nas.train import evaluate, loader_for

from . import postgres
from .conftest import REPO, TINY_SPACE
from .helpers import require

# -- pure functions ------------------------------------------------------------------------


def _brute_front(points):
    return sorted(
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p) for j, q in enumerate(points) if j != i)
    )


def test_pareto_front_matches_brute_force():
    rng = random.Random(0)
    for _ in range(50):
        points = [
            (rng.choice([0.1, 0.2, 0.3, 0.4]), rng.choice([1.0, 2.0, 3.0]))
            for _ in range(rng.randint(1, 12))
        ]
        assert sorted(pareto_front(points)) == _brute_front(points)
    assert pareto_front([(0.5, 2.0), (0.6, 1.0), (0.4, 3.0)]) == [1]


def _brute_hypervolume(points, max_latency):
    xs = sorted({t for _, t in points if t < max_latency} | {max_latency})
    area = 0.0
    for lo, hi in itertools.pairwise(xs):
        top = max([a for a, t in points if t <= lo] + [0.0])
        area += top * (hi - lo)
    return area


def test_hypervolume_matches_brute_force():
    rng = random.Random(1)
    for _ in range(50):
        points = [(rng.random(), rng.uniform(1, 30)) for _ in range(rng.randint(1, 10))]
        assert hypervolume(points, 25.0) == pytest.approx(_brute_hypervolume(points, 25.0))
    assert hypervolume([(0.5, 10.0)], 20.0) == pytest.approx(5.0)
    assert hypervolume([(0.5, 30.0)], 20.0) == 0.0
    assert hypervolume([], 20.0) == 0.0


# -- fixtures ------------------------------------------------------------------------------


def _options(tmp_path, supernet, target, **kw) -> SearchOptions:
    base = dict(
        latency_budget_ms=50.0,
        target=str(target),
        supernet=supernet,
        trials=5,
        run=tmp_path / "run",
        progress=False,
        bn_batches=1,
    )
    return SearchOptions(**{**base, **kw})


QUIET = {"log": lambda _: None}


# -- the search ----------------------------------------------------------------------------


@pytest.mark.slow
def test_search_writes_a_front_within_the_budget(tmp_path, tiny_supernet, fast_target):
    summary = run_search(_options(tmp_path, tiny_supernet, fast_target, trials=6), **QUIET)
    run = tmp_path / "run"
    front = pd.read_csv(run / "pareto.csv")
    assert len(front) >= 1 and summary["front_size"] == len(front)
    assert (front.latency_ms <= 50.0).all()
    data = load_data(DataSpec("embedded"))
    for row in front.itertuples():
        arch = ArchConfig.from_yaml(run / "archs" / f"{row.arch_hash}.yaml")
        payload = load_checkpoint(run / row.checkpoint, kind="model")
        model = model_from_checkpoint(payload)
        assert model.arch == arch and arch.hash == row.arch_hash
        acc = evaluate(model, loader_for(data.val, data, arch, 256, "cpu"))["acc"]
        assert acc == pytest.approx(row.val_acc)
        assert payload["source"]["trial"] == row.trial
    study = optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{run / 'study.db'}")
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 6
    for t in trials:
        assert {"arch_hash", "val_acc", "latency_ms", "flops", "params"} <= set(t.user_attrs)
        assert t.system_attrs["constraints:budget"] == pytest.approx(t.values[1] - 50.0)
    assert summary["trials"]["complete"] == 6 and summary["hypervolume"] > 0
    # every arch of the tiny space runs far under 50 ms: the user is told the budget is idle
    assert summary["space_latency_ms"]["max_arch"] < 50.0
    assert "admits the whole space" in summary["budget_warning"]
    assert json.loads((run / "summary.json").read_text())["study"] == summary["study"]
    # Rerunning the same options continues the study to the new trial count.
    again = run_search(_options(tmp_path, tiny_supernet, fast_target, trials=8), **QUIET)
    assert again["trials"]["complete"] == 8
    resumed = optuna.load_study(
        study_name=summary["study"], storage=f"sqlite:///{run / 'study.db'}"
    )
    before = {t.number: t.values for t in trials}
    after = {
        t.number: t.values for t in resumed.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    }
    assert all(after[n] == v for n, v in before.items())


@pytest.mark.slow
def test_budget_splits_the_space_and_infeasible_trials_stay_recorded(
    tmp_path, tiny_supernet, fast_target
):
    # The readings the search itself will see (cached, first repeat) of the two extreme
    # archs, both enqueued, and a budget halfway between them: one trial is over it and one
    # under it whichever way the noise of a busy machine orders the two readings.
    from nas.latency import LatencyMeter, load_target

    space = load_space(TINY_SPACE)
    with LatencyMeter(load_target(fast_target)) as meter:
        readings = [meter.measure_arch(a).median_ms for a in (space.min_arch, space.max_arch)]
    assert readings[0] != readings[1]
    budget = sum(readings) / 2
    summary = run_search(
        _options(
            tmp_path,
            tiny_supernet,
            fast_target,
            trials=10,
            latency_budget_ms=budget,
            sampler="random",
            start_archs=(space.max_arch, space.min_arch),
        ),
        **QUIET,
    )
    front = pd.read_csv(tmp_path / "run" / "pareto.csv")
    assert len(front) >= 1 and (front.latency_ms <= budget).all()
    study = optuna.load_study(
        study_name=summary["study"], storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}"
    )
    assert [t.values[1] for t in study.trials[:2]] == pytest.approx(readings[::-1])
    over = [t for t in study.trials if t.values and t.values[1] > budget]
    assert over, "expected some trials over the budget"
    assert all(t.number not in {b.number for b in study.best_trials} for t in over)
    assert summary["feasible_share"] < 1.0
    if readings[0] < readings[1]:  # the budget cuts the space: nothing to warn of
        assert "budget_warning" not in summary
    else:  # a busy machine read the smallest arch slower than the largest: it says so
        assert "no arch of the space fits" in summary["budget_warning"]
    assert list(summary["space_latency_ms"].values()) == pytest.approx(readings)


@pytest.mark.slow
def test_a_repeated_arch_reuses_its_result(tmp_path, tiny_supernet, fast_target):
    space = load_space(TINY_SPACE)
    options = _options(tmp_path, tiny_supernet, fast_target, trials=2, study_name="twice")
    storage = f"sqlite:///{(tmp_path / 'run').resolve() / 'study.db'}"
    (tmp_path / "run").mkdir()
    study = optuna.create_study(
        study_name="twice", storage=storage, directions=["maximize", "minimize"]
    )
    params = {k: v for k, v in space.sample(7).to_params().items() if k in space.searchable}
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    summary = run_search(options, **QUIET)
    trials = optuna.load_study(study_name="twice", storage=storage).trials
    assert trials[1].user_attrs["reused_from"] == 0
    assert trials[1].values == trials[0].values
    assert summary["trials"]["reused"] == 1


@pytest.mark.slow
def test_flops_proxy_translates_the_budget(tmp_path, tiny_supernet, fast_target):
    low, high = _extremes(fast_target)
    budget = low + 0.8 * (high - low)  # far from the smallest arch, even on a busy machine
    summary = run_search(
        _options(
            tmp_path, tiny_supernet, fast_target, trials=5, proxy="flops", latency_budget_ms=budget
        ),
        **QUIET,
    )
    assert summary["proxy"] == "flops"
    assert summary["proxy_budget"] == pytest.approx(summary["flops_budget"]["mflops"])
    assert summary["flops_budget"]["latency_ms"] <= budget
    if summary["front_size"]:
        front = pd.read_csv(tmp_path / "run" / "pareto.csv")
        assert (front.latency_ms <= budget).all()  # measured, whatever the proxy said


def _extremes(target_path):
    """Measured latency of the tiny space's smallest and largest archs.

    ``low`` is the cached reading the search itself will see for the smallest arch. On a busy
    machine (xdist workers share two cores) one reading of the largest arch can come out below
    it, which would put the budget under every arch; the largest is then read again, under its
    own cache key, and the slowest reading kept.
    """
    from nas.latency import LatencyMeter, load_target

    space = load_space(TINY_SPACE)
    with LatencyMeter(load_target(target_path)) as meter:
        low = meter.measure_arch(space.min_arch).median_ms
        high = 0.0
        for repeat in range(4):
            high = max(high, meter.measure_arch(space.max_arch, repeat=repeat).median_ms)
            if high > 1.3 * low:
                break
    return low, max(high, 1.3 * low)


# -- command line: errors, kill -9, workers, dashboard ---------------------------------


def _cli(*args, env=None, **kw):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "nas.search", *args],
        cwd=kw.pop("cwd", REPO),
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--latency-budget", "25"], "has no unit"),
        (["--latency-budget", "-3ms"], "is negative"),
        (["--latency-budget", "fast"], "is not a duration"),
        (["--latency-budget", "25ms", "--target", "tpu"], "unknown hardware target 'tpu'"),
        (["--latency-budget", "25ms", "--space", "nope"], "unknown search space 'nope'"),
        (["--latency-budget", "25ms", "--proxy", "guess"], "unknown proxy 'guess'"),
        (["--latency-budget", "25ms", "--supernet", "missing.pt"], "checkpoint not found"),
        (
            ["--latency-budget", "25ms", "--start-arch", "shufflenet_v2_x1_0"],
            "start arch shufflenet_v2_x1_0: arch",
        ),
        (["--latency-budget", "25ms", "--anchor", "resnet18"], "unknown arch 'resnet18'"),
        (["--latency-budget", "25ms", "--explore", "-1"], "--explore must be >= 0"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    proc = _cli(*args, "--run", str(tmp_path / "run"), cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_supernet_of_another_space_is_refused(tmp_path, tiny_supernet):
    proc = _cli(
        "--latency-budget",
        "25ms",
        "--supernet",
        str(tiny_supernet),
        "--space",
        "shufflenetv2_cifar",
        "--run",
        str(tmp_path / "run"),
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "was trained for space 'tiny'" in err
    assert not (tmp_path / "run").exists()


def test_a_supernet_is_searched_on_its_own_images_and_split_only(tmp_path, tiny_supernet):
    """The validation split must not overlap what the supernet trained on: another split
    of its data is refused, and so are other images under split settings that match; the
    same images under another spelling of their source are not refused."""
    from nas import ConfigError

    options = SearchOptions(
        latency_budget_ms=50.0, supernet=tiny_supernet, trials=1, run=tmp_path / "run",
        progress=False, bn_batches=1,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="with another split"):
        run_search(dataclasses.replace(options, data=DataSpec("embedded", split_seed=1)))
    with pytest.raises(ConfigError, match="trained on other images than"):
        run_search(dataclasses.replace(options, data=DataSpec("synthetic:classes=10")))
    assert not (tmp_path / "run").exists()
    from nas.data import embedded_archive

    same = DataSpec(str(embedded_archive()), test_per_class=5)  # the shipped file by path
    assert load_data(same).info["cache_key"] == load_data(DataSpec("embedded")).info["cache_key"]


def test_unreachable_storage_fails_fast(tmp_path, tiny_supernet):
    start = time.monotonic()
    proc = _cli(
        "--latency-budget",
        "25ms",
        "--supernet",
        str(tiny_supernet),
        "--storage",
        "postgresql+psycopg://nas:secret@127.0.0.1:1/optuna",
        "--run",
        str(tmp_path / "run"),
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.startswith("error: cannot open storage")
    assert "secret" not in err and err.count("\n") == 1
    assert time.monotonic() - start < 60 and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_other_settings_leave_the_study_untouched(tmp_path, tiny_supernet, fast_target):
    run_search(_options(tmp_path, tiny_supernet, fast_target, trials=2, study_name="s"), **QUIET)
    db = tmp_path / "run" / "study.db"
    before = db.read_bytes()
    proc = _cli(
        "--latency-budget",
        "30ms",
        "--target",
        str(fast_target),
        "--supernet",
        str(tiny_supernet),
        "--study-name",
        "s",
        "--run",
        str(tmp_path / "run"),
    )
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 2 and "budget_ms" in err and "new --study-name" in err
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2 and len(before) > 0


def _complete_trials(db):
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT number FROM trials WHERE state = 'COMPLETE'").fetchall()
        except sqlite3.OperationalError:
            return []


@pytest.mark.slow
def test_kill_9_loses_no_completed_trial(tmp_path, tiny_supernet, fast_target):
    args = [
        "--latency-budget",
        "50ms",
        "--target",
        str(fast_target),
        "--supernet",
        str(tiny_supernet),
        "--run",
        str(tmp_path / "run"),
        "--bn-batches",
        "1",
        "--no-progress",
        "--final-epochs",
        "0",
        "--study-name",
        "k",
    ]
    proc = _cli(*args, "--trials", "200")
    db = tmp_path / "run" / "study.db"
    deadline = time.monotonic() + 180
    while len(_complete_trials(db)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{db}")
    done = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
    assert len(done) >= 3
    resumed = _cli(*args, "--trials", str(len(done) + 2))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"{len(done)} trials already complete" in out
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{db}")
    after = {t.number: t.values for t in study.trials if t.state.name == "COMPLETE"}
    assert len(after) == len(done) + 2
    assert all(after[n] == v for n, v in done.items())


@pytest.mark.slow
def test_postgresql_workers_share_a_study_and_retry_a_dead_workers_trial(
    tmp_path, tiny_supernet, fast_target
):
    require(postgres.unavailable())
    with postgres.postgres_server() as url:
        args = [
            "--latency-budget",
            "50ms",
            "--target",
            str(fast_target),
            "--supernet",
            str(tiny_supernet),
            "--storage",
            url,
            "--study-name",
            "shared",
            "--bn-batches",
            "1",
            "--no-progress",
            "--final-epochs",
            "0",
            "--trials",
            "14",
        ]
        env = {"NAS_STORAGE_HEARTBEAT": "1,4"}
        a = _cli(*args, "--run", str(tmp_path / "a"), env=env)
        b = _cli(*args, "--run", str(tmp_path / "b"), env=env)
        storage = optuna.storages.RDBStorage(url)
        deadline = time.monotonic() + 180
        running_of_a: list[int] = []
        while not running_of_a and time.monotonic() < deadline:  # kill A in mid-trial
            try:
                study = optuna.load_study(study_name="shared", storage=storage)
                running_of_a = [
                    t.number
                    for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                    if t.user_attrs.get("worker", "").endswith(f":{a.pid}")
                ]
            except KeyError:
                pass
            time.sleep(0.05)
        assert running_of_a, "worker A never ran a trial"
        a.send_signal(signal.SIGKILL)
        a.wait()
        _, err = b.communicate(timeout=400)
        assert b.returncode == 0, err
        study = optuna.load_study(study_name="shared", storage=storage)
        complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
        assert len(complete) >= 14
        numbers = [t.number for t in study.trials]
        assert len(numbers) == len(set(numbers))
        states = [
            (t.number, t.state.name, t.user_attrs.get("worker"), t.system_attrs.get("failed_trial"))
            for t in study.trials
        ]
        # the killed worker's trial was failed by heartbeat and re-run by the live worker
        assert [f.number for f in failed] == running_of_a, states
        retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == running_of_a[0]]
        assert len(retry) == 1 and retry[0].state.name == "COMPLETE", states
        # killed mid-suggestion, the failed trial may hold only some params: the retry keeps
        # those and samples the rest
        assert failed[0].params.items() <= retry[0].params.items()
        assert all(t.state.name in ("COMPLETE", "FAIL") for t in study.trials), states


def test_study_opens_in_optuna_dashboard(tmp_path, tiny_supernet, fast_target):
    run_search(_options(tmp_path, tiny_supernet, fast_target, trials=2, study_name="dash"), **QUIET)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dashboard = os.path.join(os.path.dirname(sys.executable), "optuna-dashboard")
    proc = subprocess.Popen(
        [
            dashboard,
            f"sqlite:///{tmp_path / 'run' / 'study.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    studies = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        names = [s["study_name"] for s in studies["study_summaries"]]
        assert "dash" in names
        study_id = studies["study_summaries"][names.index("dash")]["study_id"]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/studies/{study_id}", timeout=10
        ) as r:
            detail = json.loads(r.read())
        assert len(detail["trials"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_main_command_end_to_end(tmp_path, fast_target):
    """The CLI as a user runs it: trains its own supernet on the embedded data, searches,
    measures the front, trains it (its default) and exports it (tiny space, trial count
    and final schedule to fit CI)."""
    proc = _cli(
        "--latency-budget",
        "50ms",
        "--space",
        str(TINY_SPACE),
        "--target",
        str(fast_target),
        "--trials",
        "4",
        "--supernet-epochs",
        "1",
        "--bn-batches",
        "1",
        "--final-steps-per-epoch",
        "2",
        "--final-epochs",
        "1",
        "--no-progress",
        cwd=tmp_path,
    )
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "training one on embedded" in out and "Pareto front" in out
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and runs[0].name == "tiny-fast-torch-50ms"
    run = runs[0]
    front = pd.read_csv(run / "pareto.csv")
    assert len(front) >= 1 and (front.latency_ms <= 50.0).all()
    assert (front.training == "scratch, 1 epochs").all()
    assert (run / "supernet" / "supernet.pt").exists() and (run / "study.db").exists()
    for row in front.itertuples():
        model_from_checkpoint(load_checkpoint(run / row.checkpoint, kind="model"))
        ArchConfig.from_yaml(run / "archs" / f"{row.arch_hash}.yaml")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["trials"]["complete"] == 4 and summary["front_size"] == len(front)
    assert summary["data"]["counts"] == {"train": 4500, "val": 500, "test": 1000}


def test_the_command_final_trains_its_front_unless_told_not_to(monkeypatch):
    import nas.search
    from nas.final import FinalTraining
    from nas.search.__main__ import main

    seen = []
    monkeypatch.setattr(nas.search, "run_search", seen.append)
    assert main(["--latency-budget", "25ms"]) == 0
    assert main(["--latency-budget", "25ms", "--final-epochs", "0"]) == 0
    assert main(["--latency-budget", "25ms", "--final-init", "inherit"]) == 0
    assert seen[0].final == FinalTraining(epochs=15, init="scratch")
    assert seen[1].final is None
    assert seen[2].final == FinalTraining(epochs=15, init="inherit")


def test_a_chance_level_supernet_is_called_out():
    from nas.search._summary import chance_warning

    rows = [{"val_acc_supernet": 0.12}, {"val_acc_supernet": 0.09}]
    warning = chance_warning(rows, num_classes=10)
    assert warning and "near chance (0.100)" in warning and "0.120" in warning
    assert chance_warning([{"val_acc_supernet": 0.31}], num_classes=10) is None
    assert chance_warning([], num_classes=10) is None
