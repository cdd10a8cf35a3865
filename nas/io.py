"""Files written whole or not at all: a temporary file beside the target, then a rename.

A reader (or a resumed run after a kill) sees either the old file or the new one, never a
half-written one. The temporary name carries the process id, so two writers never share it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and :func:`os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(
    path: str | os.PathLike[str], data: Any, *, sort_keys: bool = False, default: Any = None
) -> Path:
    """Write ``data`` as indented JSON (newline at the end) via :func:`write_text_atomic`."""
    text = json.dumps(data, indent=1, sort_keys=sort_keys, default=default) + "\n"
    return write_text_atomic(path, text)


_R = TypeVar("_R", bound="Record")


class Record:
    """Mixin for the flat dataclasses stored in checkpoints and JSON (recipes, data specs):
    ``to_dict`` is ``dataclasses.asdict``; ``from_dict`` takes the fields this version
    knows and leaves their defaults to the rest, so a file written before a field was
    added still loads."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_R], data: Mapping[str, Any]) -> _R:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})
