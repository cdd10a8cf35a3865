from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nas import CheckpointError, ConfigError, load_space, preset
from nas.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    supernet_from_checkpoint,
)
from nas.data import load_data
from nas.models import SUPERNET_LAYOUT
from nas.train import STATE, TrainConfig, evaluate, loader_for, lr_at, recalibrate_bn, train

from .conftest import REPO, TINY_SPACE

QUIET = {"progress": False, "log": lambda _: None}
SYNTHETIC = "synthetic:classes=4,train=96,test=8"  # learnable in a few dozen steps


@pytest.mark.parametrize("total", [10, 97])
def test_onecycle_matches_torch(total):
    config = TrainConfig(lr=0.1, warmup=0.15)
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=0.1, total_steps=total, pct_start=0.15, cycle_momentum=False
    )
    for step in range(total):
        assert lr_at(step, total, config) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6)
        opt.step()
        sched.step()


def test_cosine_schedule_warms_up_then_decays():
    config = TrainConfig(lr=0.2, schedule="cosine", warmup=0.1)
    lrs = [lr_at(s, 100, config) for s in range(100)]
    assert lrs[0] == pytest.approx(0.02) and max(lrs) == pytest.approx(0.2)
    assert lrs[-1] < 0.001 and all(a >= b for a, b in itertools.pairwise(lrs[10:]))


def test_bn_recalibration_matches_the_data():
    data = load_data("synthetic")
    arch = preset("shufflenet_v2_x0_5_cifar")
    from nas import ShuffleNetV2

    model = ShuffleNetV2(arch).eval()
    batches = list(loader_for(data.train, data, arch, 64, "cpu"))[:3]
    recalibrate_bn(model, batches, num_batches=3)
    assert not model.training  # the mode is kept
    with torch.no_grad():
        stem = [model.conv1[0](x) for x, _ in batches]
    expected = torch.stack([s.mean((0, 2, 3)) for s in stem]).mean(0)
    torch.testing.assert_close(model.conv1[1].running_mean, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_standalone_training_learns_and_checkpoints_safely(tmp_path):
    data = load_data(SYNTHETIC)
    arch = preset("shufflenet_v2_x0_5_cifar", num_classes=10)  # adapted to the 4 classes
    config = TrainConfig(epochs=4, batch_size=16, lr=0.05)
    metrics = train(arch, data, config, tmp_path, **QUIET)
    assert metrics["val_acc"] > 0.8 and metrics["test_acc"] > 0.8  # chance is 0.25
    payload = load_checkpoint(tmp_path / "model.pt", kind="model")
    assert payload["arch"]["num_classes"] == 4 and payload["data"]["counts"]["train"] == 344
    assert payload["train"]["epochs"] == 4 and "torch" in payload["versions"]
    model = model_from_checkpoint(payload)
    again = evaluate(model, loader_for(data.val, data, model.arch, 64, "cpu"))
    assert again["acc"] == pytest.approx(metrics["val_acc"])
    assert not (tmp_path / STATE).exists()
    lines = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert len(lines) == 4 and '"img_per_s"' in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "epochs"), [("sandwich", 4), ("spos", 12)])
def test_supernet_training_on_synthetic(tmp_path, strategy, epochs):
    # spos trains one sub-net per step, sandwich four: similar work in total
    data = load_data(SYNTHETIC)
    config = TrainConfig(
        epochs=epochs, batch_size=16, lr=0.05, strategy=strategy, bn_batches=2, eval_every=epochs
    )
    metrics = train(load_space(TINY_SPACE), data, config, tmp_path, **QUIET)
    assert metrics["val_acc_max"] > 0.7 and metrics["val_acc_min"] > 0.7  # chance is 0.25
    payload = load_checkpoint(tmp_path / "supernet.pt", kind="supernet")
    assert payload["supernet_layout"] == SUPERNET_LAYOUT
    net = supernet_from_checkpoint(payload)
    assert net.space.fixed["num_classes"] == 4


