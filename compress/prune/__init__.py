"""Structured pruning of ShuffleNetV2 checkpoints (torch-pruning surgery, explicit
split/concat/shuffle dependencies)."""

from compress._common import model_metrics
from compress.prune._groups import Layer, channel_groups, pruned_layout, shuffle_order
from compress.prune._prune import (
    IMPORTANCES,
    SCOPES,
    PruneConfig,
    apply,
    channel_scores,
    count_channels,
    layout_of,
    prune_once,
    select,
)
from compress.prune._run import prune_checkpoint

__all__ = [
    "IMPORTANCES",
    "SCOPES",
    "Layer",
    "PruneConfig",
    "apply",
    "channel_groups",
    "channel_scores",
    "count_channels",
    "layout_of",
    "model_metrics",
    "prune_checkpoint",
    "prune_once",
    "pruned_layout",
    "select",
    "shuffle_order",
]
