from __future__ import annotations

import random
import subprocess
import sys

import optuna
import pytest

import search_spaces
from nas import ArchConfig, ConfigError, SearchSpace, load_space

SPACES = search_spaces.available()


def test_shipped_spaces():
    assert {"shufflenetv2_cifar", "shufflenetv2_imagenet"} <= set(SPACES)
    assert load_space().name == "shufflenetv2_cifar"


@pytest.mark.parametrize("name", SPACES)
def test_space_basics(name, tmp_path):
    space = load_space(name)
    assert space.min_arch in space and space.max_arch in space
    for key, values in space.choices.items():
        assert getattr_param(space.min_arch, key) == values[0]
        assert getattr_param(space.max_arch, key) == values[-1]
    rng = random.Random(0)
    samples = [space.sample(rng) for _ in range(50)]
    assert all(a in space for a in samples) and len({a.hash for a in samples}) > 40
    path = tmp_path / "space.yaml"
    space.to_yaml(path)
    again = SearchSpace.from_yaml(path)
    assert again.choices == space.choices and again.hash == space.hash


@pytest.mark.parametrize("name", SPACES)
def test_optuna_round_trip(name):
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        trial = study.ask(space.distributions())
        arch = space.arch_from_params(trial.params)
        assert arch in space
        assert {k: v for k, v in arch.to_params().items() if k in space.searchable} == trial.params
        study.tell(trial, 0.0)
    trial = study.ask()
    assert space.suggest(trial) in space


def test_neighbours_are_one_choice_away_on_one_axis():
    space = load_space("shufflenetv2_cifar")
    # the smallest arch can only grow: one neighbour per searched axis
    up = space.neighbours(space.min_arch)
    assert len(up) == len(space.searchable) == 12
    arch = space.sample(3)
    found = space.neighbours(arch)
    params = arch.to_params()
    assert len({a.hash for a in found}) == len(found) and arch.hash not in {a.hash for a in found}
    ends = sum(params[k] in (v[0], v[-1]) for k, v in space.searchable.items())
    assert len(found) == 2 * len(space.searchable) - ends
    for other in found:
        assert other in space
        changed = [k for k, v in other.to_params().items() if v != params[k]]
        assert len(changed) == 1
        options = space.choices[changed[0]]
        step = options.index(other.to_params()[changed[0]]) - options.index(params[changed[0]])
        assert abs(step) == 1
    outside = space.max_arch.replace(resolution=40)
    with pytest.raises(ConfigError, match="outside search space"):
        space.neighbours(outside)


def test_default_cifar_space_covers_torchvision():
    space = load_space("shufflenetv2_cifar")
    widths = [space.choices[f"stage{i}.width"] for i in (2, 3, 4)]
    for mult in ("x0_5", "x1_0", "x1_5"):
        arch = ArchConfig.from_dict(
            {
                **space.min_arch.to_dict(),
                "widths": load_widths(mult),
                "repeats": [4, 8, 4],
                "split_ratios": [0.5] * 3,
            }
        )
        assert arch in space, mult
    assert widths[0][0] == 48 and widths[0][-1] == 244  # 0.5x .. 2.0x of x1.0's 116 ~ 244
    assert space.choices["stage3.repeats"][-1] == 16  # twice torchvision's 8


def load_widths(mult):
    from nas.arch import PRESETS

    return list(PRESETS[f"shufflenet_v2_{mult}_cifar"].widths)


def getattr_param(arch, key):
    return arch.to_params()[key]


def test_arch_outside_space_is_named():
    space = load_space()
    arch = space.min_arch.replace(widths=(50, 96, 192))
    assert arch not in space
    with pytest.raises(ConfigError, match=r"stage2.width = 50 is not one of"):
        space.check(arch)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["stages"]["stage2"].update(widths=[48, 63]), "stage2.width choice 63"),
        (lambda d: d["stages"]["stage3"].update(kernels=[]), "stage3.kernel has no choices"),
        (lambda d: d["stages"]["stage4"].update(repeats=[2, 2]), "lists a choice twice"),
        (lambda d: d["stages"].pop("stage4"), "must have exactly stage2, stage3, stage4"),
        (lambda d: d.update(resolutions=[32]), "unknown key 'resolutions'"),
        (lambda d: d["stages"]["stage2"].update(width=[48]), "unknown key 'width' in stage2"),
        (lambda d: d["stages"]["stage2"].update(split_ratios=[0.5, 1.5]), "strictly between"),
        (lambda d: d.pop("stem"), "missing key 'stem'"),
    ],
)
def test_bad_space_yaml(edit, message, tmp_path):
    data = load_space().to_dict()
    edit(data)
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        SearchSpace.from_dict(data)


def test_space_errors_from_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown search space 'tiny'"):
        load_space("tiny")
    bad = tmp_path / "s.yaml"
    bad.write_text("name: s\nstages: {stage2: [1, 2}\n")
    with pytest.raises(ConfigError, match="malformed YAML in search space file"):
        load_space(bad)


@pytest.mark.slow
def test_space_cli(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "nas.space"], capture_output=True, text=True, check=True
    ).stdout
    assert "shufflenetv2_cifar" in out and "max: w244-488-976 r8-16-8" in out
    bad = tmp_path / "s.yaml"
    bad.write_text("{{{")
    result = subprocess.run(
        [sys.executable, "-m", "nas.space", str(bad)], capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.startswith("error: malformed YAML")
    assert result.stderr.count("\n") == 1


def test_spaces_found_after_a_regular_install(tmp_path):
    """A non-editable install (wheel) must carry the YAML files."""
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--target",
            str(target),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    code = (
        "import search_spaces, nas; print(search_spaces.available()); "
        "print(nas.load_space().size); print(search_spaces.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
    ).stdout
    assert "shufflenetv2_cifar" in out and "shufflenetv2_imagenet" in out
    assert str(target) in out  # imported from the installed copy, not the source tree