@pytest.mark.slow
def test_supernet_on_embedded_data_beats_chance(tmp_path):
    """The issue's check: short CPU training on the embedded CIFAR subset (single-path:
    a quarter of sandwich's cost per step, which CI's time needs)."""
    data = load_data("embedded")
    config = TrainConfig(
        epochs=6, batch_size=64, lr=0.2, bn_batches=4, strategy="spos", eval_every=6
    )
    metrics = train(load_space(TINY_SPACE), data, config, tmp_path, **QUIET)
    assert metrics["val_acc_max"] > 0.25 and metrics["val_acc_min"] > 0.2  # chance: 0.10


def test_existing_run_needs_resume_and_finished_run_is_kept(tmp_path):
    data = load_data("synthetic:classes=2,train=16,test=4")
    arch = preset("shufflenet_v2_x0_5_cifar")
    save_checkpoint(tmp_path / STATE, {"kind": "model", "arch": arch.to_dict()})
    with pytest.raises(ConfigError, match="pass --resume"):
        train(arch, data, TrainConfig(epochs=1, batch_size=8), tmp_path, **QUIET)
    (tmp_path / STATE).unlink()
    train(arch, data, TrainConfig(epochs=1, batch_size=8), tmp_path, **QUIET)
    with pytest.raises(ConfigError, match="already exists"):
        train(arch, data, TrainConfig(epochs=1, batch_size=8), tmp_path, **QUIET)


@pytest.mark.parametrize("at", ["mid-epoch", "end-of-epoch"])
def test_resume_from_a_kill_right_after_a_save_equals_an_uninterrupted_run(
    tmp_path, monkeypatch, at
):
    """A kill can land right after any saved state, including the one saved after an
    epoch's last step (the resumed epoch then takes no step at all: one CI run crashed
    there). The resumed run's weights and its whole log, train figures included, are those
    of a run that was never stopped."""
    from nas.train import _trainer

    data = load_data("synthetic:classes=2,train=40,test=4")
    arch = preset("shufflenet_v2_x0_5_cifar")
    config = TrainConfig(epochs=2, batch_size=8, checkpoint_minutes=0)
    train(arch, data, config, tmp_path / "whole", **QUIET)
    steps = _log(tmp_path / "whole")[0]["step"]
    stop_after = 2 if at == "mid-epoch" else steps  # steps into the first epoch
    save = _trainer._Run._save_state

    def killed_after_that_save(run):
        save(run)
        if run.state.epoch == 0 and run.state.step_in_epoch == stop_after:
            raise KeyboardInterrupt  # the handler saves the same state again, then re-raises

    with monkeypatch.context() as patch:
        patch.setattr(_trainer._Run, "_save_state", killed_after_that_save)
        with pytest.raises(KeyboardInterrupt):
            train(arch, data, config, tmp_path / "broken", **QUIET)
    train(arch, data, config, tmp_path / "broken", resume=True, **QUIET)
    a = load_checkpoint(tmp_path / "whole" / "model.pt")
    b = load_checkpoint(tmp_path / "broken" / "model.pt")
    for key, tensor in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], tensor, atol=1e-5, rtol=1e-4, msg=key)
    timing = ("img_per_s", "train_seconds")
    for row_a, row_b in zip(_log(tmp_path / "whole"), _log(tmp_path / "broken"), strict=True):
        same = {k: v for k, v in row_a.items() if k not in timing}
        assert {k: row_b[k] for k in same} == pytest.approx(same), row_b
        assert row_b["train_seconds"] > 0


