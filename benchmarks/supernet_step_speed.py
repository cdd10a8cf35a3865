"""Supernet training-step time on one device, by numeric setting: where does a step go?

    python benchmarks/supernet_step_speed.py --device cuda --out results/

A lent H200 trained the cpu scale's supernet at 2-4 s a step (41 images/s) while
ShuffleNetV2 x1.0 trained beside it at 4,100 images/s. A supernet step differs from a
standalone one in two ways: every step runs a new sub-net (new conv shapes), and convs read
gathered weight columns. This script times supernet steps (forward, backward, SGD step,
synchronised) under each setting in a process of its own, in two phases: ``fresh`` (a new
random sub-net every step, as training does) and ``repeat`` (one sub-net over and over:
every shape already seen). A fresh step much slower than a repeated one is a cost paid per
new shape (kernel selection or compilation), not compute. ``--profile`` adds the top
operators of a few fresh steps under the first setting. Synthetic batches: the data
pipeline is not what is measured (x1.0 beside it ran at 4,100 images/s on the same one).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SETTINGS = {
    # name: (autocast bf16, channels_last, cudnn enabled, cudnn benchmark)
    "bf16-cl": (True, True, True, False),  # what nas.train did on cuda before 2026-12-04
    "fp32-nchw": (False, False, True, False),
    "bf16-cl-nocudnn": (True, True, False, False),
    "bf16-nchw": (True, False, True, False),
    "fp32-nchw-nocudnn": (False, False, False, False),
}


def run_setting(name: str, device: str, steps: int, batch: int, space_file: str) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from nas.models import Supernet
    from nas.space import load_space

    bf16, channels_last, cudnn, benchmark = SETTINGS[name]
    torch.backends.cudnn.enabled = cudnn
    torch.backends.cudnn.benchmark = benchmark
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    space = load_space(space_file)
    model = Supernet(space).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    rng = random.Random(0)

    def step(arch: Any) -> float:
        t0 = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x, arch).float()
        F.cross_entropy(logits, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    step(space.max_arch)  # context, allocator, the largest shapes
    fresh = [step(space.sample(rng)) for _ in range(steps)]
    arch = space.sample(rng)
    step(arch)
    repeat = [step(arch) for _ in range(steps)]
    return {
        "setting": name,
        "fresh_ms": [round(t * 1e3, 2) for t in fresh],
        "repeat_ms": [round(t * 1e3, 2) for t in repeat],
        "fresh_median_ms": statistics.median(fresh) * 1e3,
        "fresh_late_median_ms": statistics.median(fresh[steps // 2 :]) * 1e3,
        "repeat_median_ms": statistics.median(repeat) * 1e3,
    }


def profile(device: str, batch: int, space_file: str, steps: int = 4) -> str:
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from nas.models import Supernet
    from nas.space import load_space

    space = load_space(space_file)
    model = Supernet(space).to(device).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    rng = random.Random(1)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(steps):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = F.cross_entropy(model(x, space.sample(rng)).float(), y)
            loss.backward()
        if device == "cuda":
            torch.cuda.synchronize()
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--space", default="search_spaces/shufflenetv2_cifar.yaml")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per setting")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--render", type=Path, help="write the Markdown of this result JSON")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child: run this setting, print JSON
    args = parser.parse_args()
    if args.render:
        result = json.loads(args.render.read_text())
        args.render.with_suffix(".md").write_text(render(result, result.get("command", "")))
        return
    if args.one:
        print(
            "RESULT "
            + json.dumps(run_setting(args.one, args.device, args.steps, args.batch, args.space))
        )
        return
    rows = []
    for name in args.settings.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--device",
            args.device,
            "--steps",
            str(args.steps),
            "--batch",
            str(args.batch),
            "--space",
            args.space,
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{name}: over {args.timeout} s", flush=True)
            rows.append({"setting": name, "over_s": args.timeout, "steps_run": 2 * args.steps + 2})
            write(args, rows)
            continue
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            print(f"{name}: failed\n{done.stderr[-1500:]}", flush=True)
            continue
        row = json.loads(line[0][7:])
        rows.append(row)
        write(args, rows)
        print(
            f"{name:>18}: fresh {row['fresh_median_ms']:8.1f} ms (late half "
            f"{row['fresh_late_median_ms']:8.1f})  repeat {row['repeat_median_ms']:7.1f} ms",
            flush=True,
        )
    if args.profile:
        table = profile(args.device, args.batch, args.space)
        print(table, flush=True)
        write(args, rows, table)


def write(args: argparse.Namespace, rows: list[dict[str, Any]], table: str = "") -> None:
    from nas.env import machine_info

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "python " + " ".join(sys.argv),
        "device": args.device,
        "batch": args.batch,
        "steps": args.steps,
        "space": args.space,
        "rows": rows,
        "profile": table,
        "machine": machine_info(),
    }
    path = args.out / f"supernet_step_speed_{args.device}.json"
    path.write_text(json.dumps(result, indent=1))
    path.with_suffix(".md").write_text(render(result, result["command"]))


def render(result: dict[str, Any], command: str) -> str:
    lines = [
        f"# Supernet training-step time on {result['device']}, by setting",
        "",
        f"Batch {result['batch']}, {result['steps']} steps a phase, space `{result['space']}`; "
        "forward, backward and SGD step, synchronised. fresh: a new random sub-net every "
        "step (as training does); repeat: one sub-net again and again (no new shapes).",
        "",
        "| setting | fresh, median ms | fresh, late half | repeat, median ms |",
        "|:--|--:|--:|--:|",
    ]
    for r in result["rows"]:
        if "over_s" in r:
            lines.append(
                f"| {r['setting']} | over {r['over_s']:.0f} s for {r['steps_run']} steps "
                "(process start-up included) | | |"
            )
        else:
            lines.append(
                f"| {r['setting']} | {r['fresh_median_ms']:.1f} | "
                f"{r['fresh_late_median_ms']:.1f} | {r['repeat_median_ms']:.1f} |"
            )
    m = result["machine"]
    lines += [
        "",
        f"Command: `{command}`  ",
        f"Machine: {m.get('cuda') or m['cpu']}, torch {m['torch']}, Python {m['python']}",
    ]
    if result.get("profile"):
        lines += [
            "",
            "Top operators of 4 fresh steps in bf16 channels-last (self CPU time):",
            "",
            "```",
            result["profile"].rstrip(),
            "```",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
