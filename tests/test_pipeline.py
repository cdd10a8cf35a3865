"""The end-to-end pipeline and the report it ends with, on a small real run."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from PIL import Image

from nas.arch import PRESETS
from nas.checkpoint import load_checkpoint, network_from_checkpoint
from nas.latency import HardwareTarget
from nas.models import ReferenceNet, load_network
from nas.pipeline import STAGES, load_pipeline, run_pipeline
from nas.pipeline.__main__ import main as pipeline_main
from nas.pipeline._run import start_archs
from nas.space import load_space
from reports import RESULT_COLUMNS, build_report
from reports.build import main as report_main
from tests.conftest import REPO, TINY_SPACE
from tests.helpers import call_cli, require

QUIET = {"progress": False, "log": lambda _: None}


def _config(root: Path) -> dict:
    torch_target = root / "fast-torch.yaml"
    ort_target = root / "fast-ort.yaml"
    for path, runtime in ((torch_target, "torch"), (ort_target, "onnxruntime")):
        HardwareTarget(path.stem, runtime, warmup=2, repeats=8, max_cv=0.5, retries=0).to_yaml(path)
    return {
        "name": "tiny-pipeline",
        "run": str(root / "run"),
        "data": {
            "source": "embedded",
            "train_per_class": 40,
            "val_per_class": 10,
            "test_per_class": 20,
        },
        "space": str(TINY_SPACE),
        "target": str(torch_target),
        "supernet": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 32},
        "search": {
            "latency_budget": "50ms",
            "trials": 3,
            "bn_batches": 1,
            "sampler": "random",
            "explore": 2,
        },
        "final": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 32},
        "baselines": {
            "models": ["shufflenet_v2_x0_5_cifar", "mobilenet_v3_small_cifar"],
            "train": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 32},
        },
        "prune": {"ratio": 0.3, "steps": 1, "finetune_epochs": 0, "models": 1},
        "quantize": {"calib_batches": 1, "variants": "gather-qdq-per-tensor"},
        "report": {"targets": [str(torch_target), str(ort_target)], "passes": 2},
    }


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(_config(root)))
    config = load_pipeline(path)
    record = run_pipeline(config, **QUIET)
    return config, record


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_the_report_matches_the_run(pipeline_run):
    config, record = pipeline_run
    run = config.run
    assert [record["stages"][s]["status"] for s in STAGES] == ["done"] * len(STAGES)
    for name in ("index.html", "report.md", "results.csv", "pareto.png"):
        assert (run / "report" / name).is_file(), name
    results = pd.read_csv(run / "report" / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert set(results.target) == {"fast-torch", "fast-ort"}
    for target in ("fast-torch", "fast-ort"):
        assert (run / "report" / f"pareto-{target}.png").is_file()

    # the searched front: the report's numbers are the run's
    front = pd.read_csv(run / "pareto.csv")
    assert set(front.training) == {"scratch, 1 epochs"}  # the final stage trained the front
    shown = results[results.role == "front"]
    for row in front.itertuples():
        mine = shown[shown.name == row.arch_hash]
        assert len(mine) == 2  # one row per target
        assert np.allclose(mine.val_acc, row.val_acc) and np.allclose(mine.test_acc, row.test_acc)
        assert (mine.flops == row.flops).all() and (mine.params == row.params).all()
    assert shown.groupby("target").pareto.any().all()  # each target has a front

    # baselines: metrics from their checkpoints, MobileNetV3 included
    baselines = results[results.role == "baseline"]
    assert set(baselines.name) == {"shufflenet_v2_x0_5_cifar", "mobilenet_v3_small_cifar"}
    for name in baselines.name.unique():
        payload = load_checkpoint(run / "baselines" / name / "model.pt", kind="model")
        got = baselines[baselines.name == name]
        assert np.allclose(got.val_acc, payload["metrics"]["val_acc"])
        assert np.allclose(got.test_acc, payload["metrics"]["test_acc"])

    # compressed variants: linked to their parent; int8 ONNX only on the ONNX Runtime target
    pruned = results[results.role == "pruned"]
    assert len(pruned) == 2 and pruned.parent.isin(front.arch_hash).all()
    int8 = results[results.role.isin(["int8", "pruned+int8"])]
    assert set(int8.target) == {"fast-ort"} and len(int8) == 2
    for row in results[results.parent.notna()].itertuples():
        parent = results[
            (results.target == row.target)
            & (results.role == "front")
            & (results.name == row.parent)
        ].iloc[0]
        assert row.speedup_vs_parent == pytest.approx(parent.latency_ms / row.latency_ms)
    assert (results.latency_ms > 0).all()
    assert (results.latency_min_ms <= results.latency_ms).all()
    assert (results.latency_ms <= results.latency_max_ms).all()

    text = (run / "report" / "report.md").read_text()
    # the report leads with the answer: each baseline against the trained front, per target
    assert text.split("\n## ")[1].startswith("The answer")
    assert "(front models: final training, scratch, 1 epochs)" in text
    for target in ("fast-torch", "fast-ort"):
        assert f"**{target}: each baseline against the front**" in text
    # ... and against what the run delivers: the front with its pruned and int8 forms
    for target in ("fast-torch", "fast-ort"):
        line = r"Counting the front's pruned and int8 forms, the models this run delivers "
        assert re.search(line + rf"beat \d of \d on `{target}`\.", text)
        assert f"**{target}: each baseline against the front and its pruned and int8" in text
    for heading in ("Search", "Targets compared", "FLOPs vs measured latency", "Compression"):
        assert f"## {heading}" in text
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['trials']['complete']} / {summary['trials']['feasible']}" in text

    # the search began with the space's smallest arch (the tiny space holds no baseline)
    study = optuna.load_study(study_name=config.name, storage=f"sqlite:///{run / 'study.db'}")
    assert study.trials[0].user_attrs["arch_hash"] == load_space(TINY_SPACE).min_arch.hash
    # ... and delivered, per baseline, its best estimate at that baseline's latency
    assert tuple(a["name"] for a in summary["anchors"]) == tuple(config.baselines.models)
    # the config's explore: 2 caps each anchor's extra trials
    for anchor in summary["anchors"]:
        ran = [t for t in study.trials if t.user_attrs.get("explore") == anchor["name"]]
        assert len(ran) == anchor["explored"].get("trials", 0) <= 2
    assert any(a["explored"]["from"] for a in summary["anchors"])  # one window nearly empty
    assert summary["trials"]["explored"] == sum("explore" in t.user_attrs for t in study.trials)


@pytest.mark.slow
def test_a_second_run_skips_finished_stages_and_redoes_missing_ones(pipeline_run):
    config, _ = pipeline_run
    run = config.run
    record = run_pipeline(config, **QUIET)
    assert all(record["stages"][s]["status"].startswith("skipped") for s in STAGES)

    # a stage whose output is gone runs again, and the report after it
    quantized = sorted((run / "compress").glob("*/int8/quantize.json"))
    assert quantized
    quantized[0].unlink()
    record = run_pipeline(config, **QUIET)
    status = {s: record["stages"][s]["status"] for s in STAGES}
    assert status["quantize"] == "done" and status["report"] == "done"
    assert all(status[s].startswith("skipped") for s in ("supernet", "search", "baselines"))

    # a latency goal out of reach (1 us: no net runs that fast on torch eager, however
    # thin, whatever the noise): that model is left unpruned with the reason on record,
    # and the stages after it still run
    (folder,) = [p.parent for p in (run / "compress").glob("*/pruned.json")]
    shutil.rmtree(folder / "pruned-int8", ignore_errors=True)
    for done in ("pruned.json", "pruned.pt", "pruned.not-faster.pt"):
        (folder / done).unlink(missing_ok=True)
    assert config.prune is not None
    prune = dataclasses.replace(config.prune, latency="1us", max_removed=0.2)
    (run / "pipeline.json").unlink()  # the record refuses other settings in its run folder
    record = run_pipeline(dataclasses.replace(config, prune=prune), **QUIET)
    status = {s: record["stages"][s]["status"] for s in STAGES}
    assert status["prune"] == "done" and status["report"] == "done"
    why = (folder / "pruned.out-of-reach.txt").read_text()
    assert "--latency 0.001ms is out of reach on fast-torch" in why and "--max-removed 0.2" in why
    assert not (folder / "pruned.pt").exists()
    results = pd.read_csv(run / "report" / "results.csv")
    assert not results.role.isin(["pruned", "pruned+int8"]).any()


@pytest.mark.slow
def test_report_loads_in_headless_chromium(pipeline_run, tmp_path):
    config, _ = pipeline_run
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    require(None if browser else "chromium is not installed (.ci/run installs Debian's chromium)")
    assert browser is not None
    report = tmp_path / "report"
    shutil.copytree(config.run / "report", report)
    # A probe copy of the page reports, once loaded, how many images decoded.
    page = (report / "index.html").read_text()
    probe = (
        "<script>window.addEventListener('load', () => { const imgs = [...document.images]; "
        "document.title = 'loaded ' + imgs.filter(i => i.complete && i.naturalWidth > 0)"
        ".length + '/' + imgs.length; });</script>"
    )
    (report / "probe.html").write_text(page.replace("</body>", probe + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(
        [
            browser,
            *flags,
            "--virtual-time-budget=5000",
            "--dump-dom",
            (report / "probe.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    images = page.count("<img ")
    assert images >= 3
    assert f"<title>loaded {images}/{images}</title>" in dom.stdout, dom.stderr[-2000:]

    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            *flags,
            "--window-size=1280,2000",
            f"--screenshot={shot}",
            (report / "index.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2000, 1280) and pixels.std() > 10  # not a blank page


def test_pipeline_config_errors_are_one_line(tmp_path, capsys):
    good = _config(tmp_path)
    cases = [
        ("name: [unclosed", "malformed YAML"),
        (yaml.safe_dump({**good, "surprise": 1}), "unknown section 'surprise'"),
        (yaml.safe_dump({**good, "search": {"latency_budget": "25"}}), "search.latency_budget"),
        (yaml.safe_dump({**good, "prune": {"ratio": 0.3, "speed": 2}}), "prune.speed"),
        (yaml.safe_dump({**good, "search": {"explore": -1}}), "search: explore must be"),
        (yaml.safe_dump({**good, "baselines": {"models": ["resnet9000"]}}), "resnet9000"),
    ]
    for text, message in cases:
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        code, _, err = call_cli(pipeline_main, ["--config", path], capsys)
        assert code == 2, text
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_a_record_from_before_a_setting_existed_still_resumes(tmp_path):
    """A run recorded before a setting was added (here final.shortlist) resumes while the
    setting is at its default; another value, or a changed setting, is refused."""
    from nas import ConfigError
    from nas.pipeline._run import _load_record, _save_record

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path)))
    config = load_pipeline(path)
    config.run.mkdir(parents=True)
    record = _load_record(config.run, config)
    del record["config"]["final"]["shortlist"]
    _save_record(config.run, record)
    assert _load_record(config.run, config)["config"] == record["config"]
    assert config.final is not None
    for changed in (
        dataclasses.replace(config, final=dataclasses.replace(config.final, shortlist=2)),
        dataclasses.replace(config, final=dataclasses.replace(config.final, epochs=2)),
    ):
        with pytest.raises(ConfigError, match="holds a pipeline run with other settings"):
            _load_record(config.run, changed)


def test_report_needs_a_finished_search(tmp_path, capsys):
    code, _, err = call_cli(report_main, ["--run", tmp_path / "nope"], capsys)
    assert code == 2 and "run directory not found" in err
    (tmp_path / "empty").mkdir()
    code, _, err = call_cli(report_main, ["--run", tmp_path / "empty"], capsys)
    assert code == 2 and "no finished search" in err
    with pytest.raises(Exception, match="no finished search"):
        build_report(tmp_path / "empty", **QUIET)


@pytest.mark.parametrize("name", ["mobilenet_v3_small_cifar", "mobilenet_v3_large_cifar"])
def test_reference_networks_build_and_round_trip(tmp_path, name):
    import torch

    net = load_network(name)
    assert isinstance(net, ReferenceNet) and net.resolution == 32
    assert ReferenceNet.from_dict(net.to_dict()) == net
    model = net.build().eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    from nas.checkpoint import save_checkpoint

    path = save_checkpoint(
        tmp_path / "m.pt",
        {"kind": "model", "network": net.to_dict(), "state_dict": model.state_dict()},
    )
    again = network_from_checkpoint(load_checkpoint(path, kind="model"))
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(again(x), model(x))
    with pytest.raises(Exception, match="unknown arch 'resnet9000'"):
        load_network("resnet9000")


def test_every_reference_network_builds_at_its_default_size():
    import torch

    from nas.models import REFERENCE_NETS

    for name in REFERENCE_NETS:
        net = ReferenceNet.named(name)
        model = net.build().eval()
        size = min(net.resolution, 64)  # the ImageNet stems, at a size CI affords
        with torch.no_grad():
            out = model(torch.zeros(1, net.in_channels, size, size))
        assert out.shape == (1, net.num_classes), name
        if name.endswith("_cifar"):  # stride-1 stem: 32 px reaches the head at 2x2, not 1x1
            assert model.features[0][0].stride == (1, 1), name


def test_shipped_pipelines_parse():
    for path in sorted((REPO / "examples").glob("pipeline*.yaml")):
        config = load_pipeline(path)
        assert config.search.budget_ms > 0, path


def test_the_search_starts_from_the_smallest_arch_and_the_baselines_the_space_holds():
    config = load_pipeline(REPO / "examples" / "pipeline-cifar10-cpu-ort.yaml")
    assert config.baselines is not None
    assert "mobilenet_v3_small_cifar" in config.baselines.models  # not a ShuffleNet arch
    space = load_space(config.space)
    assert [a.hash for a in start_archs(config)] == [
        space.min_arch.hash,
        PRESETS["shufflenet_v2_x0_5_cifar"].hash,
        PRESETS["shufflenet_v2_x1_0_cifar"].hash,
    ]
    assert start_archs(dataclasses.replace(config, baselines=None)) == (space.min_arch,)


def test_a_briefly_trained_reference_network_evaluates_like_it_trains(tmp_path):
    """MobileNetV3's BatchNorm statistics must keep up with a short schedule: evaluated in
    eval mode it is far above chance on learnable data (torchvision's momentum 0.01 left
    it at chance after 4 epochs)."""
    from nas.data import load_data
    from nas.train import TrainConfig, train

    metrics = train(
        load_network("mobilenet_v3_small_cifar"),
        load_data("synthetic:classes=4,train=96,test=16"),
        TrainConfig(epochs=4, batch_size=16, lr=0.05),
        tmp_path,
        device="cpu",
        progress=False,
        log=lambda _: None,
    )
    assert metrics["val_acc"] > 0.5 and metrics["test_acc"] > 0.5, metrics


_CLOCKED = """
import json, sys, time
from functools import partial
from pathlib import Path
from nas.io import write_json_atomic
from nas.pipeline._clock import timed_attempt

