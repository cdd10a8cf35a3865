"""Models: the standalone :class:`ShuffleNetV2`, the weight-sharing :class:`Supernet`, costs."""

from nas.models._blocks import ShuffleUnit, channel_shuffle
from nas.models._cost import count_flops, count_model, count_params
from nas.models._layout import ModelLayout, UnitLayout
from nas.models._reference import REFERENCE_NETS, ReferenceNet, load_network
from nas.models._shufflenetv2 import ShuffleNetV2
from nas.models._supernet import (
    BRANCH_SCALE,
    CHANNEL_MATCHES,
    SUPERNET_LAYOUT,
    Supernet,
    check_supernet_options,
)

__all__ = [
    "BRANCH_SCALE",
    "CHANNEL_MATCHES",
    "REFERENCE_NETS",
    "SUPERNET_LAYOUT",
    "ModelLayout",
    "ReferenceNet",
    "ShuffleNetV2",
    "ShuffleUnit",
    "Supernet",
    "UnitLayout",
    "channel_shuffle",
    "check_supernet_options",
    "count_flops",
    "count_model",
    "count_params",
    "load_network",
]
