"""Small real image folders for data tests."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def require(missing: str | None) -> None:
    """Skip a test whose real component (a PostgreSQL server, Chromium) is ``missing``
    (the reason), except in CI (``CI=true``), where .ci/run installs it: there a missing
    component fails the test, so a green run means the real tests ran."""
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {missing}")
    pytest.skip(missing)


def make_image_folder(
    root: Path,
    classes: int = 3,
    train: int = 12,
    test: int = 4,
    size: tuple[int, int] = (32, 32),
    mode: str = "RGB",
    layout: str = "split",
    ext: str = "png",
) -> Path:
    """Images whose top-left pixel encodes a unique id (lossless PNG keeps it exact)."""
    rng = np.random.default_rng(0)
    uid = 0
    for c in range(classes):
        for split, count in (("train", train), ("test", test)):
            if layout == "flat" and split == "test":
                continue
            n = count + (test if layout == "flat" else 0)
            folder = root / (f"class{c}" if layout == "flat" else f"{split}/class{c}")
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = size
                shape = (h, w) if mode == "L" else (h, w, 3)
                pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
                pixels[0, 0] = uid % 256
                pixels[0, 1] = uid // 256
                Image.fromarray(pixels, mode).save(folder / f"{i:04d}.{ext}")
                uid += 1
    return root


def image_ids(images) -> set[int]:
    return {
        int(a) + 256 * int(b) for a, b in zip(images[:, 0, 0, 0], images[:, 0, 0, 1], strict=True)
    }


def tar_folder(folder: Path, out: Path, prefix: str = "dataset") -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=prefix)
    return out


def call_cli(main, args, capsys):
    """A command's ``main`` run in this process as its ``__main__`` runs it (one-line errors,
    exit codes): the error paths without paying a new interpreter per case."""
    from nas.cli import run

    try:
        code = run(main, [str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
