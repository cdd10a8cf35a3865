"""The whole pipeline, timed: supernet, search, baselines, pruning, int8, report.

    python benchmarks/pipeline.py --scale cpu

Runs ``python -m nas.pipeline`` on examples/pipeline-cifar10-<scale>.yaml (``tiny``: a
few steps of each stage on the embedded data, for CI) into ``--run`` and reports the wall
time of every stage from the run's pipeline.json, against the issue's goals (under 3
hours at the cpu scale, under 30 minutes on one GPU). A killed run resumes where it
stopped; stage times add up over the attempts (``resumed`` says it happened); run on a
finished run, it re-runs nothing and republishes its figures (``republished``). The
models the run produced (accuracy and measured latency, from its report) come with the
stage times. Writes results/pipeline_<scale>.{json,md} (``--tag T``: pipeline-T_<scale>).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SCALES, publish

from nas.pipeline import HEARTBEAT_S, STAGES, load_pipeline, run_pipeline
from reports import DELIVERED, dominance, format_dominance

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GOAL_S = {"cpu": 3 * 3600, "gpu": 30 * 60}
TINY = {
    "name": "tiny",
    "data": {"source": "embedded", "train_per_class": 40, "val_per_class": 10},
    "space": "shufflenetv2_cifar",
    "target": "cpu-torch-1t",
    "device": "cpu",
    "supernet": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 32, "lr": 0.02},
    "search": {"latency_budget": "50ms", "trials": 2, "bn_batches": 1, "sampler": "random"},
    "final": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 32},
    "baselines": {
        "models": ["shufflenet_v2_x0_5_cifar"],
        "train": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 32},
    },
    "prune": {"ratio": 0.3, "steps": 1, "finetune_epochs": 0, "models": 1},
    "quantize": {"calib_batches": 1, "variants": "gather-qdq-per-tensor"},
    "report": {"targets": ["cpu-torch-1t"], "passes": 1},
}


def config_path(scale: str, folder: Path) -> Path:
    if scale != "tiny":
        return EXAMPLES / f"pipeline-cifar10-{scale}.yaml"
    path = folder / "pipeline-tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def read_record(run: Path) -> dict[str, Any]:
    path = run / "pipeline.json"
    return json.loads(path.read_text()) if path.exists() else {}


def stage_finished(info: dict[str, Any]) -> bool:
    """Whether a stage's work is behind it: it ran to the end once, it found its output
    already there, or it is left out."""
    return "finished" in info or str(info.get("status", "")).startswith(("left out", "skipped"))


GIVEN = "given_outputs.json"


def given_outputs(run: Path, before: dict[str, Any]) -> list[str]:
    """Checkpoints that were in the run folder before its first attempt (trained elsewhere,
    so not timed by this run): listed then, in ``RUN/given_outputs.json``, and read back on
    every later call."""
    path = run / GIVEN
    if path.exists():
        return list(json.loads(path.read_text()))
    if before or not run.exists():
        return []
    found = sorted(str(p.relative_to(run)) for p in run.rglob("*.pt"))
    if found:
        path.write_text(json.dumps(found, indent=1) + "\n")
    return found


def shown_path(path: Path) -> str:
    """A config path as a reader can type it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


OUTCOME_COLUMNS = ["target", "role", "name", "val_acc", "test_acc", "latency_ms"]


def outcome_rows(run: Path) -> list[dict[str, Any]]:
    """What the run produced, from its report: every model on every target."""
    path = run / "report" / "results.csv"
    if not path.exists():
        return []
    frame = pd.read_csv(path)[OUTCOME_COLUMNS]
    return [
        {key: (None if pd.isna(value) else value) for key, value in row.items()}
        for row in frame.to_dict("records")
    ]


def outcome_notes(run: Path) -> str:
    rows = outcome_rows(run)
    if not rows:
        return ""
    table = (
        pd.DataFrame(rows).astype(object).to_markdown(index=False, floatfmt=".4g", missingval="–")
    )
    return (
        "\n\nWhat the run produced (from its report, `report/results.csv`; validation "
        "accuracy selects, test is reported only; latency: median of the report's passes):"
        f"\n\n{table}"
    )


