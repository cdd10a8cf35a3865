from __future__ import annotations

import dataclasses
import itertools
import os
import random
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from nas import ConfigError, load_space, preset
from nas.checkpoint import save_checkpoint
from nas.latency import (
    RUNTIMES,
    HardwareTarget,
    LatencyCache,
    LatencyMeter,
    LatencyPredictor,
    MeasurementError,
    arch_blocks,
    kendall_tau,
    load_target,
    parse_latency,
    prediction_scores,
    run_protocol,
    shipped_targets,
    space_blocks,
    summarize,
)
from nas.latency._predictor import fit_overhead
from nas.latency._stats import MAX_CONTENTION, MAX_CONTENTION_FLAG
from nas.onnx import export_onnx, max_abs_difference

from .conftest import REPO, TINY_SPACE
from .helpers import call_cli

MICRO_SPACE = REPO / "tests" / "data" / "micro_space.yaml"

# -- budgets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("25ms", 25.0),
        ("25 ms", 25.0),
        ("0.025s", 25.0),
        ("25000us", 25.0),
        ("25000µs", 25.0),
        (" 7.5ms ", 7.5),
        ("1.5e1ms", 15.0),
        ("2s", 2000.0),
    ],
)
def test_latency_strings(text, ms):
    assert parse_latency(text) == pytest.approx(ms)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("25", "has no unit"),
        ("-3ms", "is negative"),
        ("fast", "is not a duration"),
        ("0ms", "must be positive"),
        ("ms", "is not a duration"),
        ("25 sec", "is not a duration"),
        ("inf ms", "is not a duration"),
        ("", "is not a duration"),
        ("-0.5", "is negative"),
    ],
)
def test_bad_latency_strings(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_latency(text)


# -- protocol ------------------------------------------------------------------------------


def test_summarize_rejects_outliers_with_the_iqr_rule():
    times = [10.0] * 40 + [10.5] * 20 + [100.0]
    stats = summarize(times)
    assert stats.rejected == 1 and stats.runs == 60
    assert stats.median_ms == 10.0 and stats.max_ms == 10.5
    assert stats.p10_ms == 10.0 and stats.p90_ms == 10.5
    assert 0 < stats.cv < 0.03


def _fake_clock(values_ms):
    it = iter(values_ms)
    return lambda: next(it) / 1e3


def test_protocol_warms_up_then_times():
    calls = []

    def time_once():
        calls.append(1)
        return 0.005

    stats = run_protocol(time_once, warmup=7, repeats=20, max_cv=0.05, retries=2)
    assert len(calls) == 27 and stats.median_ms == pytest.approx(5.0)
    assert stats.attempts == 1 and not stats.noisy


def test_one_injected_slow_run_is_rejected_not_noisy():
    jitter = np.random.default_rng(2).normal(5.0, 0.05, size=40).tolist()
    timings = [5.0] * 10 + jitter[:20] + [60.0] + jitter[20:29]  # warm-up, then 30 runs
    stats = run_protocol(_fake_clock(timings), warmup=10, repeats=30, max_cv=0.05, retries=2)
    assert stats.rejected >= 1 and stats.max_ms < 6.0  # the 60 ms run is gone
    assert stats.median_ms == pytest.approx(5.0, abs=0.05)
    assert not stats.noisy and stats.attempts == 1


def test_persistent_noise_is_retried_then_flagged():
    rng = np.random.default_rng(0)
    noisy = rng.uniform(2.0, 8.0, size=10_000).tolist()  # cv ~ 0.35 whatever is rejected
    pauses = []
    stats = run_protocol(
        _fake_clock(noisy), warmup=5, repeats=40, max_cv=0.05, retries=2, pause=pauses.append
    )
    assert stats.noisy and stats.attempts == 3 and len(pauses) == 2
    assert stats.cv > 0.05


def test_noise_that_passes_is_not_flagged():
    timings = (
        [9.0] * 5 + list(np.random.default_rng(1).uniform(2, 8, 40)) + [5.0] * 5 + [5.0, 5.05] * 20
    )
    stats = run_protocol(
        _fake_clock(timings), warmup=5, repeats=40, max_cv=0.05, retries=2, pause=lambda _: None
    )
    assert not stats.noisy and stats.attempts == 2 and stats.median_ms == pytest.approx(5.0, 0.01)


# -- targets -------------------------------------------------------------------------------


def test_shipped_targets():
    names = set(shipped_targets())
    assert {"cpu-torch-1t", "cpu-ort-1t", "cpu-ort-2t", "cuda-torch-b64"} <= names
    targets = [load_target(n) for n in names]
    assert len({t.hash for t in targets}) == len(targets)
    assert load_target().name == "cpu-torch-1t"
    gpu = load_target("cuda-torch-b64")
    assert (gpu.device, gpu.batch_size, gpu.dtype) == ("cuda", 64, "bfloat16")
    assert load_target("cpu-ort-2t").threads == 2


def test_target_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown hardware target 'tpu'"):
        load_target("tpu")
    bad = tmp_path / "t.yaml"
    bad.write_text("name: t\nruntime: tensorrt\n")
    with pytest.raises(ConfigError, match="unknown runtime 'tensorrt'"):
        load_target(bad)
    bad.write_text("name: t\nruntime: torch\nthreds: 2\n")
    with pytest.raises(ConfigError, match="unknown key 'threds'"):
        load_target(bad)
    bad.write_text("name: t\nruntime: torch\nthreads: 0\n")
    with pytest.raises(ConfigError, match="threads must be an integer >= 1"):
        load_target(bad)
    for gap in ("-1", "soon", "true", "900"):
        bad.write_text(f"name: t\nruntime: torch\npass_gap_s: {gap}\n")
        with pytest.raises(ConfigError, match="pass_gap_s must be a number of seconds"):
            load_target(bad)


def test_pass_spacing_schedules_passes_without_changing_a_measurement():
    # the same measurement, so the same cache entries and calibration
    target = load_target("cpu-ort-1t")
    spaced = dataclasses.replace(target, pass_gap_s=target.pass_gap_s + 15)
    assert spaced.hash == target.hash and spaced.speed_hash == target.speed_hash


def test_target_round_trip_and_pinning(tmp_path):
    target = load_target("cpu-ort-1t")
    target.to_yaml(tmp_path / "mine.yaml")
    again = load_target(tmp_path / "mine.yaml")
    assert again == target and again.hash == target.hash
    allowed = sorted(os.sched_getaffinity(0))
    assert target.pinned_cores() == allowed[-1:]
    with pytest.raises(ConfigError, match="not available"):
        HardwareTarget("x", "torch", cores=(999,)).pinned_cores()


# -- backends (contract: every registered runtime) ---------------------------------------


def _fast(runtime: str, device: str = "cpu", **kw) -> HardwareTarget:
    """Few runs and no speed calibration: quick targets for the mechanics."""
    kw.setdefault("normalize", False)
    return HardwareTarget(
        f"test-{runtime}-{device}", runtime, device=device, warmup=2, repeats=8, **kw
    )


LOCAL = [r for r in RUNTIMES if RUNTIMES[r].local]  # remote: tests/test_remote.py
BACKEND_CASES = [pytest.param(r, "cpu", id=f"{r}-cpu") for r in LOCAL] + [
    pytest.param(r, "cuda", id=f"{r}-cuda", marks=pytest.mark.gpu) for r in LOCAL
]


@pytest.mark.parametrize(("runtime", "device"), BACKEND_CASES)
def test_backend_contract(runtime, device):
    target = _fast(runtime, device)
    backend = RUNTIMES[runtime](target)
    assert backend.unavailable(target) is None
    assert all(isinstance(k, str) for k in backend.versions())
    arch = preset("shufflenet_v2_x0_5_cifar")
    from nas import ShuffleNetV2

    time_once = backend.prepare(ShuffleNetV2(arch), (1, 3, 32, 32))
    time_once()  # cold: on cuda cuDNN picks (benchmarks) and builds a plan per conv here
    times = [time_once() for _ in range(5)]
    assert all(0 < t < 5 for t in times), times
    stats = run_protocol(time_once, 2, 10, max_cv=0.5, retries=0)
    assert stats.median_ms > 0 and stats.runs + stats.rejected == 10


@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5_cifar", "shufflenet_v2_x1_0"])
def test_onnx_export_matches_torch(name):
    from nas import ShuffleNetV2

    arch = preset(name)
    model = ShuffleNetV2(arch).eval()
    shape = (1, 3, arch.resolution, arch.resolution)
    assert max_abs_difference(model, export_onnx(model, shape), shape) < 1e-4


def test_onnx_export_of_unusual_archs():
    from nas import ShuffleNetV2

    space = load_space()
    rng = random.Random(5)
    for _ in range(3):
        arch = space.sample(rng)
        model = ShuffleNetV2(arch).eval()
        shape = (1, 3, 32, 32)
        assert max_abs_difference(model, export_onnx(model, shape), shape) < 1e-4


# -- meter, cache, isolation -------------------------------------------------------------


@pytest.fixture
def cache(tmp_path):
    return LatencyCache(tmp_path / "latency.sqlite")


def test_fit_overhead_never_predicts_a_negative_latency():
    """Six noisy archs whose unconstrained 3-term fit goes negative on the smallest one
    (seen in CI on a busy machine): a simpler, positive model is used instead."""
    sums = [0.2, 3.0, 3.1, 3.2, 3.3, 3.4]
    mparams = [0.01, 2.0, 0.1, 2.1, 0.2, 2.2]
    measured = [1.8, 1.8, 4.3, 4.5, 4.4, 4.5]
    features = np.column_stack([sums, mparams, np.ones(6)])
    free, *_ = np.linalg.lstsq(features / np.c_[measured], np.ones(6), rcond=None)
    assert free[1] < 0  # the unconstrained fit is unphysical here
    slope, per_mparam, intercept = fit_overhead(sums, mparams, measured)
    assert slope > 0 and per_mparam >= 0
    predictions = [
        slope * s + per_mparam * m + intercept for s, m in zip(sums, mparams, strict=True)
    ]
    assert min(predictions) > 0


@pytest.mark.slow
def test_meter_measures_and_caches(cache):
    target = _fast("torch")
    arch = preset("shufflenet_v2_x0_5_cifar")
    with LatencyMeter(target, cache=cache) as meter:
        first = meter.measure_arch(arch)
        again = meter.measure_arch(arch)
    assert not first.cached and again.cached and again.stats == first.stats
    assert first.median_ms > 0 and first.stats.p10_ms <= first.median_ms <= first.stats.p90_ms
    with LatencyMeter(target, cache=cache) as fresh:  # persistent across meters and runs
        start = time.perf_counter()
        assert fresh.measure_arch(arch).cached
        assert time.perf_counter() - start < 0.5  # no process started for a cache hit
        assert fresh._process is None
    other = HardwareTarget("other", "torch", warmup=2, repeats=9)
    with LatencyMeter(other, cache=cache) as meter:
        assert not meter.measure_arch(arch).cached  # another target, another key
    assert len(cache) == 2


@pytest.mark.slow
def test_meter_measures_blocks_checkpoints_and_onnx(cache, tmp_path):
    from nas import ShuffleNetV2

    arch = preset("shufflenet_v2_x0_5_cifar")
    model = ShuffleNetV2(arch)
    path = save_checkpoint(
        tmp_path / "m.pt",
        {"kind": "model", "arch": arch.to_dict(), "state_dict": model.state_dict()},
    )
    export_onnx(model, (1, 3, 32, 32), tmp_path / "m.onnx")
    with LatencyMeter(_fast("torch"), cache=cache) as meter:
        block = arch_blocks(arch)[3]
        assert meter.measure_block(block).median_ms > 0
        assert meter.measure_checkpoint(path).median_ms > 0
        with pytest.raises(MeasurementError, match="measures modules, not ONNX"):
            meter.measure_onnx(tmp_path / "m.onnx", (1, 3, 32, 32))
        assert meter.measure_block(block).cached  # the worker survived the failure
    with LatencyMeter(_fast("onnxruntime"), cache=cache) as meter:
        assert meter.measure_onnx(tmp_path / "m.onnx", (1, 3, 32, 32)).median_ms > 0


class AffinityProbe(torch.nn.Module):
    """Records the cores and threads of the process that runs it."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.out = out

    def forward(self, x):
        with open(self.out, "w") as f:
            f.write(f"{sorted(os.sched_getaffinity(0))} {torch.get_num_threads()} {os.getpid()}")
        return x


def test_normalized_stats_scale_times_not_spread():
    stats = summarize([4.0, 5.0, 6.0, 5.0, 5.5])
    slow = stats.normalized(1.25)  # the machine ran 25% slower than calibrated
    assert slow.median_ms == pytest.approx(stats.median_ms / 1.25)
    assert slow.p90_ms == pytest.approx(stats.p90_ms / 1.25) and slow.cv == stats.cv
    assert slow.raw_median_ms == stats.median_ms and slow.speed == 1.25


def test_speed_is_calibrated_once_and_applied(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path / "machine"))
    target = HardwareTarget("calibrated", "torch", warmup=2, repeats=10, normalize=True)
    arch = preset("shufflenet_v2_x0_5_cifar")
    with LatencyMeter(target, cache=cache) as meter:
        result = meter.measure_arch(arch).stats
        nominal = meter._nominal()
    # a sanity bound, not a speed check: under the suite's own load on 2 cores the
    # reference and the subject ran 3.8x apart once
    assert result.raw_median_ms is not None and 0.1 < result.speed < 10.0
    assert result.median_ms == pytest.approx(result.raw_median_ms / result.speed)
    with LatencyMeter(target, cache=cache) as again:  # the calibration is kept
        assert again._nominal() == nominal and again._process is None
    # in the machine's store, not the measurements' cache: a meter on another cache (a
    # run's own, or a test's) reads at the same speed without calibrating again
    key = LatencyCache.key("calibration", target.speed_hash, meter.environment)
    assert cache.nominal(key) is None and LatencyCache().nominal(key) == nominal
    with LatencyMeter(target, cache=LatencyCache(tmp_path / "other.sqlite")) as elsewhere:
        assert elsewhere._nominal() == nominal and elsewhere._process is None
    # another protocol on the same runtime setting reads at the same speed; another
    # setting (here: threads) is calibrated on its own
    quick = dataclasses.replace(target, name="quick", warmup=1, repeats=3, retries=0)
    assert quick.hash != target.hash and quick.speed_hash == target.speed_hash
    with LatencyMeter(quick, cache=cache) as other:
        assert other._nominal() == nominal and other._process is None
    assert dataclasses.replace(target, threads=2).speed_hash != target.speed_hash


def test_a_calibration_kept_under_the_old_key_stays_that_targets(tmp_path, monkeypatch):
    """Calibrations stored before they were keyed by ``speed_hash`` (under the whole
    target's hash) stay the speed of that target's cached measurements, and are not
    handed to other targets sharing its runtime setting."""
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    target = HardwareTarget("calibrated-old", "torch", warmup=1, repeats=3, normalize=True)
    with LatencyMeter(target, cache=False) as meter:
        old = LatencyCache.key("calibration", target.hash, meter.environment)
        LatencyCache().set_nominal(old, target.name, 1.234, [1.234])
        assert meter._nominal() == 1.234 and meter._process is None  # nothing measured
    shared = LatencyCache.key("calibration", target.speed_hash, meter.environment)
    assert LatencyCache().nominal(shared) is None
    LatencyCache().set_nominal(shared, "other", 2.5, [2.5])
    with LatencyMeter(dataclasses.replace(target, repeats=4), cache=False) as sibling:
        assert sibling._nominal() == 2.5 and sibling._process is None
    with LatencyMeter(target, cache=False) as again:
        assert again._nominal() == 1.234


def test_a_meter_that_caches_no_measurement_still_keeps_the_calibration(tmp_path, monkeypatch):
    """Fresh side-by-side readings (``cache=False``) are still read at the machine's one
    calibrated speed: the second meter reuses the first one's calibration."""
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    target = HardwareTarget("calibrated-fresh", "torch", warmup=1, repeats=3, normalize=True)
    arch = preset("shufflenet_v2_x0_5_cifar")
    with LatencyMeter(target, cache=False) as meter:
        assert not meter.measure_arch(arch).cached
        nominal = meter._nominal()
    stored = LatencyCache()  # the default cache, under $NAS_CACHE_DIR
    assert stored.path.parent == tmp_path and len(stored) == 0  # no measurement kept
    with LatencyMeter(target, cache=False) as again:
        assert again._nominal() == nominal and again._process is None
        assert not again.measure_arch(arch).cached


def test_every_measurement_reads_the_memory_probe_against_the_machines_fastest(
    tmp_path, monkeypatch
):
    """The contention guard's mechanism end to end: the probe is calibrated once per
    machine (beside the reference), read beside every measurement, sent to the worker as
    a limit, and only ever lowered by a quieter reading."""
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    target = HardwareTarget(
        "guarded", "torch", warmup=1, repeats=3, normalize=True, contention_guard=True
    )
    arch = preset("shufflenet_v2_x0_5_cifar")
    sent: list[dict] = []
    with LatencyMeter(target, cache=False) as meter:
        ask = meter._ask
        meter._ask = lambda request: sent.append(request) or ask(request)  # type: ignore[method-assign]
        stats = meter.measure_arch(arch).stats
        fastest = LatencyCache().nominal(meter._probe_key)
        assert fastest is not None and stats.probe_ms is not None
        assert fastest <= stats.probe_ms + 1e-12  # lowered to a quieter measurement's
        # contended or not, the attempt's probe and the verdict travel with the stats
        assert stats.noisy >= stats.contended
    limit, flag = sent[-1]["probe_limit_ms"], sent[-1]["probe_flag_ms"]
    assert limit < flag and flag / limit == pytest.approx(
        (1 + MAX_CONTENTION_FLAG) / (1 + MAX_CONTENTION)
    )
    assert LatencyCache().lower_nominal(meter._probe_key, fastest * 2) == fastest
    assert LatencyCache().lower_nominal(meter._probe_key, fastest / 2) == fastest / 2
    with LatencyMeter(target, cache=False) as again:
        assert again._probe_fastest() == pytest.approx(fastest / 2)
        assert again._process is None  # nothing measured to know it
    # without the guard (the target's default) the probe is read and recorded, no more
    off = dataclasses.replace(target, name="off", contention_guard=False)
    assert off.speed_hash == target.speed_hash and off.hash != target.hash
    with LatencyMeter(off, cache=False) as unguarded:
        assert not unguarded.guard and LatencyMeter(off, cache=False, guard=True).guard
        unguarded._ask = lambda request: sent.append(request) or ask(request)  # type: ignore[method-assign]
        assert unguarded.measure_arch(arch).stats.probe_ms is not None
        assert "probe_limit_ms" not in sent[-1]
    raw = dataclasses.replace(target, name="unguarded", normalize=False)
    with LatencyMeter(raw, cache=False) as plain:  # no reference, no probe
        assert plain.measure_arch(arch).stats.probe_ms is None


def test_measuring_process_is_separate_and_pinned(tmp_path):
    cores = sorted(os.sched_getaffinity(0))[-1:]
    target = HardwareTarget("pinned", "torch", threads=1, warmup=1, repeats=3, cores=cores)
    with LatencyMeter(target, cache=False) as meter:
        meter.measure_module(AffinityProbe(str(tmp_path / "probe")), (1, 3, 4, 4))
    pinned, threads, pid = (tmp_path / "probe").read_text().rsplit(" ", 2)
    assert pinned == str(cores) and threads == "1" and int(pid) != os.getpid()


class Crash(torch.nn.Module):
    """Kills the process that runs it, like a segfault in a runtime would."""

    def forward(self, x):
        os._exit(3)


@pytest.mark.slow
def test_a_measuring_process_that_dies_fails_the_call_and_is_replaced(cache):
    blocks = arch_blocks(preset("shufflenet_v2_x0_5_cifar"))
    with LatencyMeter(_fast("torch", normalize=False), cache=cache) as meter:
        meter.measure_block(blocks[0])
        with pytest.raises(MeasurementError, match=r"died \(exit code 3\)"):
            meter.measure_module(Crash(), (1, 3, 4, 4))
        assert meter.measure_block(blocks[1]).median_ms > 0  # a fresh process took over
        meter._process.kill()  # dead between calls: replaced without an error
        meter._process.wait()
        assert meter.measure_block(blocks[2]).median_ms > 0


@pytest.mark.slow
def test_default_space_spans_the_default_budget_on_the_default_target():
    """The smallest arch well under the README's 25 ms on cpu-torch-1t, and the space
    spanning a wide range of latencies (so a budget inside it splits it).

    Whether 25 ms also falls under the *largest* arch is a property of the CPU, not of the
    code: 40 ms on the machines of November 2026, 22.7-24.9 ms on the Xeons of December
    (where the search warns that the budget admits the whole space; see test_search).
    Raw times, the fastest of 20 runs: contention from other tests only slows a run, and
    the median did not hold under it (the smallest arch read 5.8 ms against 1.7 ms quiet,
    the ratio 5.6x, in CI on a loaded Xeon, 2026-12-08). The fastest run of the smallest
    arch (a few ms) escapes it; the largest's can only read slower, which widens the
    ratio. One attempt per arch: the bounds are on the arch, not on the protocol (the
    largest arch's full protocol with its retries took up to 20 s of the suite).
    """
    space = load_space()
    raw = dataclasses.replace(load_target(), normalize=False, warmup=5, repeats=20, retries=0)
    with LatencyMeter(raw, cache=False) as meter:
        small = meter.measure_arch(space.min_arch).stats.min_ms
        large = meter.measure_arch(space.max_arch).stats.min_ms
    assert small < 12.5 and large > 6 * small, (small, large)


# -- predictor -----------------------------------------------------------------------------


def test_space_blocks_cover_every_arch():
    space = load_space()
    keys = {b.key for b in space_blocks(space)}
    rng = random.Random(0)
    for _ in range(300):
        assert {b.key for b in arch_blocks(space.sample(rng))} <= keys
    assert len(arch_blocks(space.max_arch)) == sum(space.max_arch.repeats) + 2


def test_fit_overhead_recovers_the_model():
    rng = np.random.default_rng(0)
    sums, mparams = rng.uniform(1, 20, 30), rng.uniform(0.1, 5, 30)
    measured = 1.2 * sums + 0.3 * mparams + 0.7
    slope, per_mparam, intercept = fit_overhead(list(sums), list(mparams), list(measured))
    assert (slope, per_mparam, intercept) == (
        pytest.approx(1.2),
        pytest.approx(0.3),
        pytest.approx(0.7),
    )


@pytest.mark.slow
def test_block_params_match_torch_counts():
    from nas import count_params

    for name in ("shufflenetv2_cifar", "shufflenetv2_imagenet"):
        space, rng = load_space(name), random.Random(0)
        for arch in [space.min_arch, space.max_arch] + [space.sample(rng) for _ in range(6)]:
            assert sum(b.params for b in arch_blocks(arch)) == count_params(arch)


def test_kendall_tau_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 6, 25).astype(float)  # with ties
        b = a + rng.integers(-2, 3, 25)
        conc = disc = tie_a = tie_b = 0
        for i, j in itertools.combinations(range(25), 2):
            s = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
            conc += s > 0
            disc += s < 0
            tie_a += a[i] == a[j] and b[i] != b[j]
            tie_b += b[i] == b[j] and a[i] != a[j]
        expected = (conc - disc) / np.sqrt((conc + disc + tie_a) * (conc + disc + tie_b))
        assert kendall_tau(a, b) == pytest.approx(expected)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0


def test_summary_shares():
    result = prediction_scores([10, 10, 10, 10], [10.4, 10.9, 11.5, 9.0])
    assert result["within_5pct"] == 0.25 and result["within_10pct"] == 0.75


# -- CLI -----------------------------------------------------------------------------------


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "nas.latency", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


@pytest.mark.slow
def test_cli_measure_and_errors(tmp_path, capsys):
    from nas.latency.__main__ import main

    target = tmp_path / "fast.yaml"
    _fast("torch").to_yaml(target)
    env_cache = os.environ["NAS_CACHE_DIR"]
    assert env_cache
    result = _cli("measure", "--arch", "shufflenet_v2_x0_5_cifar", "--target", str(target))
    assert result.returncode == 0, result.stderr
    assert "median" in result.stdout and "FLOPs 10.9M" in result.stdout
    for args, message in [
        (("measure", "--arch", "x9", "--target", str(target)), "unknown arch 'x9'"),
        (("measure", "--arch", "shufflenet_v2_x0_5", "--target", "tpu"), "unknown hardware"),
        (
            (
                "validate",
                "--target",
                str(target),
                "--space",
                str(TINY_SPACE),
                "--lut",
                str(tmp_path / "none.json"),
            ),
            "lookup table not found",
        ),
    ]:
        code, _, err = call_cli(main, args, capsys)  # in process: no interpreter per case
        assert code == 2 and err.startswith("error: ") and message in err
        assert err.count("\n") == 1


@pytest.mark.slow
def test_cli_build_lut_and_validate(tmp_path):
    target = tmp_path / "fast.yaml"
    _fast("torch").to_yaml(target)
    built = _cli(
        "build-lut",
        "--target",
        str(target),
        "--space",
        str(MICRO_SPACE),
        "--fit-samples",
        "4",
        "--passes",
        "1",
        "--no-progress",
    )
    assert built.returncode == 0, built.stderr
    lut = tmp_path / f"test-torch-cpu.{load_space(MICRO_SPACE).name}.lut.json"
    assert lut.exists() and str(lut) in built.stdout  # next to the user's target file
    out = tmp_path / "val"
    checked = _cli(
        "validate",
        "--target",
        str(target),
        "--space",
        str(MICRO_SPACE),
        "--samples",
        "6",
        "--out",
        str(out),
        "--passes",
        "1",
        "--no-progress",
    )
    assert checked.returncode == 0, checked.stderr
    assert "Kendall tau" in checked.stdout
    assert (out / "validation.csv").exists() and (out / "validation.png").stat().st_size > 1000
    frame = pd.read_csv(out / "validation.csv")
    assert len(frame) == 6 and (frame.measured_ms > 0).all() and (frame.predicted_ms > 0).all()

    space, loaded = load_space(MICRO_SPACE), LatencyPredictor.load(lut)
    assert set(loaded.table) == {b.key for b in space_blocks(space)}
    arch = space.sample(3)
    start = time.perf_counter()
    for _ in range(200):
        loaded.predict(arch)
    assert (time.perf_counter() - start) / 200 < 1e-3  # well under a millisecond
    with LatencyMeter(_fast("torch"), cache=LatencyCache(tmp_path / "c.sqlite")) as meter:
        environment = meter.environment
    loaded.check(_fast("torch"), environment)
    with pytest.raises(ConfigError, match="built for target"):
        loaded.check(load_target("cpu-ort-1t"), environment)
    with pytest.raises(ConfigError, match="measured elsewhere"):
        loaded.check(_fast("torch"), {**environment, "cpu": "another CPU"})
    with pytest.raises(ConfigError, match="lacks"):
        loaded.predict(load_space().max_arch)
