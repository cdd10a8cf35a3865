"""YAML at the edges: read a mapping from a file with errors that name the file and line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from nas._errors import ConfigError
from nas.io import write_text_atomic


def read_yaml_mapping(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """Parse ``path`` as a YAML mapping, raising :class:`ConfigError` on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid syntax"
        raise ConfigError(f"malformed YAML in {what} file {path}{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{what} file {path} must hold a YAML mapping (key: value lines), "
            f"got {type(data).__name__}"
        )
    return data


class _Dumper(yaml.SafeDumper):
    """Safe dumper writing lists of scalars inline (``widths: [48, 96, 192]``)."""


def _represent_list(dumper: Any, data: Any) -> yaml.Node:
    flow = all(not isinstance(item, (dict, list, tuple)) for item in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(tuple, _represent_list)


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML text of ``data``, keys in insertion order, scalar lists inline."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def write_yaml_atomic(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` as YAML via a temporary file and rename, so readers never see half."""
    write_text_atomic(path, dump_yaml(data))