def _cli(*args, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "nas.train", *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


TRAIN_ARGS = [
    "--space",
    str(TINY_SPACE),
    "--data",
    "synthetic:classes=3,train=64,test=8",
    "--epochs",
    "4",
    "--batch-size",
    "16",
    "--bn-batches",
    "2",
    "--no-progress",
    "--checkpoint-minutes",
    "0",
]


@pytest.mark.slow
def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert _cli(*TRAIN_ARGS, "--out", str(whole)).wait(timeout=240) == 0
    proc = _cli(*TRAIN_ARGS, "--out", str(broken))
    deadline = time.monotonic() + 120
    while not (broken / STATE).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the middle of the run; a mid-epoch state is saved every step
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (broken / "supernet.pt").exists()
    resumed = _cli(*TRAIN_ARGS, "--out", str(broken), "--resume")
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    assert "resuming from" in out
    a = load_checkpoint(whole / "supernet.pt")
    b = load_checkpoint(broken / "supernet.pt")
    for key, tensor in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], tensor, atol=1e-5, rtol=1e-4, msg=key)
    assert [row["epoch"] for row in _log(broken)] == [1, 2, 3, 4]


def _log(run):
    import json

    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def _as_from_a_terminal() -> None:
    """In the child before exec: SIGINT handled and unblocked, as for a command typed in a
    shell. A test worker's own disposition is inherited otherwise (one CI run saw the
    signal have no effect at all)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _signal_masks(pid: int) -> str:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return " ".join(ln for ln in lines if ln.startswith(("SigBlk", "SigIgn", "SigCgt")))


def test_ctrl_c_saves_state_and_says_how_to_resume(tmp_path):
    # Far more epochs than the run gets to: on a loaded machine the whole short run could
    # otherwise finish between the first saved state and the signal.
    proc = _cli(
        *TRAIN_ARGS, "--epochs", "500", "--out", str(tmp_path), preexec_fn=_as_from_a_terminal
    )
    deadline = time.monotonic() + 180
    while not (tmp_path / STATE).exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no training state was saved within 180 s"
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]
    masks = _signal_masks(proc.pid)  # SIGINT is bit 2 (value 0x2)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"SIGINT did not stop training within 60 s (child signal masks: {masks})")
    assert proc.returncode == 130
    assert "Traceback" not in err and "run the same command again to resume" in err
    assert load_checkpoint(tmp_path / STATE)["progress"]["global_step"] > 0


def test_a_supernet_of_an_older_weight_layout_is_refused(tmp_path):
    # Older layouts matched weights to channels by position (v1 from a branch's first
    # column, v2 from a stage's smallest pass-through): loaded into the id layout they
    # would run every sub-net with misplaced weights, so they are an error
    from nas.models import Supernet

    space = load_space(TINY_SPACE)
    payload = {"kind": "supernet", "space": space.to_dict()}
    payload["state_dict"] = Supernet(space).state_dict()
    save_checkpoint(tmp_path / "old.pt", payload)
    with pytest.raises(CheckpointError, match=r"weight layout v1.*retrain"):
        supernet_from_checkpoint(load_checkpoint(tmp_path / "old.pt", kind="supernet"))
    save_checkpoint(tmp_path / "v2.pt", {**payload, "supernet_layout": 2})
    with pytest.raises(CheckpointError, match=r"weight layout v2.*retrain"):
        load_checkpoint(tmp_path / "v2.pt", kind="supernet")
    save_checkpoint(tmp_path / "new.pt", {**payload, "supernet_layout": SUPERNET_LAYOUT})
    net = supernet_from_checkpoint(load_checkpoint(tmp_path / "new.pt", kind="supernet"))
    assert isinstance(net, Supernet)


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a shufflenas checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": "x", "evil": _Unsafe()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    save_checkpoint(tmp_path / "model.pt", {"kind": "model", "arch": {"widths": [1]}})
    with pytest.raises(CheckpointError, match="a supernet checkpoint is needed"):
        load_checkpoint(tmp_path / "model.pt", kind="supernet")
    with pytest.raises(CheckpointError, match="arch is invalid"):
        model_from_checkpoint(load_checkpoint(tmp_path / "model.pt"))


class _Unsafe:
    """Anything that is not a tensor or builtin container must not be unpickled."""


def test_cli_errors_are_one_line(tmp_path):
    proc = _cli("--arch", "shufflenet_v2_x0_5_cifar", "--data", str(tmp_path / "missing"))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.count("\n") == 1
    assert err.startswith("error: data source not found")


_DDP_WORKER = r"""
import os, sys, torch, torch.distributed as dist
from nas.data import load_data
from nas.space import load_space
from nas.train import TrainConfig
from nas.train import _distributed
from nas.train._trainer import _Run
torch.set_num_threads(1)
out, space = sys.argv[1], sys.argv[2]
ctx = _distributed.setup("cpu")
data = load_data("synthetic:classes=3,train=64,test=8")
config = TrainConfig(epochs=1, batch_size=16, lr=0.05, bn_batches=1, eval_every=0)
run = _Run(load_space(space), data, config, __import__("pathlib").Path(out), ctx, False, False,
           True, lambda _: None)
