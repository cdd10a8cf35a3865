"""Find the images of a source and their (split, class) from an ImageFolder layout.

Accepted layouts, in a directory or in a ``.tar`` / ``.tar.gz`` (a shared top-level folder
is skipped):

* ``train/<class>/<image>`` and ``test/<class>/<image>`` (``val/`` or ``valid/`` stand for
  the held-out split when there is no ``test/``);
* ``<class>/<image>``: one pool; a seeded test split is carved from it.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from nas._errors import DataError

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
)
_HELD_OUT = ("test", "val", "valid", "validation")
LAYOUT_HELP = (
    "expected train/<class>/<image> and test/<class>/<image>, or <class>/<image> "
    f"(images: {', '.join(IMAGE_EXTENSIONS)})"
)


@dataclass(frozen=True)
class Record:
    split: str  # "train", "test", or "pool" (no split given: test is carved later)
    label: str
    name: str  # path inside the source, for error messages and ordering
    data: bytes


def is_image(name: str) -> bool:
    base = os.path.basename(name)
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def read_directory(root: Path) -> list[Record]:
    entries: list[tuple[tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in filenames:
            if is_image(filename):
                path = Path(dirpath, filename)
                entries.append((path.relative_to(root).parts, path))
    if not entries:
        raise DataError(f"data folder {root} has no images: {LAYOUT_HELP}")
    placed = assign_splits([parts for parts, _ in entries], str(root))
    records = []
    for (split, label), (parts, path) in zip(placed, entries, strict=True):
        try:
            records.append(Record(split, label, "/".join(parts), path.read_bytes()))
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return records


def read_tar(path: Path) -> list[Record]:
    members: list[tuple[tuple[str, ...], bytes]] = []
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in _files(archive):
                if not is_image(member.name):
                    continue
                stream = archive.extractfile(member)
                if stream is not None:
                    parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
                    members.append((parts, stream.read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(
            f"cannot read archive {path}: {exc} (is it a complete .tar/.tar.gz?)"
        ) from None
    if not members:
        raise DataError(f"archive {path} has no images: {LAYOUT_HELP}")
    placed = assign_splits([parts for parts, _ in members], str(path))
    return [
        Record(split, label, "/".join(parts), data)
        for (split, label), (parts, data) in zip(placed, members, strict=True)
    ]


def _files(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in archive:
        if member.isfile():
            yield member


def assign_splits(paths: Sequence[tuple[str, ...]], where: str) -> list[tuple[str, str]]:
    """``(split, class)`` of every path, after dropping a folder all paths share."""
    while (
        len({p[0] for p in paths}) == 1
        and all(len(p) > 2 for p in paths)
        and paths[0][0].lower() not in ("train", *_HELD_OUT)
    ):
        paths = [p[1:] for p in paths]
    depths = {len(p) for p in paths}
    tops = {p[0].lower() for p in paths}
    if depths == {3} and "train" in tops:
        held_out = [t for t in _HELD_OUT if t in tops]
        extra = tops - {"train", *held_out[:1]}
        if extra or len(held_out) > 1:
            raise DataError(f"{where}: unexpected split folders {sorted(tops)}: {LAYOUT_HELP}")
        return [("train" if p[0].lower() == "train" else "test", p[1]) for p in paths]
    if depths == {2}:
        return [("pool", p[0]) for p in paths]
    deepest: tuple[str, ...] = max(paths, key=lambda p: len(p))
    example = "/".join(deepest)
    raise DataError(
        f"{where}: images are not laid out as an ImageFolder (e.g. {example}): {LAYOUT_HELP}"
    )
