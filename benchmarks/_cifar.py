"""The search side of the CIFAR-10 benchmarks, shared by search.py, flops_proxy.py and
supernet_ranking.py: one supernet per scale, the budgets taken from the hand-designed
baselines, one search per (target, baseline, proxy), and standalone retraining.

Everything lives in one work folder (default ``runs/bench-search-<scale>``) and every step
is kept once finished and resumed when interrupted, so the three scripts share the
supernet, the searches and the retrained nets instead of repeating them.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from _common import CPU_TARGETS, RESULTS, SCALES

from nas import preset
from nas.arch import ArchConfig
from nas.checkpoint import arch_of, load_checkpoint
from nas.data import DataSplits, load_data
from nas.io import write_json_atomic
from nas.latency import LatencyMeter, load_target, measure_spaced
from nas.search import SearchOptions, run_search
from nas.space import SearchSpace, load_space
from nas.train import FINAL, STATE, fit_to_data, train
from reports import collect

SPACE = "shufflenetv2_cifar"
# The tiny scale searches the x0.5-x1.0 corner of SPACE, so CI's smoke runs take seconds.
SPACES = {
    "cpu": SPACE,
    "gpu": SPACE,
    "tiny": str(Path(__file__).resolve().parent / "spaces" / "shufflenetv2_cifar_tiny.yaml"),
}
# The hand-designed nets whose measured latency sets the search budgets.
BUDGET_BASELINES = {"x0.5": "shufflenet_v2_x0_5_cifar", "x1.0": "shufflenet_v2_x1_0_cifar"}
SEARCH_TRIALS = {"cpu": 40, "gpu": 60, "tiny": 3}


def argument_parser(doc: str | None, searches: bool = True) -> argparse.ArgumentParser:
    """The options the search-side scripts share: scale, work folder, results (and the
    trials per search, for the scripts that run searches)."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SCALES), default="cpu")
    parser.add_argument("--work", type=Path, help="default runs/bench-search-<scale>")
    parser.add_argument("--results", type=Path, default=RESULTS)
    if searches:
        parser.add_argument("--trials", type=int, help="trials per search (default by scale)")
    return parser


def work_dir(scale: str, given: Path | None) -> Path:
    return given or Path(f"runs/bench-search-{scale}")


def data_of(scale: str) -> DataSplits:
    return load_data(SCALES[scale].data)


def space_for(scale: str, data: DataSplits) -> SearchSpace:
    """The scale's search space, fitted to the data (classes, channels, resolution)."""
    space = fit_to_data(load_space(SPACES[scale]), data)
    assert isinstance(space, SearchSpace)
    return space


def supernet(
    scale: str, work: Path, data: DataSplits, device: str | None = None, **changes: Any
) -> Path:
    """The scale's supernet, trained once (the shared supernet recipe at the scale's epochs
    and batch size) on ``device`` (default: the scale's); ``changes`` to the recipe, and
    another device than the scale's, train a variant in a folder of its own (a supernet
    trained on one device is never read back as the other's)."""
    s = SCALES[scale]
    device = device or s.device
    name = "supernet" + "".join(f"-{k}{v}" for k, v in sorted(changes.items()))
    out = work / (name if device == s.device else f"{name}-on-{device}")
    final = out / FINAL["supernet"]
    if not final.exists():
        print(f"== training the supernet into {out}")
        recipe = s.supernet_recipe(**changes)
        space = space_for(scale, data)
        train(space, data, recipe, out, device=device, resume=(out / STATE).exists())
    return final


def budgets(work: Path, targets: tuple[str, ...] = CPU_TARGETS) -> dict[str, dict[str, float]]:
    """Measured latency of each budget baseline on each target (ms; ``measure_spaced``:
    the median of the fastest 3 passes, in rounds the target's ``pass_gap_s`` apart, more
    taken while they disagree).

    Kept in ``budgets.json`` so that every search and every script of the scale uses the
    same budgets, measured once.
    """
    path = work / "budgets.json"
    known: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}
    missing = [t for t in targets if t not in known]
    for target in missing:
        spec = load_target(target)
        with LatencyMeter(spec) as meter:
            measured = measure_spaced(
                {
                    label: partial(meter.measure_arch, preset(name))
                    for label, name in BUDGET_BASELINES.items()
                },
                gap_s=spec.pass_gap_s,
            )
        known[target] = {label: m.latency_ms for label, m in measured.items()}
    if missing:
        write_json_atomic(path, known)
    return known


@dataclass(frozen=True)
class SearchCase:
    target: str
    baseline: str  # key of BUDGET_BASELINES
    proxy: str  # measured | flops
    budget_ms: float

    @property
    def name(self) -> str:
        return f"{Path(self.target).stem}-{self.baseline}-{self.proxy}"


def cases(
    scale: str, work: Path, proxy: str, targets: tuple[str, ...] = CPU_TARGETS
) -> list[SearchCase]:
    measured, slack = budgets(work, targets), SCALES[scale].budget_slack
    return [
        SearchCase(t, b, proxy, measured[t][b] * slack) for t in targets for b in BUDGET_BASELINES
    ]