run.run()
flat = torch.cat([p.detach().flatten() for p in run.model.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(ctx.world)]
dist.all_gather(gathered, flat)
if ctx.main:
    print("MAXDIFF", float((gathered[0] - gathered[1]).abs().max()))
_distributed.teardown(ctx)
"""


@pytest.mark.slow
def test_ddp_two_processes_stay_in_sync(tmp_path):
    """Each rank trains its own shard and sub-nets; gradients (also of units the last
    sub-net skipped) are all-reduced, so the weights stay identical on both ranks."""
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(tmp_path / "run"),
            str(TINY_SPACE),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=REPO,
    )
    # the launcher's summary ends stderr; a rank's own reason for dying (an abort) comes
    # before it
    reasons = [
        line
        for line in result.stderr.splitlines()
        if any(k in line for k in ("terminate", "what()", "Error", "error:"))
    ]
    assert result.returncode == 0, "\n".join(reasons[-20:]) + "\n" + result.stderr[-2000:]
    maxdiff = float(result.stdout.split("MAXDIFF")[1].split()[0])
    assert maxdiff == 0.0
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["supernet.pt", "train_log.jsonl"]  # rank 0 wrote, no temp leftovers
    assert load_checkpoint(tmp_path / "run" / "supernet.pt")["data"]["counts"]["train"] > 0


@pytest.mark.gpu
def test_training_on_cuda_learns_standalone_and_supernet(tmp_path):
    # the CPU tests' settings (test_standalone_training_learns_and_checkpoints_safely,
    # test_supernet_training_on_synthetic): cuda changes the numerics, not what is learnable
    data = load_data(SYNTHETIC)
    config = TrainConfig(epochs=4, batch_size=16, lr=0.05)
    metrics = train(
        preset("shufflenet_v2_x0_5_cifar"), data, config, tmp_path, device="cuda", **QUIET
    )
    assert metrics["val_acc"] > 0.8  # chance is 0.25
    config = TrainConfig(epochs=4, batch_size=16, lr=0.05, strategy="sandwich", bn_batches=2)
    supernet = train(
        load_space(TINY_SPACE), data, config, tmp_path / "super", device="cuda", **QUIET
    )
    assert supernet["val_acc_max"] > 0.7 and supernet["val_acc_min"] > 0.7


@pytest.mark.gpu
def test_supernet_steps_on_cuda_do_not_pay_per_new_shape(tmp_path):
    # Every supernet step runs new conv shapes. In bf16 channels-last cuDNN built a plan
    # per new shape at ~50 ms of CPU: an H200 trained the CIFAR supernet at 2-4 s a step
    # (41 images/s; 80 ms a step in fp32 NCHW). The trainer keeps supernets in fp32 NCHW.
    data = load_data("synthetic:classes=4,train=1024,test=8")
    config = TrainConfig(epochs=1, batch_size=64, lr=0.05, steps_per_epoch=12, eval_every=0)
    metrics = train(
        load_space("shufflenetv2_cifar"), data, config, tmp_path, device="cuda", **QUIET
    )
    assert metrics["img_per_s"] > 64 / 0.5, metrics  # < 0.5 s a step, a new sub-net each