path = Path(sys.argv[1])
record = json.loads(path.read_text())
entry = record["stages"].setdefault("supernet", {"seconds": 0.0})
with timed_attempt(entry, partial(write_json_atomic, path, record), every=0.05):
    print("running", flush=True)
    time.sleep(600)
"""


def test_a_killed_stage_attempt_keeps_its_time_for_the_resume(tmp_path):
    """kill -9 in the middle of a stage: the next attempt adds the dead one's seconds (up
    to its last heartbeat) instead of losing them."""
    from nas.pipeline._clock import timed_attempt

    record_path = tmp_path / "pipeline.json"
    record_path.write_text(json.dumps({"stages": {}}))
    child = subprocess.Popen(
        [sys.executable, "-c", _CLOCKED, str(record_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "running"
    time.sleep(1.0)
    child.kill()  # SIGKILL: no finally, no atexit
    child.wait(timeout=30)
    record = json.loads(record_path.read_text())
    dead = record["stages"]["supernet"]["running_seconds"]
    assert 0.7 <= dead <= 1.5  # within a heartbeat or two of the 1 s it ran
    entry = record["stages"]["supernet"]
    with timed_attempt(entry, lambda: None, every=60):
        time.sleep(0.2)
    assert entry["seconds"] == pytest.approx(dead)  # folded in once, at the resume
    assert entry["interrupted_attempts"] == 1
    assert entry["running_seconds"] == pytest.approx(0.2, abs=0.15)  # this attempt, kept apart
    assert entry["machines"] and all(isinstance(m, str) for m in entry["machines"])


def test_a_failed_stage_attempt_is_counted_by_the_next_one():
    from nas.pipeline._clock import timed_attempt

    entry: dict = {}
    saved = []
    with pytest.raises(KeyboardInterrupt), timed_attempt(entry, lambda: saved.append(1)):
        time.sleep(0.1)
        raise KeyboardInterrupt
    assert entry["running_seconds"] >= 0.1 and len(saved) == 2  # at the start, at the end
    first = entry["running_seconds"]
    with timed_attempt(entry, lambda: None):
        pass
    assert entry["seconds"] == pytest.approx(first) and entry["interrupted_attempts"] == 1