def answer_notes(rows: list[dict[str, Any]]) -> str:
    """The report's answer, from the outcome rows: each baseline against the best front
    model no slower on each target, then against the front and its compressed forms."""
    if not rows:
        return ""
    frame = pd.DataFrame(rows)
    parts = []
    for target, part in frame.groupby("target", sort=False):
        for roles, label in (
            (("front",), "the trained front"),
            (DELIVERED, "the front and its pruned and int8 forms"),
        ):
            table = dominance(part, roles)
            if table.empty or (roles == DELIVERED and not part["role"].isin(roles[1:]).any()):
                continue
            shown = format_dominance(table).to_markdown(index=False, disable_numparse=True)
            parts.append(f"`{target}`, each baseline against {label}:\n\n{shown}")
    if not parts:
        return ""
    return (
        "\n\nThe answer (as the report computes it: among the models measured no slower than "
        "a baseline, the one validation accuracy picks; the gain in test points):\n\n"
        + "\n\n".join(parts)
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", choices=tuple(SCALES), default="cpu")
    parser.add_argument(
        "--run", type=Path, help="run folder (default runs/bench-pipeline[-<tag>]-<scale>)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--config", type=Path, help="another pipeline YAML than the scale's")
    parser.add_argument(
        "--tag", help="results/pipeline-<tag>_<scale> (and run folder), for another config"
    )
    args = parser.parse_args()
    name = f"pipeline-{args.tag}" if args.tag else "pipeline"
    run = args.run or Path(f"runs/bench-{name}-{args.scale}")
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.config or config_path(args.scale, Path(tmp))
        config = load_pipeline(source)
        config = dataclasses.replace(config, run=run)
        before = read_record(run)
        given_files = given_outputs(run, before)
        record = run_pipeline(config)
        settings = yaml.safe_load(source.read_text())
        shown = "tiny (in the script)" if source.parent == Path(tmp) else f"`{shown_path(source)}`"
    finished_before = bool(before) and all(
        stage_finished(before.get("stages", {}).get(stage, {})) for stage in STAGES
    )
    resumed = bool(before) and not finished_before
    rows: list[dict[str, Any]] = [
        {
            "stage": stage,
            "status": "done" if "finished" in info else info.get("status"),
            "wall_min": info.get("seconds", 0.0) / 60,
            "killed_attempts": info.get("interrupted_attempts", 0),
        }
        for stage, info in record["stages"].items()
    ]
    machines = sorted({m for info in record["stages"].values() for m in info.get("machines", [])})
    total = float(record["total_seconds"])
    goal = GOAL_S.get(args.scale)
    killed = sum(row["killed_attempts"] for row in rows)
    given = [row["stage"] for row in rows if str(row["status"]).startswith("skipped")]
    verdict = (
        "not all timed"
        if given or given_files
        else "–"
        if goal is None
        else "goal met"
        if total < goal
        else "goal missed"
    )
    rows.append(
        {"stage": "total", "status": verdict, "wall_min": total / 60, "killed_attempts": killed}
    )
    notes = (
        f"Config: {shown}"
        + (f"; goal: under {goal / 60:.0f} minutes. " if goal else ". ")
        + "Stage times from the run's pipeline.json: the wall time of each stage's work, "
        "summed over resumed attempts (the time between attempts does not count; a killed "
        f"attempt counts up to its last heartbeat, at most {HEARTBEAT_S:.0f} s before it died: "
        "`killed_attempts`)."
        + (" This run resumed an earlier one." if resumed else "")
        + (
            f" Not timed here: {', '.join(given)} (output already in the run folder when "
            "the run started: the total leaves that work out)."
            if given
            else ""
        )
        + (
            " Trained elsewhere and placed in the run folder before its first attempt, so "
            f"not timed here: {', '.join(f'`{f}`' for f in given_files)}."
            if given_files
            else ""
        )
        + (f" Stages ran on several machines: {'; '.join(machines)}." if len(machines) > 1 else "")
        + (" Republished from a run that had already finished." if finished_before else "")
        + outcome_notes(run)
        + answer_notes(outcome_rows(run))
    )
    extra = {
        "run": str(run),
        "resumed": resumed,
        "republished": finished_before,
        "outcome": outcome_rows(run),
        "config": settings,
        "record": json.loads(json.dumps(record, default=str)),
        "wall_s": time.time() - started,
        "total_s": total,
        "machines": machines,
        "given_outputs": given_files,
    }
    publish(name, args.scale, rows, extra, list(rows[0]), notes, args.results)


if __name__ == "__main__":
    main()
