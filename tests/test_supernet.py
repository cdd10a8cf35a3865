from __future__ import annotations

import copy
import math
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import search_spaces
from nas import ArchConfig, ConfigError, ShuffleNetV2, Supernet, load_space
from nas.arch import STAGE_NAMES, split_channels
from nas.models import CHANNEL_MATCHES, channel_shuffle

from .conftest import TINY_SPACE, randomize_bn

SPACES = search_spaces.available()


@pytest.fixture(
    scope="module",
    # matching by position on the CIFAR space only: the ImageNet space adds nothing to it
    params=[(space, "id") for space in SPACES]
    + [("shufflenetv2_cifar", m) for m in CHANNEL_MATCHES if m != "id"],
    ids=lambda p: "-".join(p),
)
def supernet(request):
    torch.manual_seed(0)
    space, match = request.param
    net = Supernet(load_space(space), channel_match=match)
    randomize_bn(net)
    return net.eval()


def _archs(space, n=20, seed=0):
    rng = random.Random(seed)
    return [space.min_arch, space.max_arch] + [space.sample(rng) for _ in range(n)]


def test_extract_computes_the_same_function(supernet):
    for arch in _archs(supernet.space):
        # Neither model depends on the input size; at most 64 px keeps the ImageNet space fast.
        size = min(arch.resolution, 64)
        x = torch.randn(2, arch.in_channels, size, size)
        standalone = supernet.extract(arch)
        assert isinstance(standalone, ShuffleNetV2) and not standalone.training
        with torch.no_grad():
            torch.testing.assert_close(
                supernet(x, arch), standalone(x), atol=1e-5, rtol=0, msg=arch.short_name()
            )


