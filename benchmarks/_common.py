"""Shared bits of the benchmark scripts: result files and environment."""

from __future__ import annotations

import datetime
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from nas._env import machine_info

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(
    name: str,
    scale: str,
    rows: list[dict[str, Any]],
    extra: dict[str, Any],
    columns: list[str],
    notes: str = "",
) -> tuple[Path, Path]:
    """``results/<name>_<scale>.json`` (everything) and ``.md`` (table, command, machine)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]])
    payload = {
        "benchmark": name,
        "scale": scale,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **extra,
        "rows": rows,
    }
    json_path = RESULTS / f"{name}_{scale}.json"
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    md_path = RESULTS / f"{name}_{scale}.md"
    md_path.write_text(render_markdown(payload, columns, notes))
    return json_path, md_path


def render_markdown(payload: dict[str, Any], columns: list[str], notes: str = "") -> str:
    """The Markdown page of a result payload (re-renderable from the JSON alone)."""
    frame = pd.DataFrame(payload["rows"])[columns]
    table = (
        frame.astype(object)
        .where(frame.notna(), None)
        .to_markdown(index=False, floatfmt=".4g", missingval="–")
    )
    env = payload["machine"]
    return (
        f"# {payload['benchmark']} ({payload['scale']} scale)\n\n{table}\n\n{notes}\n\n"
        f"Command: `{payload['command']}`  \nMachine: {env['cpu']}, {env['cores']} cores "
        f"({', '.join(env['isa'])}), torch {env['torch']}, {env['torch_threads']} threads, "
        f"Python {env['python']}  \nDate: {payload['date']}\n"
    )
