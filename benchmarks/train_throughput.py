"""Training throughput (images/s): our tensor pipeline vs torchvision DataLoader + PIL.

    python benchmarks/train_throughput.py --scale cpu

Every row is a real training run (``nas.train.train``: loading, augmentation, forward,
backward, SGD step) on the same data; images/s is taken at the median step, so warm-up
and hiccups do not count. The baseline feeds the same model from a torchvision
``ImageFolder`` with PIL transforms (random crop with 4-px reflect padding, flip,
ToTensor, Normalize) through a ``DataLoader``; ratios compare rows measured in this run.
At ``gpu`` scale (CUDA) batches are 256 with bf16 autocast and channels-last.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results

from nas import ArchConfig, load_space, preset
from nas.data import DataSpec, embedded_archive, load_data
from nas.models import ShuffleNetV2, count_flops
from nas.train import TrainConfig, train


def ours(subject: ArchConfig | Any, data, config: TrainConfig, device: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        metrics = train(
            subject,
            data,
            config,
            out,
            device=device,
            progress=False,
            report_test=False,
            log=lambda _: None,
        )
    return float(metrics["img_per_s"])


def torchvision_baseline(
    arch: ArchConfig,
    folder: Path,
    mean,
    std,
    batch_size: int,
    steps: int,
    workers: int,
    device: str,
) -> float:
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4, padding_mode="reflect"),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    dataset = datasets.ImageFolder(str(folder / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )
    torch.manual_seed(0)
    model = ShuffleNetV2(arch).to(device).train()
    opt = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    times: list[float] = []
    batches = iter(loader)
    while len(times) < steps:
        start = time.perf_counter()
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        x, y = x.to(device), y.to(device)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y, label_smoothing=0.1).backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per row")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (baseline)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if args.scale == "gpu" else "cpu"
    batch = 256 if args.scale == "gpu" else 128
    data = load_data(DataSpec("embedded"))
    space = load_space()
    config = TrainConfig(epochs=1, batch_size=batch, steps_per_epoch=args.steps, eval_every=0)
    archs = {
        "x0.5": preset("shufflenet_v2_x0_5_cifar"),
        "x1.0": preset("shufflenet_v2_x1_0_cifar"),
        "space min": space.min_arch,
        "space max": space.max_arch,
    }
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(embedded_archive()) as tar:
            tar.extractall(tmp, filter="data")
        ours(archs["x0.5"], data, config, device)  # one-time warm-up of kernels and caches
        for name, arch in archs.items():
            compare = name in ("x0.5", "x1.0")
            # ours and the baseline alternate, so drift of the machine hits both alike
            mine, base = [], []
            for _ in range(args.rounds if compare else 1):
                mine.append(ours(arch, data, config, device))
                if compare:
                    base.append(
                        torchvision_baseline(
                            arch,
                            Path(tmp),
                            data.mean,
                            data.std,
                            batch,
                            args.steps,
                            args.workers,
                            device,
                        )
                    )
            row: dict[str, Any] = {
                "model": name,
                "pipeline": "shufflenas (tensor batches)",
                "img_per_s": statistics.median(mine),
                "mflops": count_flops(arch) / 1e6,
            }
            rows.append(row)
            if compare:
                rows.append(
                    {
                        "model": name,
                        "pipeline": f"torchvision DataLoader+PIL ({args.workers} workers)",
                        "img_per_s": statistics.median(base),
                        "mflops": row["mflops"],
                    }
                )
                row["speedup_vs_torchvision"] = row["img_per_s"] / rows[-1]["img_per_s"]
            print(*rows[-2 if compare else -1 :], sep="\n", flush=True)
    for strategy in ("sandwich", "spos"):
        rate = ours(
            space,
            data,
            TrainConfig(
                epochs=1,
                batch_size=batch,
                strategy=strategy,
                steps_per_epoch=args.steps,
                eval_every=0,
            ),
            device,
        )
        rows.append(
            {
                "model": f"supernet ({strategy})",
                "pipeline": "shufflenas (tensor batches)",
                "img_per_s": rate,
                "mflops": None,
            }
        )
        print(rows[-1], flush=True)
    for row in rows:
        row.setdefault("speedup_vs_torchvision", None)
    write_results(
        "train_throughput",
        args.scale,
        rows,
        {
            "batch_size": batch,
            "steps": args.steps,
            "data": "embedded (CIFAR-10 subset, 32 px)",
            "space": space.name,
        },
        ["model", "pipeline", "img_per_s", "speedup_vs_torchvision", "mflops"],
        notes=(
            f"Images/s at the median training step (data loading, augmentation, forward, "
            f"backward, SGD step), batch {batch}. Supernet rows count each image once per "
            "step (sandwich runs 4 sub-nets on it: largest, smallest, 2 random)."
        ),
    )


if __name__ == "__main__":
    main()
