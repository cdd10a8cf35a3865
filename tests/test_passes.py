"""Passes of one model (issue 25): disagreeing passes are measured again, the latency is
taken from the fastest passes, and what still disagrees is flagged, never passed off."""

from __future__ import annotations

import pytest

from nas.latency import Measurement, measure_passes, measure_spaced, pass_spread, summarize


def _meter(
    medians: list[float],
    noisy: set[int] = frozenset(),
    contended: set[int] = frozenset(),
    cached: bool = False,
):
    """A measure(repeat) that returns the given pass medians in turn, recording repeats;
    the passes in ``contended`` flagged by the contention guard (and so noisy)."""
    asked: list[int] = []

    def measure(repeat: int) -> Measurement:
        asked.append(repeat)
        value = medians[len(asked) - 1]
        stats = summarize([value] * 5)
        if repeat in noisy | contended:
            flags = {"noisy": True, "contended": repeat in contended}
            stats = type(stats)(**{**stats.to_dict(), **flags})
        return Measurement(stats, "arch:x", "t", cached=cached)

    return measure, asked


def test_agreeing_passes_are_measured_once_each():
    measure, asked = _meter([5.0, 5.2, 5.1])
    m = measure_passes(measure)
    assert asked == [0, 1, 2]
    assert m.latency_ms == 5.1 and (m.min_ms, m.max_ms) == (5.0, 5.2)
    assert m.spread == pytest.approx(0.2 / 5.1) and not m.noisy and m.remeasured == 0


def test_a_disturbed_pass_is_measured_again_and_left_out():
    # the second pass ran while another process used the core: 1.8x slower
    measure, asked = _meter([5.0, 9.0, 5.1, 5.05])
    m = measure_passes(measure)
    assert asked == [0, 1, 2, 3]  # each pass its own cache entry
    assert m.medians == (5.0, 9.0, 5.1, 5.05) and m.kept == 3 and m.remeasured == 1
    assert m.latency_ms == 5.05 and m.max_ms == 5.1 and not m.noisy


def test_passes_that_keep_disagreeing_are_flagged_not_hidden():
    measure, asked = _meter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    m = measure_passes(measure, extra=3)
    assert asked == [0, 1, 2, 3, 4, 5]  # three extra passes, then it stops
    assert m.noisy and m.spread == pytest.approx(1.0) and m.latency_ms == 2.0


def test_a_noisy_kept_pass_makes_the_result_noisy():
    measure, _ = _meter([5.0, 5.0, 5.0], noisy={1})
    m = measure_passes(measure)
    assert m.noisy and not m.disagree  # the passes agree: flagged for the pass's own cv


def test_disagree_says_the_kept_passes_differ():
    assert measure_passes(_meter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])[0]).disagree
    assert not measure_passes(_meter([5.0, 5.2, 5.1])[0]).disagree


def test_a_contended_pass_is_measured_again_and_left_out_though_it_agrees():
    # the middle pass ran while the host's memory was busy: 8% slow, inside the 10% the
    # passes may differ by, but the guard knows it
    measure, asked = _meter([5.0, 5.4, 5.1, 5.05], contended={1})
    m = measure_passes(measure)
    assert asked == [0, 1, 2, 3] and m.kept == 3 and m.remeasured == 1
    assert m.latency_ms == 5.05 and m.max_ms == 5.1 and not m.noisy


def test_contention_that_lasts_is_kept_but_flagged():
    # every extra pass contended too (a busy stretch of minutes): the fastest passes are
    # kept, and the result says it was read under contention
    measure, asked = _meter([5.0, 5.4, 5.1, 5.3, 5.5, 5.2], contended={1, 3, 4, 5})
    m = measure_passes(measure)
    assert asked == [0, 1, 2, 3, 4, 5] and m.kept == 3
    assert m.latency_ms == 5.1 and m.noisy and m.disagree


@pytest.mark.parametrize("passes, extra", [(0, 3), (3, -1)])
def test_bad_pass_counts_are_refused(passes, extra):
    measure, _ = _meter([1.0])
    with pytest.raises(ValueError):
        measure_passes(measure, passes=passes, extra=extra)


def test_pass_spread():
    assert pass_spread([4.0, 5.0, 6.0]) == pytest.approx(0.4)
    assert pass_spread([3.0]) == 0.0


def test_arguments_reach_the_measure_with_each_pass_its_repeat():
    calls = []

    def measure(arch: str, use_cache: bool = True, repeat: int = 0) -> Measurement:
        calls.append((arch, use_cache, repeat))
        return Measurement(summarize([2.0] * 5), f"arch:{arch}", "t", cached=False)

    measure_passes(measure, "x", use_cache=False)
    assert calls == [("x", False, 0), ("x", False, 1), ("x", False, 2)]


class _Clock:
    """A clock that only moves when slept on or told to (each measurement takes ``run_s``)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds

    def timed(self, measure, run_s: float, log: list, key: str):
        def run(repeat: int) -> Measurement:
            log.append((key, repeat, self.now))
            self.now += run_s
            return measure(repeat)

        return run


def test_spaced_passes_go_in_rounds_a_gap_apart_and_only_disagreeing_models_go_on():
    clock, log = _Clock(), []
    a, _ = _meter([5.0, 5.1, 5.05])  # agrees: 3 passes
    b, _ = _meter([5.0, 9.0, 5.1, 5.05])  # the second pass disturbed: one extra round
    measures = {"a": clock.timed(a, 1.0, log, "a"), "b": clock.timed(b, 1.0, log, "b")}
    ticks = []
    got = measure_spaced(
        measures,
        gap_s=30.0,
        sleep=clock.sleep,
        clock=clock,
        progress=lambda: ticks.append(1),
    )
    # round by round, every model once per round, each pass its own repeat
    assert [(k, r) for k, r, _ in log] == [(k, r) for r in range(3) for k in "ab"] + [("b", 3)]
    starts = sorted({t for k, r, t in log if k == "a"} | {t for k, r, t in log if r == 3})
    assert starts == [0.0, 30.0, 60.0, 90.0]  # rounds begin a gap apart, not back to back
    assert clock.slept == [28.0, 28.0, 28.0]
    assert len(ticks) == 7
    assert got["a"].latency_ms == 5.05 and got["a"].remeasured == 0
    assert got["b"].latency_ms == 5.05 and got["b"].remeasured == 1 and not got["b"].noisy


def test_spaced_passes_give_what_measure_passes_gives_one_model():
    for medians in ([5.0, 9.0, 5.1, 5.05], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]):
        alone, _ = _meter(medians)
        spaced, _ = _meter(medians)
        clock = _Clock()
        assert (
            measure_passes(alone)
            == measure_spaced({"x": spaced}, gap_s=10.0, sleep=clock.sleep, clock=clock)["x"]
        )


def test_cached_passes_are_not_waited_for():
    # a round read from the cache took no time on the machine: nothing to space out
    clock = _Clock()
    measure, asked = _meter([5.0, 5.1, 5.05], cached=True)
    measure_spaced({"x": measure}, gap_s=30.0, sleep=clock.sleep, clock=clock)
    assert asked == [0, 1, 2] and clock.slept == []


def test_a_slow_round_is_not_followed_by_a_wait():
    clock, log = _Clock(), []
    a, _ = _meter([5.0, 5.1, 5.05])
    measure_spaced(
        {"a": clock.timed(a, 40.0, log, "a")},
        gap_s=30.0,
        sleep=clock.sleep,
        clock=clock,
    )
    assert clock.slept == [0.0, 0.0] and [t for *_, t in log] == [0.0, 40.0, 80.0]
