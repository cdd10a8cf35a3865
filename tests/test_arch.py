from __future__ import annotations

import subprocess
import sys

import pytest

from nas import ArchConfig, ConfigError, load_arch
from nas.arch import PRESETS, param_names, preset, split_channels

TORCHVISION_WIDTHS = {
    "x0_5": (48, 96, 192),
    "x1_0": (116, 232, 464),
    "x1_5": (176, 352, 704),
    "x2_0": (244, 488, 976),
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_round_trips_yaml_and_params(name, tmp_path):
    arch = PRESETS[name]
    path = tmp_path / "a.yaml"
    arch.to_yaml(path)
    assert ArchConfig.from_yaml(path) == arch
    assert ArchConfig.from_params(arch.to_params()) == arch
    assert ArchConfig.from_dict(arch.to_dict()) == arch
    assert load_arch(name) == arch and load_arch(path) == arch
    assert ArchConfig.from_yaml(path).hash == arch.hash


@pytest.mark.parametrize("mult", list(TORCHVISION_WIDTHS))
def test_presets_are_torchvisions_numbers(mult):
    imagenet, cifar = PRESETS[f"shufflenet_v2_{mult}"], PRESETS[f"shufflenet_v2_{mult}_cifar"]
    assert imagenet.widths == cifar.widths == TORCHVISION_WIDTHS[mult]
    assert imagenet.repeats == (4, 8, 4) and imagenet.split_ratios == (0.5, 0.5, 0.5)
    assert (imagenet.stem, imagenet.resolution, imagenet.num_classes) == ("imagenet", 224, 1000)
    assert (cifar.stem, cifar.resolution, cifar.num_classes) == ("cifar", 32, 10)
    assert imagenet.last_channels == (2048 if mult == "x2_0" else 1024)


def test_hash_is_stable_and_distinguishes():
    # Pinned: a change to the hash scheme would orphan every cache and run directory.
    assert PRESETS["shufflenet_v2_x1_0_cifar"].hash == "65ba6cf05c"
    hashes = {a.hash for a in PRESETS.values()}
    assert len(hashes) == len(PRESETS)
    base = PRESETS["shufflenet_v2_x0_5"]
    assert base.replace(kernels=(3, 3, 5)).hash != base.hash
    assert base.replace(split_ratios=[0.5, 0.5, 0.5]).hash == base.hash  # lists normalised


def test_params_are_flat_scalars():
    params = PRESETS["shufflenet_v2_x1_0"].to_params()
    assert list(params) == param_names()
    assert params["stage3.width"] == 232 and params["stage2.split_ratio"] == 0.5
    assert all(isinstance(v, (int, float, str)) for v in params.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"widths": (48, 97, 192)}, "stage3 width 97 is odd"),
        ({"split_ratios": (0.5, 0.0, 0.5)}, "strictly between 0 and 1"),
        ({"split_ratios": (0.5, 1.0, 0.5)}, "strictly between 0 and 1"),
        ({"split_ratios": (0.5, "half", 0.5)}, "must be a number"),
        ({"kernels": (3, 4, 3)}, "kernel 4 is not supported"),
        ({"repeats": (4, 0, 4)}, "repeats[1] must be >= 1"),
        ({"repeats": (4, 8)}, "must have 3 values"),
        ({"widths": 48}, "must be a list of 3 values"),
        ({"stem": "mnist"}, "unknown stem 'mnist'"),
        ({"in_channels": 2}, "in_channels 2 is not supported"),
        ({"resolution": True}, "resolution must be an integer"),
        ({"num_classes": 0}, "num_classes must be >= 1"),
    ],
)
def test_invalid_values_are_clear_errors(change, message):
    with pytest.raises(ConfigError) as info:
        PRESETS["shufflenet_v2_x0_5"].replace(**change)
    assert message in str(info.value)


def test_unknown_and_missing_keys():
    data = PRESETS["shufflenet_v2_x0_5"].to_dict()
    with pytest.raises(ConfigError, match="unknown arch key 'widht'; did you mean 'width"):
        ArchConfig.from_dict({**data, "widht": 1})
    del data["repeats"]
    with pytest.raises(ConfigError, match="missing the required key 'repeats'"):
        ArchConfig.from_dict(data)
    with pytest.raises(ConfigError, match="unknown arch parameter"):
        ArchConfig.from_params({**PRESETS["shufflenet_v2_x0_5"].to_params(), "depth": 3})


def test_malformed_and_wrong_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("widths: [48, 96\nrepeats: [4, 8, 4]\n")
    with pytest.raises(ConfigError, match=r"malformed YAML in arch file .*bad.yaml at line"):
        ArchConfig.from_yaml(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a YAML mapping"):
        ArchConfig.from_yaml(bad)
    with pytest.raises(ConfigError, match="arch file not found"):
        ArchConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown arch 'x9'"):
        load_arch("x9")


@pytest.mark.parametrize(
    ("channels", "ratio", "expected"),
    [
        (116, 0.5, (58, 58)),
        (48, 0.25, (36, 12)),
        (48, 0.75, (12, 36)),
        (10, 0.375, (6, 4)),
        (4, 0.01, (3, 1)),
        (4, 0.99, (1, 3)),
        (2, 0.5, (1, 1)),
    ],
)
def test_split_channels(channels, ratio, expected):
    assert split_channels(channels, ratio) == expected


def test_units_follow_the_arch():
    arch = preset("shufflenet_v2_x1_0", split_ratios=(0.25, 0.5, 0.75), kernels=(3, 5, 7))
    units = list(arch.units())
    assert len(units) == sum(arch.repeats)
    first = units[0]
    assert (first.in_channels, first.out_channels, first.stride, first.in_size) == (24, 116, 2, 56)
    assert first.branch_channels == 29  # round(0.25 * 116)
    assert units[4].stride == 2 and units[4].in_size == 28 and units[4].kernel == 5
    assert units[-1].in_size == 7 and units[-1].branch_channels == 348
    cifar = list(preset("shufflenet_v2_x0_5_cifar").units())
    assert [u.in_size for u in cifar if u.stride == 2] == [32, 16, 8]


def test_cli_prints_arch_and_fails_in_one_line(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "nas.arch", "shufflenet_v2_x1_0"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "widths: [116, 232, 464]" in ok.stdout and "FLOPs 144.9M" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("widths: [48, 95, 192]\nrepeats: [4, 8, 4]\n")
    result = subprocess.run(
        [sys.executable, "-m", "nas.arch", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "stage3 width 95 is odd" in result.stderr
