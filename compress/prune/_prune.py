"""Structured pruning of ShuffleNetV2 models: importance, selection, surgery."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
from nas import ConfigError
from nas.models import ModelLayout, ShuffleNetV2

# A channel's members: (module name, role, index) for everything the channel owns.
Members = list[tuple[str, str, int]]
#: name -> score(modules, members) of one channel (higher: keep); ``register_importance``.
IMPORTANCES: dict[str, Callable[[dict[str, nn.Module], Members], float]] = {}
NEEDS_GRADIENTS: set[str] = set()  # importances scored from gradients accumulated first


def register_importance(
    name: str, needs_gradients: bool = False
) -> Callable[[Callable[[dict[str, nn.Module], Members], float]], Any]:
    def add(score: Callable[[dict[str, nn.Module], Members], float]) -> Any:
        if name in IMPORTANCES:
            raise ValueError(f"importance {name!r} is registered already")
        IMPORTANCES[name] = score
        if needs_gradients:
            NEEDS_GRADIENTS.add(name)
        return score

    return add


SCOPES = ("all", "internal")
ALLOCATIONS = ("importance", "latency")
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

    ``allocation``: ``importance`` (the ranking alone decides which layers lose
    channels) or ``latency`` (HALP-style: each channel's importance is weighed against
    its layer's latency cost measured on the target, see ``compress.prune._cost``; needs
    a latency goal, whose target it is measured on).

    ``scope``: ``all`` prunable channels, or only the ``internal`` ones (each branch's
    middle and conv5's outputs), which leaves every block output, and so every channel
    count that crosses a split or a shuffle, as the arch has it; ``ratio`` is then a share
    of the internal channels. ``round_to``: every pruned layer keeps a multiple of this
    many channels (a layer smaller than that is not pruned). Why: ONNX Runtime's fast
    NCHWc convolutions take a conv only when its input and output channel counts are
    multiples of the CPU's block size (8 with AVX2, 16 with AVX-512); a pruned model with
    odd counts falls back to plain kernels and can run slower than the original.
    """

    ratio: float
    importance: str = "group-norm"
    global_ranking: bool = False
    max_layer_ratio: float = 0.9
    scope: str = "all"
    round_to: int = 1
    allocation: str = "importance"

    def __post_init__(self) -> None:
        if not 0.0 < self.ratio < 1.0:
            raise ConfigError(f"pruning ratio must be strictly between 0 and 1, got {self.ratio}")
        if self.scope not in SCOPES:
            raise ConfigError(f"unknown pruning scope {self.scope!r}: choose all or internal")
        if self.allocation not in ALLOCATIONS:
            raise ConfigError(
                f"unknown allocation {self.allocation!r}: choose {' or '.join(ALLOCATIONS)}"
            )
        if self.round_to < 1:
            raise ConfigError(f"--round-to must be a channel count >= 1, got {self.round_to}")
        if self.importance not in IMPORTANCES:
            raise ConfigError(
                f"unknown importance {self.importance!r}: choose one of {', '.join(IMPORTANCES)}"
            )


def layout_of(model: ShuffleNetV2) -> ModelLayout:
    return model.layout if model.layout is not None else ModelLayout.standard(model.arch)


def in_scope(layers: dict[str, Layer], scope: str = "all") -> dict[str, Layer]:
    """The layers a pruning ``scope`` may cut (see :class:`PruneConfig`)."""
    if scope == "all":
        return layers
    return {n: layer for n, layer in layers.items() if n == "last" or n.endswith(".mid")}


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
    score = IMPORTANCES[importance]
    with torch.no_grad():
        return {
            name: torch.tensor([score(modules, m) for m in layer.channels], dtype=torch.float64)
            for name, layer in layers.items()
        }


@register_importance("l1")
def _l1(modules: dict[str, nn.Module], members: Members) -> float:
    module, role, index = members[0]  # the conv that produces the channel
    return float(_slice(modules[module], role, index).abs().sum())


@register_importance("group-norm")
def _group_norm(modules: dict[str, nn.Module], members: Members) -> float:
    return sum(float(_slice(modules[m], r, i).pow(2).sum()) for m, r, i in members)


