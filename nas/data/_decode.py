"""Decode image bytes into one uint8 array, in parallel worker processes."""

from __future__ import annotations

import io
import multiprocessing
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from nas._errors import DataError

_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
_CHUNK = 512
T = TypeVar("T")


def _probe_chunk(blobs: Sequence[bytes]) -> list[tuple[int, int, str] | str]:
    out: list[tuple[int, int, str] | str] = []
    for data in blobs:
        try:
            with Image.open(io.BytesIO(data)) as image:
                out.append((image.width, image.height, image.mode))
        except Exception as exc:  # any decoder error: reported with the file name
            out.append(f"{type(exc).__name__}: {exc}")
    return out


def _decode_one(data: bytes, size: int, gray: bool) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as source:
        image = source.convert("L" if gray else "RGB")
    if image.size != (size, size):
        # Shorter side to `size`, then the centre square (keeps the aspect ratio).
        scale = size / min(image.size)
        w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        image = image.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=3.0)
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if gray else array.transpose(2, 0, 1)


def _decode_chunk(args: tuple[Sequence[bytes], int, bool]) -> np.ndarray | tuple[int, str]:
    blobs, size, gray = args
    out = np.empty((len(blobs), 1 if gray else 3, size, size), dtype=np.uint8)
    for i, data in enumerate(blobs):
        try:
            out[i] = _decode_one(data, size, gray)
        except Exception as exc:
            return i, f"{type(exc).__name__}: {exc}"
    return out


def _executor(workers: int) -> Executor:
    if workers <= 1:
        return ThreadPoolExecutor(1)
    # fork keeps start-up cheap (no re-import of torch); elsewhere the platform default.
    method = "fork" if sys.platform.startswith("linux") else None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))


def _map_chunks(fn: Callable[[Any], T], jobs: list[Any], workers: int, desc: str) -> list[T]:
    with _executor(workers) as pool:
        return list(
            tqdm(
                pool.map(fn, jobs),
                total=len(jobs),
                desc=desc,
                unit="chunk",
                leave=False,
                disable=len(jobs) < 4,
            )
        )


def choose_layout(
    blobs: Sequence[bytes], names: Sequence[str], workers: int, max_size: int = 256
) -> tuple[int, bool]:
    """Storage size and grayscale flag for a set of images (read from headers only).

    One square size shared by all images is kept; otherwise the median shorter side, at
    most ``max_size``. Grayscale only if every image is grayscale.
    """
    chunks = [blobs[i : i + _CHUNK] for i in range(0, len(blobs), _CHUNK)]
    probes = [p for chunk in _map_chunks(_probe_chunk, chunks, workers, "probe") for p in chunk]
    headers: list[tuple[int, int, str]] = []
    for name, probe in zip(names, probes, strict=True):
        if isinstance(probe, str):
            raise DataError(f"cannot decode image {name}: {probe} (remove or replace the file)")
        headers.append(probe)
    sizes = [(w, h) for w, h, _ in headers]
    gray = all(mode in _GRAY_MODES for _, _, mode in headers)
    if len(set(sizes)) == 1 and sizes[0][0] == sizes[0][1]:
        return sizes[0][0], gray
    return min(max_size, int(statistics.median(min(s) for s in sizes))), gray


def decode_images(
    blobs: Sequence[bytes], names: Sequence[str], size: int, gray: bool, workers: int | None = None
) -> np.ndarray:
    """``(N, C, size, size)`` uint8 array of all images, decoded in ``workers`` processes."""
    workers = workers or os.cpu_count() or 1
    starts = list(range(0, len(blobs), _CHUNK))
    jobs = [(blobs[i : i + _CHUNK], size, gray) for i in starts]
    parts = _map_chunks(_decode_chunk, jobs, workers, "decode")
    for start, part in zip(starts, parts, strict=True):
        if isinstance(part, tuple):
            index, message = part
            raise DataError(
                f"cannot decode image {names[start + index]}: {message} "
                "(remove or replace the file)"
            )
    return np.concatenate(parts) if parts else np.empty((0, 1 if gray else 3, size, size), np.uint8)
