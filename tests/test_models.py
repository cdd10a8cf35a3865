from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.shufflenetv2 import InvertedResidual

from nas import ShuffleNetV2, count_flops, count_params, preset
from nas.arch import PRESETS
from nas.models import ShuffleUnit

from .conftest import randomize_bn

MULTS = ["x0_5", "x1_0", "x1_5", "x2_0"]


@pytest.mark.parametrize("mult", MULTS)
def test_torchvision_state_dict_loads_and_outputs_match(mult):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, f"shufflenet_v2_{mult}")(weights=None)
    randomize_bn(reference)
    ours = ShuffleNetV2(PRESETS[f"shufflenet_v2_{mult}"])
    ours.load_state_dict(reference.state_dict(), strict=True)  # same names, same shapes
    reference.eval(), ours.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=0)
    assert count_params(ours.arch) == sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("stride", [1, 2])
def test_unit_at_half_split_is_torchvisions(stride):
    torch.manual_seed(stride)
    ref = InvertedResidual(116 if stride == 1 else 48, 116, stride)
    randomize_bn(ref)
    ours = ShuffleUnit(116 if stride == 1 else 48, 116, stride, 0.5, 3)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, ref.branch2[0].in_channels * (2 if stride == 1 else 1), 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("ratio", [0.25, 0.375, 0.75])
@pytest.mark.parametrize("kernel", [3, 5, 7])
def test_unit_split_ratio_shapes(ratio, kernel):
    stride1 = ShuffleUnit(48, 48, 1, ratio, kernel)
    branch = round(ratio * 48)
    assert stride1.passthrough == 48 - branch
    assert stride1.branch2[0].weight.shape == (branch, branch, 1, 1)
    assert stride1.branch2[3].weight.shape == (branch, 1, kernel, kernel)
    stride2 = ShuffleUnit(24, 48, 2, ratio, kernel)
    assert stride2.branch1[2].weight.shape == (48 - branch, 24, 1, 1)
    assert stride2.branch2[0].weight.shape == (branch, 24, 1, 1)
    x = torch.randn(1, 24, 9, 9)
    assert stride2(x).shape == (1, 48, 5, 5)
    assert stride1(stride2(x)).shape == (1, 48, 5, 5)


@pytest.mark.parametrize("name", [n for n in PRESETS if n.endswith("_cifar")])
def test_cifar_presets_run(name):
    arch = PRESETS[name]
    model = ShuffleNetV2(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model.conv1[0].stride == (1, 1)


def test_grayscale_and_odd_resolution():
    arch = preset(
        "shufflenet_v2_x0_5_cifar",
        in_channels=1,
        resolution=28,
        num_classes=3,
        kernels=(7, 5, 3),
        split_ratios=(0.25, 0.625, 0.75),
    )
    out = ShuffleNetV2(arch)(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 3)


@pytest.mark.parametrize(("mult", "published"), [("x0_5", 41e6), ("x1_0", 146e6)])
def test_flops_match_torchvision_published(mult, published):
    flops = count_flops(PRESETS[f"shufflenet_v2_{mult}"])
    assert abs(flops - published) / published < 0.03, flops


def test_flops_grow_with_every_axis():
    base = preset("shufflenet_v2_x0_5_cifar")
    bigger = [
        base.replace(widths=(64, 96, 192)),
        base.replace(repeats=(4, 8, 6)),
        base.replace(kernels=(3, 3, 7)),
        base.replace(split_ratios=(0.5, 0.75, 0.5)),
        base.replace(resolution=40),
        base.replace(last_channels=1280),
    ]
    for arch in bigger:
        assert count_flops(arch) > count_flops(base), arch.short_name()


@pytest.mark.parametrize("space_name", ["shufflenetv2_cifar", "shufflenetv2_imagenet"])
def test_flops_from_the_unit_shapes_equal_torchs_flop_counter(space_name):
    import random

    from torch.utils.flop_counter import FlopCounterMode

    from nas import load_space

    space = load_space(space_name)
    rng = random.Random(0)
    for arch in [space.min_arch, space.max_arch] + [space.sample(rng) for _ in range(8)]:
        arch = arch.replace(resolution=arch.resolution + rng.choice((0, 1)))  # odd sizes too
        with torch.device("meta"):
            model = ShuffleNetV2(arch).eval()
            x = torch.empty(1, arch.in_channels, arch.resolution, arch.resolution)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        assert count_flops(arch) == counter.get_total_flops() // 2, arch.short_name()