@register_importance("taylor", needs_gradients=True)
def _taylor(modules: dict[str, nn.Module], members: Members) -> float:
    return abs(
        sum(
            float((_slice(modules[m], r, i) * _grad(modules[m], r, i)).sum()) for m, r, i in members
        )
    )


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
    round_to: int = 1,
    costs: Mapping[str, float] | None = None,
) -> dict[str, set[int]]:
    """Indices of the ``remove`` lowest scoring channels to prune.

    Every layer keeps at least one channel (and at most ``max_layer_ratio`` of it goes),
    a multiple of ``round_to`` when it is pruned at all (so the total removed is close
    to, not exactly, ``remove``), and at least one channel of each ``must_keep_one``
    list survives (see :func:`branch_inputs`): a violated list gets its best channel
    protected and the selection runs again. ``costs`` (latency saved per channel, by
    layer): rank globally by importance per cost instead (see ``compress.prune._cost``).
    """
    protected: set[tuple[str, int]] = set()
    while True:
        chosen = _select(layers, scores, remove, global_ranking, max_layer_ratio, protected, costs)
        if round_to > 1:
            chosen = _rounded(layers, scores, chosen, round_to, protected)
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
    costs: Mapping[str, float] | None = None,
) -> dict[str, set[int]]:
    caps = {
        n: min(len(layer.channels) - 1, int(max_layer_ratio * len(layer.channels)))
        for n, layer in layers.items()
    }
    chosen: dict[str, set[int]] = {n: set() for n in layers}
    if global_ranking or costs:
        mean_cost = statistics.fmean(costs.values()) if costs else 1.0
        pool = []
        for name, values in scores.items():
            mean = float(values.mean()) or 1.0
            weight = costs.get(name, mean_cost) / mean_cost if costs else 1.0  # unmeasured: 1
            pool += [(float(v) / mean / weight, name, j) for j, v in enumerate(values)]
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


def _rounded(
    layers: dict[str, Layer],
    scores: dict[str, Tensor],
    chosen: dict[str, set[int]],
    round_to: int,
    protected: set[tuple[str, int]],
) -> dict[str, set[int]]:
    """Each layer's removal moved to the nearest count that keeps a multiple of
    ``round_to`` channels (at least ``round_to``), lowest scores first."""
    out = {}
    for name, idxs in chosen.items():
        size = len(layers[name].channels)
        if size <= round_to:
            continue
        blocks = round((size - len(idxs)) / round_to)
        kept = round_to * max(1, min(size // round_to, blocks))
        order = [j for j in torch.argsort(scores[name]).tolist() if (name, j) not in protected]
        count = min(size - kept, len(order))
        count -= -(size - count) % round_to  # protected channels: keep the next multiple
        if count > 0:
            out[name] = set(order[:count])
    return out


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


def count_channels(layout: ModelLayout, scope: str = "all") -> int:
    """Prunable channels of ``layout`` within ``scope``."""
    return sum(len(layer.channels) for layer in in_scope(channel_groups(layout), scope).values())


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
    costs: Mapping[str, float] | None = None,
) -> ShuffleNetV2:
    """Prune ``model`` until ``target_removed`` channels of the original are gone
    (``costs``: latency-aware allocation, see :func:`select`)."""
    layout = layout_of(model)
    layers = in_scope(channel_groups(layout), config.scope)
    original = int(layout.pruned.get("original_channels", count_channels(layout, config.scope)))
    already = original - count_channels(layout, config.scope)
    remove = max(0, target_removed - already)
    if remove == 0:
        return model
    if config.importance in NEEDS_GRADIENTS:
        if gradient_batches is None:
            raise ConfigError(f"{config.importance} importance needs training batches")
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
        config.round_to,
        costs,
    )
    pruned = apply(model, removed)
    assert pruned.layout is not None
    pruned.layout.pruned = {
        **layout.pruned,
        "original_channels": original,
        "removed_channels": original - count_channels(pruned.layout, config.scope),
        "importance": config.importance,
        "global": config.global_ranking,
        "scope": config.scope,
        "round_to": config.round_to,
        "allocation": "latency" if costs else "importance",
    }
    return pruned


__all__ = [
    "ALLOCATIONS",
    "IMPORTANCES",
    "SCOPES",
    "Member",
    "PruneConfig",
    "apply",
    "channel_scores",
    "count_channels",
    "in_scope",
    "layout_of",
    "prune_once",
    "select",
]
