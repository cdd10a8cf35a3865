"""``load_data``: a source's images as train / validation / test tensors, split once."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nas._errors import DataError
from nas.data._cache import SPLIT_CODES, load_or_build
from nas.data._sources import resolve_source
from nas.io import Record


@dataclass(frozen=True)
class DataSpec(Record):
    """Where the data comes from and how it is split.

    The validation split is carved from the training images per class with a fixed seed;
    search and tuning use it. The test split is only for final reporting. With
    ``train_per_class`` only the first N training images per class (by file name) are
    trained on and validation is drawn from the others. ``test_per_class`` reports test
    accuracy on the first N test images per class (smoke runs; the full split otherwise).
    """

    source: str = "embedded"
    val_fraction: float = 0.1
    val_per_class: int | None = None
    train_per_class: int | None = None
    test_per_class: int | None = None
    test_fraction: float = 0.1  # only for sources without a test split
    split_seed: int = 0
    channels: int | None = None  # None: as stored; 1 or 3 converts (gray <-> RGB)
    image_size: int | None = None  # stored image size; None: native (or median if mixed)

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise DataError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0.0 < self.test_fraction < 1.0:
            raise DataError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        for name in ("val_per_class", "train_per_class", "test_per_class", "image_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DataError(f"{name} must be >= 1, got {value}")
        if self.channels not in (None, 1, 3):
            raise DataError(f"channels must be 1 or 3, got {self.channels}")

    def same_split(self, other: DataSpec) -> bool:
        """Whether ``other`` splits its source the same way: every split setting equal but
        ``test_per_class`` (how much of the test split is reported; training and validation
        stay as they are). The source is left out: whether two sources hold the same
        images is for the loaded data's ``info["cache_key"]`` (a content digest) to say,
        whatever path or name they are given by."""

        def key(spec: DataSpec) -> DataSpec:
            return dataclasses.replace(spec, source="", test_per_class=None)

        return key(self) == key(other)


@dataclass
class Split:
    """Images ``(N, C, H, W)`` uint8 and labels ``(N,)`` int64 of one split."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.numel())


@dataclass
class DataSplits:
    train: Split
    val: Split
    test: Split
    classes: list[str]
    mean: tuple[float, ...]  # per channel, of the training split, in [0, 1] units
    std: tuple[float, ...]
    info: dict[str, Any] = field(default_factory=dict)  # recorded in checkpoints and results

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])


def load_data(spec: DataSpec | str = "embedded", workers: int | None = None) -> DataSplits:
    """Load (from the decoded cache when possible) and split ``spec``'s images."""
    if isinstance(spec, str):
        spec = DataSpec(source=spec)
    start = time.perf_counter()
    source = resolve_source(spec.source, spec.image_size, workers)
    decoded = load_or_build(source.key, source.build, source.describe)
    if len(decoded.classes) < 2:
        raise DataError(
            f"data source {source.name} has {len(decoded.classes)} class; "
            "classification needs at least 2 class folders"
        )
    train_pool, test_idx = _train_test(decoded.labels, decoded.splits, spec)
    train_idx, val_idx = _carve_validation(decoded.labels, train_pool, spec)
    images = torch.from_numpy(decoded.images)
    labels = torch.from_numpy(decoded.labels)

    def take(idx: np.ndarray) -> Split:
        index = torch.from_numpy(idx)
        return Split(_convert(images[index], spec.channels), labels[index].clone())

    train, val, test = take(train_idx), take(val_idx), take(test_idx)
    mean, std = _channel_stats(train.images)
    info = {
        "spec": spec.to_dict(),
        **source.describe,
        "cache_key": source.key,
        "classes": list(decoded.classes),
        "counts": {"train": len(train), "val": len(val), "test": len(test)},
        "image_size": int(images.shape[-1]),
        "channels": int(train.images.shape[1]),
        "test_carved": bool((decoded.splits == SPLIT_CODES["pool"]).any()),
        "load_seconds": round(time.perf_counter() - start, 3),
    }
    return DataSplits(train, val, test, list(decoded.classes), mean, std, info)


def _train_test(
    labels: np.ndarray, splits: np.ndarray, spec: DataSpec
) -> tuple[np.ndarray, np.ndarray]:
    train = np.flatnonzero(splits == SPLIT_CODES["train"])
    test = np.flatnonzero(splits == SPLIT_CODES["test"])
    pool = np.flatnonzero(splits == SPLIT_CODES["pool"])
    if len(pool):  # no split in the source: carve a seeded, per-class test split
        rng = np.random.default_rng([spec.split_seed, 1])
        held = []
        for c in np.unique(labels[pool]):
            members = pool[labels[pool] == c]
            n = max(1, round(spec.test_fraction * len(members)))
            held.append(np.sort(rng.permutation(members)[:n]))
        test = np.sort(np.concatenate([test, *held]))
        train = np.setdiff1d(np.concatenate([train, pool]), test)
    if not len(train):
        raise DataError("the data source has no training images (train/<class>/...)")
    if not len(test):
        raise DataError("the data source has no test images (test/<class>/...)")
    if spec.test_per_class is not None:  # the first N per class, in file-name order
        n = spec.test_per_class
        test = np.sort(
            np.concatenate([test[labels[test] == c][:n] for c in np.unique(labels[test])])
        )
    return train, test


def _carve_validation(
    labels: np.ndarray, train: np.ndarray, spec: DataSpec
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([spec.split_seed, 2])
    keep, val = [], []
    for c in np.unique(labels[train]):
        members = train[labels[train] == c]  # file-name order
        if spec.train_per_class is not None:
            if len(members) <= spec.train_per_class:
                raise DataError(
                    f"class {c} has {len(members)} training images; train_per_class="
                    f"{spec.train_per_class} leaves none for validation"
                )
            head, rest = members[: spec.train_per_class], members[spec.train_per_class :]
        else:
            head, rest = members, members
        n_val = spec.val_per_class or max(1, round(spec.val_fraction * len(head)))
        if len(members) < 2 or n_val > len(rest) or (rest is head and n_val >= len(head)):
            raise DataError(
                f"class {c} has {len(members)} training images: too few to carve "
                f"{n_val} for validation"
            )
        chosen = np.sort(rng.permutation(rest)[:n_val])
        val.append(chosen)
        keep.append(np.setdiff1d(head, chosen) if rest is head else head)
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(val))


def _convert(images: torch.Tensor, channels: int | None) -> torch.Tensor:
    if channels is None or channels == images.shape[1]:
        return images.contiguous()
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and deviation in [0, 1] units, from 256-bin histograms."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    mean, std = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].flatten(), minlength=256).to(torch.float64)
        p = counts / counts.sum()
        m = float((p * values).sum())
        mean.append(round(m, 6))
        std.append(round(max(float((p * values * values).sum()) - m * m, 1e-12) ** 0.5, 6))
    return tuple(mean), tuple(std)
