"""Pure functions on (accuracy, latency) points: dominance, the Pareto front, hypervolume."""

from __future__ import annotations

from collections.abc import Sequence


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` = (accuracy, latency) dominates ``b``: no worse on both, better on one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (maximise accuracy, minimise latency), sorted by
    latency. Exact duplicates are all kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    front: list[int] = []
    best_acc = float("-inf")
    for i in order:
        acc = points[i][0]
        if acc > best_acc or (front and points[front[-1]] == points[i]):
            front.append(i)
            best_acc = max(best_acc, acc)
    return front


def hypervolume(
    points: Sequence[tuple[float, float]], max_latency: float, min_accuracy: float = 0.0
) -> float:
    """Area dominated by ``points`` inside the box [min_accuracy, ...] x [..., max_latency].

    The reference point is (``min_accuracy``, ``max_latency``), e.g. (0, the budget): the
    area is in accuracy x milliseconds. Points outside the box add nothing.
    """
    inside = [(a, t) for a, t in points if a > min_accuracy and t < max_latency]
    # Sweep by latency: the strip between consecutive latencies is dominated up to the
    # best accuracy reached at or below that latency.
    area, best, previous = 0.0, min_accuracy, None
    for acc, lat in sorted(inside, key=lambda p: p[1]):
        if previous is not None:
            area += (best - min_accuracy) * (lat - previous)
        best = max(best, acc)
        previous = lat
    if previous is not None:
        area += (best - min_accuracy) * (max_latency - previous)
    return area
