"""Hardware-aware NAS for ShuffleNet V2: architectures as data, a weight-sharing supernet,
search against measured latency.

The nouns live in one place each: :mod:`nas.arch`, :mod:`nas.space`, :mod:`nas.models`.
"""

from typing import TYPE_CHECKING

from nas._errors import CheckpointError, ConfigError, DataError, MeasurementError, NasError
from nas._lazy import lazy_attributes
from nas.arch import PRESETS, ArchConfig, load_arch, preset
from nas.space import SearchSpace, load_space

if TYPE_CHECKING:
    from nas.models import ShuffleNetV2, Supernet, count_flops, count_params

# The models import torch: loaded on first use, so that archs, spaces and targets validate
# without it.
__getattr__, __dir__ = lazy_attributes(
    __name__,
    globals(),
    {"nas.models": ("ShuffleNetV2", "Supernet", "count_flops", "count_params")},
)

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "ArchConfig",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MeasurementError",
    "NasError",
    "SearchSpace",
    "ShuffleNetV2",
    "Supernet",
    "__version__",
    "count_flops",
    "count_params",
    "load_arch",
    "load_space",
    "preset",
]
