"""Structured pruning of ShuffleNetV2 checkpoints (torch-pruning surgery, explicit
split/concat/shuffle dependencies)."""

from compress._common import model_metrics
from compress.prune._cost import layer_costs
from compress.prune._goal import (
    MAX_REMOVED,
    TOLERANCE,
    GoalOutOfReach,
    LatencyGoal,
    block_size,
    goal_removal,
    search_removal,
)
from compress.prune._groups import Layer, channel_groups, pruned_layout, shuffle_order
from compress.prune._prune import (
    ALLOCATIONS,
    IMPORTANCES,
    NEEDS_GRADIENTS,
    SCOPES,
    PruneConfig,
    accumulate_gradients,
    apply,
    channel_scores,
    count_channels,
    in_scope,
    layout_of,
    prune_once,
    register_importance,
    select,
)
from compress.prune._run import prune_checkpoint, recorded_refusal, refusal_of

__all__ = [
    "ALLOCATIONS",
    "IMPORTANCES",
    "MAX_REMOVED",
    "NEEDS_GRADIENTS",
    "SCOPES",
    "TOLERANCE",
    "GoalOutOfReach",
    "LatencyGoal",
    "Layer",
    "PruneConfig",
    "accumulate_gradients",
    "apply",
    "block_size",
    "channel_groups",
    "channel_scores",
    "count_channels",
    "goal_removal",
    "in_scope",
    "layer_costs",
    "layout_of",
    "model_metrics",
    "prune_checkpoint",
    "prune_once",
    "pruned_layout",
    "recorded_refusal",
    "refusal_of",
    "register_importance",
    "search_removal",
    "select",
    "shuffle_order",
]
