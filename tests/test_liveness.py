"""Mechanism contracts of the supernet: every weight a sub-net uses is trained.

A supernet whose branches cannot learn still "learns a little" (its shallow remainder
does), so output checks miss it. These tests check the mechanism: every parameter row a
sub-net uses receives a nonzero gradient, at initialisation and after training steps,
in the supernet and in the model extracted from it, on every shipped space and on the
test spaces; a short training run changes every stride-1 branch.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import search_spaces
from nas import ConfigError, Supernet, load_space
from nas.checkpoint import load_checkpoint, supernet_from_checkpoint
from nas.data import load_data
from nas.models import CHANNEL_MATCHES, SUPERNET_LAYOUT
from nas.space import SearchSpace
from nas.train import TrainConfig, train

from .conftest import REPO, TINY_SPACE

SPACES = [
    *search_spaces.available(),
    str(TINY_SPACE),
    str(REPO / "tests" / "data" / "micro_space.yaml"),
    str(REPO / "benchmarks" / "spaces" / "shufflenetv2_cifar_tiny.yaml"),
]


def _archs(space: SearchSpace, n: int = 2, seed: int = 0):
    rng = random.Random(seed)
    return [space.max_arch, space.min_arch] + [space.sample(rng) for _ in range(n)]


def _batch(arch, batch: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    size = min(arch.resolution, 64)  # the ImageNet space's stem makes 64 px 16 px at stage2
    x = torch.randn(batch, arch.in_channels, size, size, generator=g)
    return x, torch.randint(0, arch.num_classes, (batch,), generator=g)


# BatchNorm shifts followed by a 1x1 conv and another BatchNorm, with no nonlinearity
# between (after each depthwise conv): the shift reaches the second BatchNorm as a
# per-channel constant, which its batch statistics subtract again, so in training mode
# its gradient is 0 by construction (in torchvision's ShuffleNetV2 as well).
FLAT_BY_CONSTRUCTION = ("branch1.1.bias", "branch2.4.bias")
# The scale of the BatchNorm before ReLU -> depthwise -> BatchNorm: while its shift is 0
# (at initialisation) ReLU is positively homogeneous and the second BatchNorm undoes any
# per-channel scale, so its gradient is 0 up to rounding; it trains once the shift moves.
# After training, a row whose shift is still within SHIFT_AT_INIT of 0 is in that regime
# (its gradient, proportional to the shift, can round to exactly 0); every other row must
# have a gradient.
FLAT_AT_INIT = ("branch2.1.weight",)
SHIFT_AT_INIT = 1e-4


def dead_rows(
    model: nn.Module, at_init: bool = False, values: nn.Module | None = None
) -> dict[str, int]:
    """Parameter -> number of rows (entries along dim 0) whose gradient is all zero.
    ``values``: the model holding the parameter values (default ``model``), read for the
    shifts of FLAT_AT_INIT rows after training."""
    values = model if values is None else values
    flat = FLAT_BY_CONSTRUCTION + (FLAT_AT_INIT if at_init else ())
    dead = {}
    for name, p in model.named_parameters():
        if name.endswith(flat):
            continue
        if p.grad is None:
            dead[name] = p.shape[0]
            continue
        zero = p.grad.reshape(p.shape[0], -1).abs().sum(1) == 0
        if name.endswith(FLAT_AT_INIT):
            shift = values.get_parameter(name.removesuffix("weight") + "bias")
            zero &= shift.detach().abs() >= SHIFT_AT_INIT
        if int(zero.sum()):
            dead[name] = int(zero.sum())
    return dead


def subnet_gradients(net: Supernet, arch) -> nn.Module:
    """The standalone model whose parameters are the supernet's gradients on ``arch``'s
    slices (through the same slicing and gathering as :meth:`Supernet.extract`)."""
    params = dict(net.named_parameters())
    saved = {name: p.data for name, p in params.items()}
    try:
        for p in params.values():
            p.data = p.grad if p.grad is not None else torch.zeros_like(p)
        grads = net.extract(arch)
    finally:
        for name, p in params.items():
            p.data = saved[name]
    for p in grads.parameters():  # present the copied values as the gradients
        p.grad = p.detach().clone()
    return grads


def check_live(net: Supernet, archs, at_init: bool = False) -> None:
    net.train()
    for arch in archs:
        x, y = _batch(arch)
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x, arch), y).backward()
        values = net.extract(arch)
        assert dead_rows(subnet_gradients(net, arch), at_init, values) == {}, arch.short_name()
        model = net.extract(arch).train()  # the extracted model is as alive
        F.cross_entropy(model(x), y).backward()
        assert dead_rows(model, at_init) == {}, arch.short_name()


@pytest.mark.parametrize(
    "space_name, channel_match",
    [(name, "id") for name in SPACES]
    + [(name, m) for name in ("shufflenetv2_cifar", str(TINY_SPACE)) for m in CHANNEL_MATCHES[1:]],
)
def test_every_used_parameter_gets_a_gradient_at_init(space_name, channel_match):
    torch.manual_seed(0)
    space = load_space(space_name)
    check_live(Supernet(space, channel_match=channel_match), _archs(space), at_init=True)


def test_a_dead_branch_is_caught():
    # The check itself can fail: the old zero init (last BatchNorm scale 0 before a ReLU)
    # leaves every stride-1 branch without a gradient.
    torch.manual_seed(0)
    space = load_space(TINY_SPACE)
    net = Supernet(space).train()
    for bn in net.branch_norms():
        nn.init.zeros_(bn.weight)
    arch = space.max_arch
    x, y = _batch(arch)
    F.cross_entropy(net(x, arch), y).backward()
    grads = subnet_gradients(net, arch)
    dead = dead_rows(grads, at_init=True)
    rows = {name: p.shape[0] for name, p in grads.named_parameters()}
    for name in (
        "stage3.1.branch2.0.weight",
        "stage3.1.branch2.3.weight",
        "stage3.1.branch2.6.bias",
    ):
        assert dead.get(name) == rows[name], name  # every row of the branch: dead


def test_a_supernet_trained_with_dead_branches_is_refused():
    from nas import CheckpointError

    space = load_space(TINY_SPACE)
    net = Supernet(space)
    for bn in net.branch_norms():
        nn.init.zeros_(bn.weight)
    payload = {"kind": "supernet", "space": space.to_dict(), "state_dict": net.state_dict()}
    payload["supernet_layout"] = SUPERNET_LAYOUT
    with pytest.raises(CheckpointError, match="dead stride-1 branches"):
        supernet_from_checkpoint(payload)
    nn.init.constant_(net.branch_norms()[0].weight, 0.5)  # one live branch: a real supernet
    supernet_from_checkpoint({**payload, "state_dict": net.state_dict()})


def test_a_zero_branch_scale_is_refused():
    space = load_space(TINY_SPACE)
    with pytest.raises(ConfigError, match="branch_scale must be a positive number"):
        Supernet(space, branch_scale=0.0)
    with pytest.raises(ConfigError, match="branch_scale must be a positive number"):
        TrainConfig(branch_scale=0.0)


@pytest.mark.parametrize(
    "space_name, channel_match",
    [(name, "id") for name in SPACES] + [(TINY_SPACE, "position")],
)
def test_after_training_every_branch_changed_and_stays_alive(space_name, channel_match, tmp_path):
    """A few supernet steps with the shared recipe: every stride-1 branch's weights moved
    from their initial values, and every parameter the sub-nets use still gets a
    gradient, in the supernet and in the extracted models. The checkpoint rebuilds the
    supernet with the channel matching it was trained with."""
    space = load_space(space_name)
    size = min(space.max_arch.resolution, 64)
    if size < space.max_arch.resolution:  # the ImageNet space, at a size CI can afford
        space = space.with_fixed(resolution=size)
    data = load_data(f"synthetic:classes=3,size={size},train=16,test=4")
    # sandwich: the largest sub-net, which uses every unit, trains at every step
    config = TrainConfig.supernet(
        strategy="sandwich",
        epochs=1,
        batch_size=4,
        steps_per_epoch=3,
        eval_every=0,
        channel_match=channel_match,
    )
    train(space, data, config, tmp_path, progress=False, log=lambda _: None)
    net = supernet_from_checkpoint(load_checkpoint(tmp_path / "supernet.pt", kind="supernet"))
    assert net.channel_match == channel_match
    torch.manual_seed(config.seed)  # the trainer's initialisation, for the comparison
    initial = Supernet(
        net.space, branch_scale=config.branch_scale, channel_match=channel_match
    ).state_dict()
    for stage_name in ("stage2", "stage3", "stage4"):
        for i, unit in enumerate(getattr(net, stage_name)):
            for name, p in unit.branch2.named_parameters():
                key = f"{stage_name}.{i}.branch2.{name}"
                if key.endswith(FLAT_BY_CONSTRUCTION + FLAT_AT_INIT):
                    continue  # a gradient at rounding level moves nothing in 3 steps
                assert not torch.equal(p, initial[key]), f"{key} never moved"
    check_live(net, _archs(net.space, seed=1))
