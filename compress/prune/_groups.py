"""Channel groups of a ShuffleNetV2: every prunable channel with all the tensors it touches.

torch-pruning's DependencyGraph cannot follow the channel shuffle (its reshape index
mapping fails), so the dependencies are derived from the architecture itself. A stream
channel (a block output) is born in one conv (the stem, a branch's last 1x1, a stride-2
shortcut's 1x1), is carried through units' pass-through halves and shuffles, and dies in
the convs that read it (the next branch, the next stage's stride-2 unit, conv5). Removing
it removes its filter, its BatchNorm entries and its input slices in all those convs, and
shortens every pass-through and shuffle on the way. Branch-internal channels (the
depthwise middle of branch2) and conv5's outputs are local.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from nas.models import ModelLayout, UnitLayout

Member = tuple[str, str, int]  # (module name, role, index); roles: out, in, dw, bn, fc_in


def shuffle_order(n: int) -> list[int]:
    """Output position -> concat index of the 2-group channel shuffle of ``n`` channels."""
    half = n // 2
    return [p // 2 if p % 2 == 0 else half + p // 2 for p in range(n)]


def unit_order(unit: UnitLayout) -> list[int]:
    return unit.permutation if unit.permutation is not None else shuffle_order(unit.out_channels)


@dataclass
class Layer:
    """The channels one conv produces (pruned together in per-layer mode)."""

    name: str  # e.g. "stem", "stage3.2.mid", "stage3.2.branch", "stage3.0.short", "last"
    channels: list[list[Member]] = field(default_factory=list)  # per channel, its members


def channel_groups(layout: ModelLayout) -> dict[str, Layer]:
    """Every prunable channel of a model with this layout, grouped by producing layer."""
    layers: dict[str, Layer] = {}
    consumers: dict[tuple[str, int], list[Member]] = defaultdict(list)

    def produce(name: str, count: int, members: list[tuple[str, str]]) -> None:
        layers[name] = Layer(name, [[(m, role, j) for m, role in members] for j in range(count)])

    produce("stem", layout.stem, [("conv1.0", "out"), ("conv1.1", "bn")])
    stream = [("stem", j) for j in range(layout.stem)]
    for s, units in enumerate(layout.stages):
        for u, unit in enumerate(units):
            p = f"stage{s + 2}.{u}"
            produce(
                f"{p}.mid",
                unit.mid,
                [
                    (f"{p}.branch2.0", "out"),
                    (f"{p}.branch2.1", "bn"),
                    (f"{p}.branch2.3", "dw"),
                    (f"{p}.branch2.4", "bn"),
                    (f"{p}.branch2.5", "in"),
                ],
            )
            produce(
                f"{p}.branch", unit.branch, [(f"{p}.branch2.5", "out"), (f"{p}.branch2.6", "bn")]
            )
            if unit.stride == 2:
                produce(
                    f"{p}.short", unit.short, [(f"{p}.branch1.2", "out"), (f"{p}.branch1.3", "bn")]
                )
                for q, ch in enumerate(stream):
                    consumers[ch] += [
                        (f"{p}.branch1.0", "dw", q),
                        (f"{p}.branch1.1", "bn", q),
                        (f"{p}.branch1.2", "in", q),
                        (f"{p}.branch2.0", "in", q),
                    ]
                cat = [(f"{p}.short", j) for j in range(unit.short)]
            else:
                for q in range(unit.keep, len(stream)):
                    consumers[stream[q]].append((f"{p}.branch2.0", "in", q - unit.keep))
                cat = stream[: unit.keep]
            cat = cat + [(f"{p}.branch", j) for j in range(unit.branch)]
            stream = [cat[i] for i in unit_order(unit)]
    for q, ch in enumerate(stream):
        consumers[ch].append(("conv5.0", "in", q))
    produce("last", layout.last, [("conv5.0", "out"), ("conv5.1", "bn"), ("fc", "fc_in")])
    for (name, j), members in consumers.items():
        layers[name].channels[j].extend(members)
    return layers


def branch_inputs(layout: ModelLayout) -> list[list[tuple[str, int]]]:
    """For every stride-1 unit, the stream channels (layer, index) its branch2 reads.

    Removing all of them would leave that branch without input, so at least one of each
    list must survive pruning.
    """
    inputs = []
    stream = [("stem", j) for j in range(layout.stem)]
    for s, units in enumerate(layout.stages):
        for u, unit in enumerate(units):
            p = f"stage{s + 2}.{u}"
            if unit.stride == 2:
                cat = [(f"{p}.short", j) for j in range(unit.short)]
            else:
                inputs.append(stream[unit.keep :])
                cat = stream[: unit.keep]
            cat = cat + [(f"{p}.branch", j) for j in range(unit.branch)]
            stream = [cat[i] for i in unit_order(unit)]
    return inputs


def pruned_layout(layout: ModelLayout, removed: dict[str, set[int]]) -> ModelLayout:
    """The layout left after removing ``removed[layer]`` channels of each layer.

    Walks the original stream and filters it: removing channels keeps the order of the
    survivors, so every pass-through stays a prefix of its unit's input and each new
    output order is the old one restricted to what survives.
    """
    gone = {(name, j) for name, idxs in removed.items() for j in idxs}

    def count(name: str, n: int) -> int:
        return sum((name, j) not in gone for j in range(n))

    stream = [("stem", j) for j in range(layout.stem)]
    stages = []
    for s, units in enumerate(layout.stages):
        new_units = []
        for u, unit in enumerate(units):
            p = f"stage{s + 2}.{u}"
            alive = sum(ch not in gone for ch in stream)
            if unit.stride == 2:
                first = [(f"{p}.short", j) for j in range(unit.short)]
                new = UnitLayout(
                    2,
                    unit.kernel,
                    alive,
                    short=count(f"{p}.short", unit.short),
                    mid=count(f"{p}.mid", unit.mid),
                    branch=count(f"{p}.branch", unit.branch),
                )
            else:
                first = stream[: unit.keep]
                new = UnitLayout(
                    1,
                    unit.kernel,
                    alive,
                    keep=sum(ch not in gone for ch in first),
                    mid=count(f"{p}.mid", unit.mid),
                    branch=count(f"{p}.branch", unit.branch),
                )
            old_cat = first + [(f"{p}.branch", j) for j in range(unit.branch)]
            position = {ch: i for i, ch in enumerate(c for c in old_cat if c not in gone)}
            order = [position[old_cat[i]] for i in unit_order(unit) if old_cat[i] not in gone]
            shuffled = len(order) % 2 == 0 and order == shuffle_order(len(order))
            new.permutation = None if shuffled else order
            new_units.append(new)
            stream = [old_cat[i] for i in unit_order(unit)]
        stages.append(new_units)
    return ModelLayout(
        layout.stem - len(removed.get("stem", ())),
        stages,
        layout.last - len(removed.get("last", ())),
        dict(layout.pruned),
    )