class Prepared(NamedTuple):
    """What the searching scripts start from, in this order: the budgets are measured
    before any training runs on the machine, then the supernet is trained (or found)."""

    work: Path
    trials: int  # per search
    data: DataSplits
    cases: list[SearchCase]  # the measured-latency searches, one per target and budget
    supernet: Path


def prepare(args: argparse.Namespace) -> Prepared:
    """From the parsed options of :func:`argument_parser` plus ``--targets``."""
    work = work_dir(args.scale, args.work)
    data = data_of(args.scale)
    measured = cases(args.scale, work, "measured", args.targets)
    trials = args.trials or SEARCH_TRIALS[args.scale]
    return Prepared(work, trials, data, measured, supernet(args.scale, work, data))


def search(
    scale: str, work: Path, case: SearchCase, supernet_path: Path, trials: int, data: DataSplits
) -> Path:
    """Run (or finish) one search; returns its run folder (pareto.csv, summary.json)."""
    run = work / "searches" / case.name
    if not (run / "summary.json").exists() or _trials_done(run) < trials:
        print(f"== search {case.name}: budget {case.budget_ms:.2f} ms, {trials} trials")
        run_search(
            SearchOptions(
                latency_budget_ms=case.budget_ms,
                target=case.target,
                space=SPACES[scale],
                supernet=supernet_path,
                data=SCALES[scale].data,
                trials=trials,
                run=run,
                study_name=case.name,
                proxy=case.proxy,
                device=SCALES[scale].device,
                bn_batches=SCALES[scale].bn_batches,
                # start from the hand-designed net at the budget and the smallest arch
                start_archs=(BUDGET_BASELINES[case.baseline], space_for(scale, data).min_arch),
            )
        )
    return run


def _trials_done(run: Path) -> int:
    path = run / "summary.json"
    return int(json.loads(path.read_text())["trials"]["complete"]) if path.exists() else 0


def front(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "pareto.csv")


def chosen(run: Path) -> tuple[ArchConfig, dict[str, Any]]:
    """The search's pick: the front arch with the best supernet validation accuracy."""
    rows = front(run)
    if rows.empty:
        raise RuntimeError(f"{run}: the search found no arch within the budget")
    best = rows.sort_values(["val_acc", "latency_ms"], ascending=[False, True]).iloc[0]
    arch = arch_of(load_checkpoint(run / str(best["checkpoint"]), kind="model"))
    return arch, json.loads(best.to_json())  # plain Python values


def shortlist(run: Path, budget_ms: float, size: int) -> list[tuple[ArchConfig, float]]:
    """The search's pick (:func:`chosen`), then the archs with the next best supernet
    estimates among those its trials measured within ``budget_ms``: ``size`` archs at most.
    The estimate on 1,000 validation images is about as much noise as signal among archs of
    the space (supernet_ranking's split-half check), so the best estimate alone is close to
    a draw; a shortlist retrained and chosen by validation accuracy is what SPOS does."""
    pick, row = chosen(run)
    rest = trials(run)
    rest = rest[(rest["latency_ms"] <= budget_ms) & (rest["arch_hash"] != pick.hash)]
    rest = rest.sort_values(["val_acc", "latency_ms"], ascending=[False, True])
    rest = rest.drop_duplicates("arch_hash").iloc[: max(0, size - 1)]
    runners_up = zip(rest["arch"], rest["val_acc"].astype(float), strict=True)
    return [(pick, float(row["val_acc"])), *runners_up]


def trials(run: Path) -> pd.DataFrame:
    """Every evaluated arch of a search (arch hash, val acc, latency if measured, FLOPs)."""
    return collect(run).trials


def retrain(scale: str, work: Path, arch: ArchConfig, data: DataSplits) -> Path:
    """``arch`` trained from scratch with the scale's standalone recipe."""
    s = SCALES[scale]
    out = work / "retrain" / arch.hash
    final = out / FINAL["model"]
    if not final.exists():
        print(f"== retraining {arch.short_name()} ({arch.hash}) into {out}")
        train(arch, data, s.recipe(), out, device=s.device, resume=(out / STATE).exists())
    return final


def parse_short_name(name: str, space: SearchSpace) -> ArchConfig:
    """The arch an ``ArchConfig.short_name()`` names, the rest from ``space``'s fixed axes."""
    m = re.fullmatch(r"w(\S+) r(\S+) s(\S+) k(\S+) @(\d+)", name)
    if m is None:
        raise ValueError(f"not an arch short name: {name!r}")
    w, r, s, k, res = m.groups()
    base = space.max_arch
    return base.replace(
        widths=tuple(int(v) for v in w.split("-")),
        repeats=tuple(int(v) for v in r.split("-")),
        split_ratios=tuple(float(v) for v in s.split("-")),
        kernels=tuple(int(v) for v in k.split("-")),
        resolution=int(res),
    )
