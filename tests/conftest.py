from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# Two cores: let each xdist worker use one thread so workers do not fight, and the same
# for the scripts and CLIs the tests start as subprocesses (they inherit the environment;
# left alone, each would take every core while the other worker runs too).
TEST_THREADS = os.environ.get("NAS_TEST_THREADS", "1")
torch.set_num_threads(int(TEST_THREADS))
os.environ.setdefault("OMP_NUM_THREADS", TEST_THREADS)

settings.register_profile(
    "default",
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("default")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Long tests first: with xdist's work stealing the short ones fill in around them
    # instead of one long test running alone at the end.
    items.sort(key=lambda item: "slow" not in item.keywords)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def randomize_bn(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One decoded-data cache for the session, shared by xdist workers, away from $HOME."""
    root = tmp_path_factory.getbasetemp()
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    os.environ["NAS_CACHE_DIR"] = str(shared / "nas-cache")


REPO = Path(__file__).resolve().parents[1]
SHARED_ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
TINY_SPACE = REPO / "tests" / "data" / "tiny_space.yaml"


@pytest.fixture(scope="session")
def tiny_supernet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A supernet of the tiny space, briefly trained on the embedded data (per worker)."""
    from nas.data import DataSpec, load_data
    from nas.space import load_space
    from nas.train import TrainConfig, train

    out = tmp_path_factory.mktemp("supernet")
    config = TrainConfig(epochs=1, batch_size=64, steps_per_epoch=6, eval_every=0)
    train(
        load_space(TINY_SPACE),
        load_data(DataSpec("embedded")),
        config,
        out,
        progress=False,
        log=lambda _: None,
    )
    return out / "supernet.pt"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ShuffleNetV2 x0.5 (CIFAR stem) checkpoint trained briefly on learnable data."""
    from nas.arch import preset
    from nas.data import load_data
    from nas.train import TrainConfig, train

    out = tmp_path_factory.mktemp("trained")
    train(
        preset("shufflenet_v2_x0_5_cifar"),
        load_data("synthetic:classes=4,train=96,test=16"),
        TrainConfig(epochs=3, batch_size=16, lr=0.05),
        out,
        progress=False,
        log=lambda _: None,
    )
    return out / "model.pt"


@pytest.fixture(scope="session")
def fast_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torch eager target with few repeats: latency measured fast, not precisely."""
    from nas.latency import HardwareTarget

    path = tmp_path_factory.mktemp("target") / "fast-torch.yaml"
    HardwareTarget("fast-torch", "torch", warmup=2, repeats=10, max_cv=0.5, retries=0).to_yaml(path)
    return path
