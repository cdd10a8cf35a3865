"""Rebuild the embedded default data from the CIFAR-10 JPEG archive.

    python -m nas.data.make_embedded --archive ../shared/data/cifar10-jpg.tar.gz

Takes the first ``--train`` training and ``--test`` test images per class (by file name),
copies their JPEG bytes unchanged (real CIFAR-10, no re-encoding) into a deterministic
``.tar.gz`` inside the package: same input, same bytes out.
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from nas.cli import ArgumentParser, run
from nas.data._records import read_tar
from nas.data._sources import embedded_archive


def build(archive: Path, out: Path, train: int, test: int) -> dict[str, int]:
    chosen: dict[tuple[str, str], list[tuple[str, bytes]]] = defaultdict(list)
    for record in read_tar(archive):
        chosen[record.split, record.label].append((record.name.rsplit("/", 1)[-1], record.data))
    buffer = io.BytesIO()
    counts: dict[str, int] = defaultdict(int)
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for (split, label), files in sorted(chosen.items()):
            for name, data in sorted(files)[: train if split == "train" else test]:
                info = tarfile.TarInfo(f"{split}/{label}/{name}")
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
                counts[split] += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())
    return dict(counts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m nas.data.make_embedded", description=__doc__)
    parser.add_argument("--archive", type=Path, default=Path("../shared/data/cifar10-jpg.tar.gz"))
    parser.add_argument("--train", type=int, default=500, help="training images per class")
    parser.add_argument("--test", type=int, default=100, help="test images per class")
    parser.add_argument("--out", type=Path, default=embedded_archive())
    args = parser.parse_args(argv)
    counts = build(args.archive, args.out, args.train, args.test)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
