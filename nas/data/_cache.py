"""On-disk cache of decoded images: ``.npy`` arrays memory-mapped on later runs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = 1


def cache_root() -> Path:
    """``$NAS_CACHE_DIR`` or ``~/.cache/shufflenas``."""
    env = os.environ.get("NAS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "shufflenas"


@dataclass
class Decoded:
    """All images of a source: ``images`` (N, C, S, S) uint8, ``labels`` (N,), ``splits``
    (N,) with 0 = train, 1 = test, 2 = pool (no split given); within a class, rows follow
    the file names' sort order."""

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    classes: list[str]


SPLIT_CODES = {"train": 0, "test": 1, "pool": 2}


def load_or_build(key: str, build: Callable[[], Decoded], describe: dict[str, Any]) -> Decoded:
    """The cached arrays for ``key``, building and storing them first if needed."""
    root = cache_root() / "data" / key
    if not (root / "meta.json").exists():
        decoded = build()
        _store(root, decoded, describe)
    meta = json.loads((root / "meta.json").read_text())
    # copy-on-write maps: pages load lazily, and torch gets writable arrays.
    return Decoded(
        images=np.load(root / "images.npy", mmap_mode="c"),
        labels=np.load(root / "labels.npy"),
        splits=np.load(root / "splits.npy"),
        classes=list(meta["classes"]),
    )


def _store(root: Path, decoded: Decoded, describe: dict[str, Any]) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.save(tmp / "images.npy", np.ascontiguousarray(decoded.images))
    np.save(tmp / "labels.npy", decoded.labels.astype(np.int64))
    np.save(tmp / "splits.npy", decoded.splits.astype(np.uint8))
    meta = {
        "version": CACHE_VERSION,
        "classes": decoded.classes,
        "source": describe,
        "shape": list(decoded.images.shape),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))  # written last: marks complete
    try:
        os.rename(tmp, root)
    except OSError:  # another process finished the same cache first; theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
