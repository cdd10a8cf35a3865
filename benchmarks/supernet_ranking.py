"""Supernet ranking quality: does the supernet order archs as training them alone would?

    python benchmarks/supernet_ranking.py --scale cpu

For ``--archs`` archs (default 10) spread over the space, the supernet's estimate
(validation accuracy of the extracted sub-net after BatchNorm recalibration, as the
search scores it) is compared with the validation accuracy of the same arch trained from
scratch with the benchmark recipe: Kendall tau over the archs. The archs: ShuffleNetV2
x0.5 and x1.0 (trained by benchmarks/baselines.py), the picks search.py retrained, and
archs sampled from the space at evenly spaced FLOPs quantiles up to ``--max-mflops``
(default: 1.5x the FLOPs of x1.0, the region the searches' budgets reach), trained here.
Shares ``--work`` with search.py (supernet, retrained nets). Writes
results/supernet_ranking_<scale>.{json,md}.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _cifar
from _common import SCALES, publish
from baselines import MODELS, train_baselines

from nas import preset
from nas.arch import ArchConfig
from nas.checkpoint import arch_of, load_checkpoint, supernet_from_checkpoint
from nas.latency import kendall_tau
from nas.models import count_flops
from nas.space import SearchSpace
from nas.train import FINAL, subnet_accuracy

POOL_PER_ARCH = 25  # random archs drawn per arch wanted (FLOPs counting costs ~0.15 s each)


def spread_archs(
    space: SearchSpace, count: int, max_flops: float, exclude: set[str], seed: int = 0
) -> list[ArchConfig]:
    """``count`` archs at evenly spaced FLOPs quantiles of random archs under ``max_flops``."""
    if count <= 0:
        return []
    rng = random.Random(seed)
    pool: dict[str, tuple[int, ArchConfig]] = {}
    for _ in range(POOL_PER_ARCH * count):
        arch = space.sample(rng)
        flops = count_flops(arch)
        if flops <= max_flops and arch.hash not in exclude:
            pool[arch.hash] = (flops, arch)
    ordered = [a for _, a in sorted(pool.values(), key=lambda p: p[0])]
    if len(ordered) < count:
        raise RuntimeError(f"only {len(ordered)} distinct archs under {max_flops / 1e6:.0f} MFLOPs")
    step = (len(ordered) - 1) / max(1, count - 1)
    return [ordered[round(i * step)] for i in range(count)]


def main() -> None:
    parser = _cifar.argument_parser(__doc__, searches=False)
    parser.add_argument("--baselines-work", type=Path, help="default runs/bench-baselines-<scale>")
    parser.add_argument("--archs", type=int, default=10, help="archs compared (>= 3)")
    parser.add_argument("--max-mflops", type=float, help="largest sampled arch (MFLOPs)")
    args = parser.parse_args()
    if args.archs < 3:
        parser.error("--archs must be >= 3 for a rank correlation")
    started = time.time()
    work = _cifar.work_dir(args.scale, args.work)
    data = _cifar.data_of(args.scale)
    space = _cifar.space_for(args.scale, data)
    supernet_path = _cifar.supernet(args.scale, work, data)

    # Standalone nets that exist already: the two baselines and the search's retrained picks.
    wanted = {k: v for k, v in MODELS.items() if v in _cifar.BUDGET_BASELINES.values()}
    baselines = train_baselines(
        args.scale, args.baselines_work or Path(f"runs/bench-baselines-{args.scale}"), wanted
    )
    trained: dict[str, tuple[str, Path]] = {}
    for label, path in baselines.items():
        trained[arch_of(load_checkpoint(path, kind="model")).hash] = (label, path)
    # The picks of the finished measured-latency searches (search.py), not every net under
    # retrain/: the spread archs trained there must not change the spread on a resume.
    for run in sorted((work / "searches").glob("*-measured")):
        if (run / "summary.json").exists():
            arch, _ = _cifar.chosen(run)
            pick = work / "retrain" / arch.hash / FINAL["model"]
            if pick.exists():
                trained.setdefault(arch.hash, ("search pick", pick))
    max_flops = (
        args.max_mflops or 1.5 * count_flops(preset(_cifar.BUDGET_BASELINES["x1.0"])) / 1e6
    ) * 1e6
    for arch in spread_archs(space, args.archs - len(trained), max_flops, set(trained)):
        trained[arch.hash] = ("spread", _cifar.retrain(args.scale, work, arch, data))

    supernet = supernet_from_checkpoint(load_checkpoint(supernet_path, kind="supernet"))
    rows: list[dict[str, Any]] = []
    for arch_hash, (source, path) in trained.items():
        payload = load_checkpoint(path, kind="model")
        arch = arch_of(payload)
        estimate = subnet_accuracy(
            supernet, arch, data, SCALES[args.scale].bn_batches, device=SCALES[args.scale].device
        )
        rows.append(
            {
                "arch": arch.short_name(),
                "arch_hash": arch_hash,
                "source": source,
                "mflops": count_flops(arch) / 1e6,
                "supernet_val_acc": estimate["acc"],
                "standalone_val_acc": payload["metrics"]["val_acc"],
                "standalone_test_acc": payload["metrics"]["test_acc"],
            }
        )
    rows.sort(key=lambda r: r["mflops"])
    tau = kendall_tau(
        [r["supernet_val_acc"] for r in rows], [r["standalone_val_acc"] for r in rows]
    )
    tau_test = kendall_tau(
        [r["supernet_val_acc"] for r in rows], [r["standalone_test_acc"] for r in rows]
    )
    tau_flops = kendall_tau([r["mflops"] for r in rows], [r["standalone_val_acc"] for r in rows])
    columns = list(rows[0])
    s = SCALES[args.scale]
    sr = s.supernet_recipe()
    notes = (
        f"**Kendall tau, supernet estimate vs standalone validation accuracy: {tau:.3f}** over "
        f"{len(rows)} archs (vs standalone test accuracy: {tau_test:.3f}; FLOPs alone vs "
        f"standalone validation accuracy: {tau_flops:.3f}, the trivial ranking to beat). "
        f"Supernet: {sr.epochs} epochs {sr.strategy}, lr {sr.lr:g}; estimate after "
        "recalibrating BatchNorm on "
        f"{s.bn_batches} training batches. Standalone: {s.epochs} epochs, batch {s.batch_size}, "
        f"lr {s.lr}; spread archs drawn at FLOPs quantiles up to {max_flops / 1e6:.0f} MFLOPs."
    )
    extra = {
        "kendall_tau": tau,
        "kendall_tau_test": tau_test,
        "kendall_tau_flops": tau_flops,
        "work": str(work),
        "max_mflops": max_flops / 1e6,
        "wall_s": time.time() - started,
    }
    publish("supernet_ranking", args.scale, rows, extra, columns, notes, args.results)


if __name__ == "__main__":
    main()
