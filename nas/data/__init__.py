"""Data: named sources, a decoded-image cache, fixed splits and tensor-only batching.

Sources: ``embedded`` (default: a real CIFAR-10 subset shipped in the package), an
ImageFolder directory, a ``.tar``/``.tar.gz`` of one (read directly), ``cifar10``
(torchvision download, online only) and ``synthetic`` (tests).
"""

from nas.data._args import add_data_arguments, data_spec
from nas.data._cache import cache_root
from nas.data._dataset import DataSpec, DataSplits, Split, load_data
from nas.data._loader import BatchLoader, mix_seed, random_crop_flip
from nas.data._sources import embedded_archive

__all__ = [
    "BatchLoader",
    "DataSpec",
    "DataSplits",
    "Split",
    "add_data_arguments",
    "cache_root",
    "data_spec",
    "embedded_archive",
    "load_data",
    "mix_seed",
    "random_crop_flip",
]
