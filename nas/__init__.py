"""Hardware-aware NAS for ShuffleNet V2: architectures as data, a weight-sharing supernet,
search against measured latency.

The nouns live in one place each: :mod:`nas.arch`, :mod:`nas.space`, :mod:`nas.models`.
"""

from nas._errors import CheckpointError, ConfigError, DataError, MeasurementError, NasError
from nas.arch import PRESETS, ArchConfig, load_arch, preset
from nas.models import ShuffleNetV2, Supernet, count_flops, count_params
from nas.space import SearchSpace, load_space

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
