"""Structured pruning of ShuffleNetV2 models: importance, selection, surgery."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import Tensor, nn

from compress.prune._groups import (
    Layer,
    Member,
    branch_inputs,
    channel_groups,
    pruned_layout,
)
from nas._errors import ConfigError
from nas.models import ModelLayout, ShuffleNetV2

IMPORTANCES = ("l1", "group-norm", "taylor")
_PRUNE_FNS = {
    "out": tp.prune_conv_out_channels,
    "in": tp.prune_conv_in_channels,
    "dw": tp.prune_depthwise_conv_out_channels,
    "bn": tp.prune_batchnorm_out_channels,
    "fc_in": tp.prune_linear_in_channels,
}


@dataclass(frozen=True)
class PruneConfig:
    """``ratio`` of all prunable channels to remove (stem, every branch's middle and
    outputs, every shortcut's outputs, conv5's outputs).

    ``global_ranking``: rank all channels together (scores normalised by their layer's
    mean, as torch-pruning's global pruning does) instead of removing ``ratio`` of every
    layer; no layer loses more than ``max_layer_ratio`` of its channels.
    """

    ratio: float
    importance: str = "group-norm"
    global_ranking: bool = False
    max_layer_ratio: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise ConfigError(f"pruning ratio must be strictly between 0 and 1, got {self.ratio}")
        if self.importance not in IMPORTANCES:
            raise ConfigError(
                f"unknown importance {self.importance!r}: choose one of {', '.join(IMPORTANCES)}"
            )


def layout_of(model: ShuffleNetV2) -> ModelLayout:
    return model.layout if model.layout is not None else ModelLayout.standard(model.arch)


def _slice(module: nn.Module, role: str, index: int) -> Tensor:
    """The parameters one channel owns in ``module``."""
    weight = module.weight
    assert isinstance(weight, Tensor)
    if role in ("out", "dw", "bn"):
        return weight[index].flatten()
    return weight[:, index].flatten()  # conv or linear input


def channel_scores(
    model: ShuffleNetV2, layers: dict[str, Layer], importance: str
) -> dict[str, Tensor]:
    """Importance of every channel, by layer (higher: keep).

    ``l1``: L1 norm of the channel's filter in the conv that produces it (Li et al.).
    ``group-norm``: squared L2 norm over everything the channel owns: its filter, its
    BatchNorm scale, its slices in every conv that reads it (torch-pruning's group norm).
    ``taylor``: |sum of weight x gradient| over the same group (first order Taylor,
    Molchanov et al.); needs gradients accumulated on training batches first.
    """
    modules = dict(model.named_modules())
    scores: dict[str, Tensor] = {}
    with torch.no_grad():
        for name, layer in layers.items():
            values = []
            for members in layer.channels:
                if importance == "l1":
                    module, role, index = members[0]
                    values.append(float(_slice(modules[module], role, index).abs().sum()))
                elif importance == "group-norm":
                    values.append(
                        sum(float(_slice(modules[m], r, i).pow(2).sum()) for m, r, i in members)
                    )
                else:
                    values.append(
                        abs(
                            sum(
                                float((_slice(modules[m], r, i) * _grad(modules[m], r, i)).sum())
                                for m, r, i in members
                            )
                        )
                    )
            scores[name] = torch.tensor(values, dtype=torch.float64)
    return scores


def _grad(module: nn.Module, role: str, index: int) -> Tensor:
    weight = module.weight
    assert isinstance(weight, Tensor)
    grad = weight.grad
    if grad is None:
        raise ConfigError(
            "taylor importance needs gradients: accumulate them on training "
            "batches first (prune_model does)"
        )
    return grad[index].flatten() if role in ("out", "dw", "bn") else grad[:, index].flatten()


def select(
    layers: dict[str, Layer],
    scores: dict[str, Tensor],
    remove: int,
    global_ranking: bool,
    max_layer_ratio: float,
    must_keep_one: Sequence[Sequence[tuple[str, int]]] = (),
) -> dict[str, set[int]]:
    """Indices of the ``remove`` lowest scoring channels to prune.

    Every layer keeps at least one channel (and at most ``max_layer_ratio`` of it goes),
    and at least one channel of each ``must_keep_one`` list survives (see
    :func:`branch_inputs`): a violated list gets its best channel protected and the
    selection runs again.
    """
    protected: set[tuple[str, int]] = set()
    while True:
        chosen = _select(layers, scores, remove, global_ranking, max_layer_ratio, protected)
        violated = [
            group for group in must_keep_one if all(j in chosen.get(n, ()) for n, j in group)
        ]
        if not violated:
            return chosen
        for group in violated:
            protected.add(max(group, key=lambda ch: float(scores[ch[0]][ch[1]])))


def _select(
    layers: dict[str, Layer],
    scores: dict[str, Tensor],
    remove: int,
    global_ranking: bool,
    max_layer_ratio: float,
    protected: set[tuple[str, int]],
) -> dict[str, set[int]]:
    caps = {
        n: min(len(layer.channels) - 1, int(max_layer_ratio * len(layer.channels)))
        for n, layer in layers.items()
    }
    chosen: dict[str, set[int]] = {n: set() for n in layers}
    if global_ranking:
        pool = []
        for name, values in scores.items():
            mean = float(values.mean()) or 1.0
            pool += [(float(v) / mean, name, j) for j, v in enumerate(values)]
        for _, name, j in sorted(pool):
            if remove == 0:
                break
            if len(chosen[name]) < caps[name] and (name, j) not in protected:
                chosen[name].add(j)
                remove -= 1
    else:
        total = sum(len(layer.channels) for layer in layers.values())
        fraction = remove / total
        for name, values in scores.items():
            count = min(caps[name], math.floor(fraction * len(values) + 0.5))
            order = [j for j in torch.argsort(values).tolist() if (name, j) not in protected]
            chosen[name] = set(order[:count])
    return {n: idxs for n, idxs in chosen.items() if idxs}


def apply(model: ShuffleNetV2, removed: dict[str, set[int]]) -> ShuffleNetV2:
    """A new, smaller model: torch-pruning's functions cut the tensors, the new layout is
    derived from the old one, and the cut weights must load into a model rebuilt from it."""
    layout = layout_of(model)
    layers = channel_groups(layout)
    per_module: dict[tuple[str, str], set[int]] = defaultdict(set)
    for name, idxs in removed.items():
        for j in idxs:
            for module, role, index in layers[name].channels[j]:
                per_module[module, role].add(index)
    work = _copy(model)
    modules = dict(work.named_modules())
    for (module, role), idxs in per_module.items():
        _PRUNE_FNS[role](modules[module], sorted(idxs))
    new_layout = pruned_layout(layout, removed)
    new_layout.check(model.arch)
    pruned = ShuffleNetV2(model.arch, layout=new_layout)
    pruned.load_state_dict(work.state_dict())  # strict: every shape must agree
    return pruned.train(model.training)


def _copy(model: ShuffleNetV2) -> ShuffleNetV2:
    clone = ShuffleNetV2(model.arch, layout=model.layout)
    clone.load_state_dict(model.state_dict())
    return clone


def count_channels(layout: ModelLayout) -> int:
    return sum(len(layer.channels) for layer in channel_groups(layout).values())


def accumulate_gradients(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], num_batches: int
) -> None:
    """Sum of cross-entropy gradients over ``num_batches`` training batches (for taylor)."""
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.train()
    for i, (x, y) in enumerate(batches):
        if i == num_batches:
            break
        F.cross_entropy(model(x), y).backward()
    model.train(was_training)


def prune_once(
    model: ShuffleNetV2,
    config: PruneConfig,
    target_removed: int,
    gradient_batches: Iterable[tuple[Tensor, Tensor]] | None = None,
    num_batches: int = 8,
) -> ShuffleNetV2:
    """Prune ``model`` until ``target_removed`` channels of the original are gone."""
    layout = layout_of(model)
    layers = channel_groups(layout)
    original = int(layout.pruned.get("original_channels", count_channels(layout)))
    already = original - count_channels(layout)
    remove = max(0, target_removed - already)
    if remove == 0:
        return model
    if config.importance == "taylor":
        if gradient_batches is None:
            raise ConfigError("taylor importance needs training batches")
        accumulate_gradients(model, gradient_batches, num_batches)
    scores = channel_scores(model, layers, config.importance)
    model.zero_grad(set_to_none=True)
    removed = select(
        layers,
        scores,
        remove,
        config.global_ranking,
        config.max_layer_ratio,
        branch_inputs(layout),
    )
    pruned = apply(model, removed)
    assert pruned.layout is not None
    pruned.layout.pruned = {
        **layout.pruned,
        "original_channels": original,
        "removed_channels": original - count_channels(pruned.layout),
        "importance": config.importance,
        "global": config.global_ranking,
    }
    return pruned


__all__ = [
    "IMPORTANCES",
    "Member",
    "PruneConfig",
    "apply",
    "channel_scores",
    "count_channels",
    "layout_of",
    "prune_once",
    "select",
]