def test_every_shared_weight_is_reached_by_an_extreme_arch(supernet):
    # Each shared element gets a unique value; extracting archs copies out the elements
    # they use. The main branch is largest at the largest split ratio, the stride-2
    # shortcut branch at the smallest, and every width at the largest ratio covers the
    # rows of every layer. Weights gathered by channel id are checked along their other
    # dimension only: which ids reach a conv depends on the arch (a stage's channel 0, say,
    # always passes through), and the entries copied must be exactly the ids gathered.
    space = supernet.space
    top, low = space.max_arch, space.min_arch
    widths = [space.choices[f"{stage}.width"] for stage in STAGE_NAMES]
    archs = [top, top.replace(split_ratios=low.split_ratios)]
    archs += [
        top.replace(widths=tuple(ws[min(k, len(ws) - 1)] for ws in widths))
        for k in range(max(map(len, widths)))
    ]
    numbered = copy.deepcopy(supernet)
    with torch.no_grad():
        for tensor in numbered.state_dict().values():
            tensor.copy_(torch.arange(tensor.numel()).reshape(tensor.shape))
    shapes = {k: v.shape for k, v in numbered.state_dict().items()}
    reached: dict[str, set[int]] = {name: set() for name in shapes}
    gathered: dict[str, set[int]] = {}
    dims: dict[str, int] = {}
    for arch in archs:
        index = numbered.gathered(arch)
        for name, tensor in numbered.extract(arch).state_dict().items():
            assert all(a <= b for a, b in zip(tensor.shape, shapes[name], strict=True)), name
            reached[name].update(tensor.flatten().long().tolist())
            if name in index:
                dim, ids = index[name]
                gathered.setdefault(name, set()).update(ids.tolist())
                dims[name] = dim
                # the copied entries along `dim` are those of the gathered ids, in order
                stride = math.prod(shapes[name][dim + 1 :])
                first = tensor.movedim(dim, 0).reshape(tensor.shape[dim], -1)[:, 0]
                entry = (first.long() // stride) % shapes[name][dim]
                assert entry.tolist() == ids.tolist(), name
    for name, elements in reached.items():
        if name not in gathered:
            assert len(elements) == shapes[name].numel(), name
            continue
        dim = dims[name]
        stride = math.prod(shapes[name][dim + 1 :])
        along = {(i // stride) % shapes[name][dim] for i in elements}
        assert along == gathered[name], name
        if dim == 1:  # every output row is reached
            rows = shapes[name][0]
            assert {i // (shapes[name].numel() // rows) for i in elements} == set(range(rows))


def _provenance(arch: ArchConfig) -> dict[str, list[int]]:
    """For every conv that reads channels across units: which layer and row made each
    channel it reads, traced through the standalone model's own channel shuffle."""
    labels = torch.arange(arch.stem_channels)  # stem rows
    read: dict[str, list[int]] = {}
    for s, name in enumerate(STAGE_NAMES):
        other, branch = split_channels(arch.widths[s], arch.split_ratios[s])
        for i in range(arch.repeats[s]):
            code = 10_000 * (1 + 100 * s + i)  # this unit's main-branch rows
            if i == 0:
                read[f"{name}.0.branch2.0.weight"] = labels.tolist()
                shortcut = torch.arange(other) + 10_000 * (1 + 100 * s + 99)
                cat = torch.cat((shortcut, torch.arange(branch) + code))
            else:
                read[f"{name}.{i}.branch2.0.weight"] = labels[other:].tolist()
                cat = torch.cat((labels[:other], torch.arange(branch) + code))
            labels = channel_shuffle(cat.view(1, -1, 1, 1), 2).flatten()
    read["conv5.0.weight"] = labels.tolist()
    return read


@pytest.mark.parametrize("seed", range(3))
def test_a_channel_always_meets_the_same_weights(seed):
    # Matching weights by channel position mixes features: after a shuffle the channel at a
    # position depends on the widths and split ratios upstream. Across many sub-nets, each
    # channel (named by the layer and row that made it) must be read through one weight
    # entry per conv, and distinct channels through distinct entries.
    space = load_space("shufflenetv2_cifar")
    net = Supernet(space)
    rng = random.Random(seed)
    entry_of: dict[tuple[str, int], int] = {}
    for arch in [space.min_arch, space.max_arch] + [space.sample(rng) for _ in range(30)]:
        index = net.gathered(arch)
        for name, made_by in _provenance(arch).items():
            dim, ids = index[name]
            assert dim == 1 and len(ids) == len(made_by), name
            for channel, entry in zip(made_by, ids.tolist(), strict=True):
                assert entry_of.setdefault((name, channel), entry) == entry, (name, channel)
    by_conv: dict[str, list[int]] = {}
    for (name, _), entry in entry_of.items():
        by_conv.setdefault(name, []).append(entry)
    assert all(len(set(e)) == len(e) for e in by_conv.values())


def test_extracted_weights_are_copies(supernet):
    arch = supernet.space.min_arch
    standalone = supernet.extract(arch)
    with torch.no_grad():
        standalone.fc.weight.add_(1.0)
    assert not torch.equal(standalone.fc.weight, supernet.fc.weight[:, : arch.last_channels])


def test_arch_outside_the_space_is_refused(supernet):
    outside = supernet.space.max_arch.replace(widths=(50, 96, 192))
    with pytest.raises(ConfigError, match="is outside search space"):
        supernet.extract(outside)
    with pytest.raises(ConfigError, match="is outside search space"):
        supernet(torch.randn(1, 3, 32, 32), outside)


def test_subnet_training_touches_only_its_slice():
    torch.manual_seed(0)
    net = Supernet(load_space("shufflenetv2_cifar")).train()
    arch = net.space.min_arch
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net(torch.randn(4, 3, 32, 32), arch).sum().backward()
    # Only the active slice of the stem BN moved; the rest of the shared buffer did not.
    bn = net.conv1[1]
    c = arch.stem_channels
    assert not torch.equal(bn.running_mean[:c], before["conv1.1.running_mean"][:c])
    last = net.conv5[1]
    assert torch.equal(
        last.running_mean[arch.last_channels :],
        before["conv5.1.running_mean"][arch.last_channels :],
    )
    grad = net.stage4[0].branch2[0].weight.grad
    assert grad is not None
    branch = 48  # round(0.25 * 192)
    _, ids = net.gathered(arch)["stage4.0.branch2.0.weight"]
    unused = torch.ones(grad.shape[1], dtype=torch.bool)
    unused[ids] = False
    assert grad[:branch, ids].abs().sum() > 0
    assert grad[branch:].abs().sum() == 0 and grad[:, unused].abs().sum() == 0
    assert net.stage2[2].branch2[0].weight.grad is None  # unit beyond repeats never ran


@given(data=st.data())
def test_any_sampled_arch_round_trips_and_extracts(data, tmp_path_factory):
    space = load_space("shufflenetv2_cifar")
    params = {k: data.draw(st.sampled_from(v), label=k) for k, v in space.choices.items()}
    arch = ArchConfig.from_params(params)
    assert ArchConfig.from_params(arch.to_params()) == arch
    path = tmp_path_factory.mktemp("arch") / "a.yaml"
    arch.to_yaml(path)
    assert ArchConfig.from_yaml(path) == arch
    net = _shared_cifar_supernet()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net(x, arch), net.extract(arch)(x), atol=1e-5, rtol=0)


_NET: list[Supernet] = []


def _shared_cifar_supernet() -> Supernet:
    if not _NET:
        torch.manual_seed(1)
        net = Supernet(load_space("shufflenetv2_cifar"))
        randomize_bn(net, seed=1)
        _NET.append(net.eval())
    return _NET[0]


def test_small_branch_scale_tames_the_deepest_subnets_gradients():
    """Stride-1 branches start at a small nonzero scale: the 32-unit sub-net's gradient
    norm at initialisation stays within two orders of a torchvision-sized net's (at
    torch's default scale of 1 it is ~8,500: deep BatchNorm nets without a skip grow the
    gradient by ~1.3x per unit backwards). The scale is never 0 (see test_liveness)."""
    import torch.nn.functional as F

    from nas.models import BRANCH_SCALE

    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    space = load_space("shufflenetv2_cifar")

    def deepest_norm(scale: float) -> float:
        torch.manual_seed(0)
        net = Supernet(space, branch_scale=scale).train()
        F.cross_entropy(net(x, space.max_arch), y).backward()
        return float(torch.nn.utils.clip_grad_norm_(net.parameters(), float("inf")))

    small, default = deepest_norm(BRANCH_SCALE), deepest_norm(1.0)
    assert small < 500 and default > 10 * small, (small, default)
    net = Supernet(space)
    assert all(
        torch.equal(bn.weight, torch.full_like(bn.weight, BRANCH_SCALE))
        for bn in net.branch_norms()
    )
    assert len(net.branch_norms()) == sum(r - 1 for r in space.max_arch.repeats)


def test_matching_by_position_shares_far_fewer_weights():
    space = load_space("shufflenetv2_cifar")
    by_id, by_position = (Supernet(space, channel_match=m) for m in ("id", "position"))
    assert by_position.gathered(space.max_arch) == {}
    largest = sum(p.numel() for p in by_id.extract(space.max_arch).parameters())
    counts = [sum(p.numel() for p in net.parameters()) for net in (by_id, by_position)]
    assert counts[1] < counts[0] / 2  # ~63M by id
    assert largest <= counts[1]  # the position layout still holds the largest sub-net
    with pytest.raises(ConfigError, match="unknown channel_match 'rows'"):
        Supernet(space, channel_match="rows")


def test_a_checkpoint_rebuilds_its_channel_matching():
    from nas import CheckpointError
    from nas.checkpoint import supernet_from_checkpoint
    from nas.models import SUPERNET_LAYOUT

    space = load_space(TINY_SPACE)
    net = Supernet(space, channel_match="position")
    payload = {
        "kind": "supernet",
        "space": space.to_dict(),
        "state_dict": net.state_dict(),
        "supernet_layout": SUPERNET_LAYOUT,
        "channel_match": "position",
    }
    assert supernet_from_checkpoint(payload).channel_match == "position"
    with pytest.raises(CheckpointError, match="weights do not fit"):  # read as by id
        supernet_from_checkpoint({**payload, "channel_match": "id"})
    with pytest.raises(CheckpointError, match="matches channels by 'rows'"):
        supernet_from_checkpoint({**payload, "channel_match": "rows"})
