"""Named data sources: ``embedded``, ``synthetic``, ``cifar10`` and paths (folder or tar)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from nas._errors import DataError
from nas.data._cache import CACHE_VERSION, SPLIT_CODES, Decoded, cache_root
from nas.data._decode import choose_layout, decode_images
from nas.data._records import Record, read_directory, read_tar

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
SOURCE_HELP = (
    "give 'embedded', 'cifar10' (torchvision download), 'synthetic', an ImageFolder "
    "directory, or a .tar/.tar.gz of one"
)


@dataclass(frozen=True)
class Source:
    """A resolved data source: a cache key and a function producing its decoded arrays."""

    name: str
    key: str
    build: Callable[[], Decoded]
    describe: dict[str, Any]


def embedded_archive() -> Path:
    """The small real CIFAR-10 subset shipped in the package."""
    return Path(str(resources.files("nas.data").joinpath("embedded", "cifar10_subset.tar.gz")))


def resolve_source(
    source: str, image_size: int | None = None, workers: int | None = None
) -> Source:
    if source == "embedded":
        return _archive_source(embedded_archive(), "embedded", image_size, workers)
    if source == "synthetic" or source.startswith("synthetic:"):
        return _synthetic_source(source)
    if source == "cifar10":
        return _torchvision_cifar10()
    path = Path(source).expanduser()
    if path.is_dir():
        listing = sorted(
            (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in path.rglob("*")
            if p.is_file()
        )
        digest = _digest(repr(listing).encode())
        return _records_source(str(path), digest, lambda: read_directory(path), image_size, workers)
    if path.is_file():
        if not path.name.lower().endswith(TAR_SUFFIXES):
            raise DataError(f"data source {path} is a file but not a .tar/.tar.gz: {SOURCE_HELP}")
        return _archive_source(path, str(path), image_size, workers)
    raise DataError(f"data source not found: {source!r}: {SOURCE_HELP}")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _archive_source(path: Path, name: str, image_size: int | None, workers: int | None) -> Source:
    try:
        digest = _file_digest(path)
    except OSError as exc:
        raise DataError(f"cannot read data source {path}: {exc.strerror or exc}") from None
    return _records_source(name, digest, lambda: read_tar(path), image_size, workers)


def _records_source(
    name: str,
    digest: str,
    read: Callable[[], list[Record]],
    image_size: int | None,
    workers: int | None,
) -> Source:
    key = _digest(f"v{CACHE_VERSION}:{digest}:{image_size}".encode())[:24]

    def build() -> Decoded:
        records = sorted(read(), key=lambda r: (r.split, r.label, r.name))
        names = [f"{name}:{r.name}" for r in records]
        blobs = [r.data for r in records]
        size, gray = choose_layout(blobs, names, workers or os.cpu_count() or 1)
        if image_size:
            size = image_size
        images = decode_images(blobs, names, size, gray, workers)
        classes = sorted({r.label for r in records})
        index = {c: i for i, c in enumerate(classes)}
        return Decoded(
            images,
            np.array([index[r.label] for r in records], np.int64),
            np.array([SPLIT_CODES[r.split] for r in records], np.uint8),
            classes,
        )

    return Source(name, key, build, {"source": name, "sha256": digest})


def _synthetic_source(source: str) -> Source:
    """Learnable random images: each class its own colour pattern plus noise."""
    options = {"classes": 10, "size": 32, "channels": 3, "train": 64, "test": 16, "seed": 0}
    if ":" in source:
        for item in source.split(":", 1)[1].split(","):
            key, _, value = item.partition("=")
            if key not in options or not value.isdigit():
                raise DataError(
                    f"bad synthetic option {item!r}: use synthetic:"
                    + ",".join(f"{k}={v}" for k, v in options.items())
                )
            options[key] = int(value)
    if options["classes"] < 2 or options["channels"] not in (1, 3):
        raise DataError("synthetic data needs classes >= 2 and channels 1 or 3")

    def build() -> Decoded:
        rng = np.random.default_rng(options["seed"])
        k, s, c = options["classes"], options["size"], options["channels"]
        patterns = rng.uniform(40, 215, size=(k, c, 4, 4))
        images, labels, splits = [], [], []
        for split, per_class in (("train", options["train"]), ("test", options["test"])):
            for label in range(k):
                base = np.kron(patterns[label], np.ones((s // 4 + 1, s // 4 + 1)))[:, :s, :s]
                noise = rng.normal(0, 30, size=(per_class, c, s, s))
                images.append(np.clip(base + noise, 0, 255).astype(np.uint8))
                labels += [label] * per_class
                splits += [SPLIT_CODES[split]] * per_class
        return Decoded(
            np.concatenate(images),
            np.array(labels, np.int64),
            np.array(splits, np.uint8),
            [f"class{i}" for i in range(k)],
        )

    key = _digest(f"v{CACHE_VERSION}:synthetic:{sorted(options.items())}".encode())[:24]
    return Source(source, key, build, {"source": source, **options})


def _torchvision_cifar10() -> Source:
    root = cache_root() / "torchvision"

    def build() -> Decoded:
        from torchvision.datasets import CIFAR10

        try:
            sets = [CIFAR10(str(root), train=train, download=True) for train in (True, False)]
        except Exception as exc:  # offline, proxy, corrupt download
            raise DataError(
                f"could not get CIFAR-10 through torchvision ({type(exc).__name__}: {exc}); "
                "offline? use --data path/to/cifar10-jpg.tar.gz or --data embedded"
            ) from None
        images = np.concatenate([d.data.transpose(0, 3, 1, 2) for d in sets])
        labels = np.concatenate([np.asarray(d.targets, np.int64) for d in sets])
        splits = np.concatenate(
            [
                np.full(len(d.targets), SPLIT_CODES[s], np.uint8)
                for d, s in zip(sets, ("train", "test"), strict=True)
            ]
        )
        return Decoded(images, labels, splits, list(sets[0].classes))

    key = _digest(f"v{CACHE_VERSION}:torchvision-cifar10".encode())[:24]
    return Source("cifar10", key, build, {"source": "cifar10 (torchvision)"})
