"""Every registered supernet training strategy passes one contract."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from nas import load_space
from nas.checkpoint import load_checkpoint, supernet_from_checkpoint
from nas.data import load_data
from nas.models import Supernet
from nas.train import STRATEGIES, Strategy, TrainConfig, make_strategy, register_strategy, train

from .conftest import TINY_SPACE

SPACE = load_space(TINY_SPACE)
PROGRESS = [i / 50 for i in range(50)]


def _draws(name: str, progress=PROGRESS, seed: int = 0, **options):
    strategy = make_strategy(name, SPACE, **options)
    rng = random.Random(seed)
    return [(p, strategy.draw(rng, p)) for p in progress for _ in range(8)]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_draws_are_archs_of_the_space_with_at_most_one_leading_teacher(name):
    for _, draws in _draws(name):
        assert draws
        for i, draw in enumerate(draws):
            SPACE.check(draw.arch)
            assert not draw.teacher or i == 0  # a teacher comes first: the others learn from it


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_draws_are_seeded(name):
    assert _draws(name, seed=3) == _draws(name, seed=3)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_the_last_part_of_training_covers_every_choice(name):
    # Whatever a strategy does early on, by the end every choice of every axis is trained.
    late = [p for p in PROGRESS if p >= 0.8]
    seen: dict[str, set] = {k: set() for k in SPACE.searchable}
    for _, draws in _draws(name, progress=late):
        for draw in draws:
            for key, value in draw.arch.to_params().items():
                if key in seen:
                    seen[key].add(value)
    assert seen == {k: set(v) for k, v in SPACE.searchable.items()}


def test_sandwich_trains_both_ends_and_distills_from_the_largest():
    for _, draws in _draws("sandwich"):
        assert draws[0].arch == SPACE.max_arch and draws[0].teacher
        assert draws[1].arch == SPACE.min_arch and len(draws) == 4


def test_progressive_shrinking_opens_kernel_then_depth_then_width():
    strategy = make_strategy("progressive", SPACE)
    varied: dict[float, set[str]] = {}
    for p in (0.1, 0.3, 0.5, 0.9):
        rng, keys = random.Random(0), set()
        for _ in range(60):
            draws = strategy.draw(rng, p)
            assert draws[0].arch == SPACE.max_arch and draws[0].teacher
            for d in draws[1:]:
                top = SPACE.max_arch.to_params()
                keys |= {k.rsplit(".", 1)[-1] for k, v in d.arch.to_params().items() if v != top[k]}
        varied[p] = keys
    assert varied[0.1] == set()
    assert varied[0.3] - {"resolution"} == {"kernel"}
    assert varied[0.5] - varied[0.3] == {"repeats"}
    assert varied[0.9] - varied[0.5] == {"width", "split_ratio", "stem_channels", "last_channels"}


def test_flops_stratified_draws_every_flops_bin_alike():
    strategy = make_strategy("flops-stratified", SPACE)
    bins = Counter(
        strategy.bin_of(d.arch) for _, draws in _draws("flops-stratified") for d in draws
    )
    assert set(bins) == set(range(strategy.bins))
    assert min(bins.values()) > 0.6 * max(bins.values())
    # uniform choices crowd the middle bins; the ends get their share only when stratified
    uniform = Counter(strategy.bin_of(SPACE.sample(random.Random(i))) for i in range(400))
    ends = strategy.bins - 1
    assert (uniform[0] + uniform[ends]) / 400 < 0.6 * (bins[0] + bins[ends]) / bins.total()
    assert strategy.bin_of(SPACE.min_arch) == 0 and strategy.bin_of(SPACE.max_arch) == ends


def test_width_warmup_pins_widths_then_lets_go():
    for p, draws in _draws("spos", width_warmup=0.5):
        for d in draws:
            a, top = d.arch, SPACE.max_arch
            wide = (a.widths, a.split_ratios, a.stem_channels, a.last_channels) == (
                top.widths,
                top.split_ratios,
                top.stem_channels,
                top.last_channels,
            )
            assert wide or p >= 0.5


def test_a_name_is_registered_once():
    class Again(Strategy):
        name = "spos"
        summary = "a second spos"

        def _draw(self, rng, progress):
            return []

    with pytest.raises(ValueError, match="already registered"):
        register_strategy(Again)
    assert STRATEGIES["spos"] is not Again


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_training_with_each_strategy_moves_the_weights(name, tmp_path):
    data = load_data("synthetic:classes=3,size=32,train=16,test=4")
    config = TrainConfig.supernet(
        strategy=name, epochs=1, batch_size=8, steps_per_epoch=2, eval_every=0
    )
    train(SPACE, data, config, tmp_path, progress=False, log=lambda _: None)
    net = supernet_from_checkpoint(load_checkpoint(tmp_path / "supernet.pt", kind="supernet"))
    torch.manual_seed(config.seed)
    initial = Supernet(net.space, branch_scale=config.branch_scale).state_dict()
    # every strategy trains the stem and the classifier of whatever it draws
    for key in ("conv1.0.weight", "fc.weight", "fc.bias"):
        assert not torch.equal(net.state_dict()[key], initial[key]), key
