"""Registries of the search (samplers, latency proxies) and of the latency runtimes:
one contract per registry, parametrized over its entries, and no name registered twice."""

from __future__ import annotations

import optuna
import pytest

from nas import load_space
from nas.checkpoint import load_checkpoint
from nas.data import DataSpec, load_data
from nas.search import PROXIES, SAMPLERS

from .conftest import TINY_SPACE


def _proposals(name: str, trials: int = 4) -> list[str]:
    """The archs a fresh study with sampler ``name`` proposes, each checked to be in the
    space (the objectives: any two numbers the arch determines)."""
    from nas.search import make_sampler

    space = load_space(TINY_SPACE)
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=make_sampler(name, 0, shared=False)
    )
    seen: list[str] = []

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        arch = space.suggest(trial)
        space.check(arch)  # raises when outside the space
        seen.append(arch.hash)
        return float(sum(arch.widths)), float(sum(arch.repeats))

    study.optimize(objective, n_trials=trials)
    return seen


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_proposes_archs_of_the_space_reproducibly(name):
    first = _proposals(name)
    assert len(first) == 4 and _proposals(name) == first  # seeded: the same proposals


def test_registries_refuse_a_second_entry_of_a_name():
    from nas.latency import RUNTIMES, register_runtime
    from nas.search import register_proxy, register_sampler

    with pytest.raises(ValueError, match="registered already"):
        register_sampler("tpe")(lambda seed, shared: optuna.samplers.RandomSampler(seed))
    with pytest.raises(ValueError, match="registered already"):
        register_proxy(type(PROXIES["flops"]))
    with pytest.raises(ValueError, match="registered already"):
        register_runtime(RUNTIMES["torch"])
    assert "tpe" in SAMPLERS and "flops" in PROXIES  # the originals stay


@pytest.mark.parametrize("name", sorted(PROXIES))
def test_every_latency_proxy_keeps_its_contract(name, tiny_supernet, fast_target):
    from nas.checkpoint import supernet_from_checkpoint
    from nas.latency import LatencyMeter, load_target
    from nas.models import count_flops
    from nas.search import Evaluator

    proxy = PROXIES[name]
    assert proxy.name == name and proxy.unit in ("ms", "MFLOPs") and proxy.slack >= 1.0
    supernet = supernet_from_checkpoint(load_checkpoint(tiny_supernet, kind="supernet"))
    arch = supernet.space.min_arch
    target = load_target(str(fast_target))
    with LatencyMeter(target) as meter:
        evaluator = Evaluator(
            supernet, load_data(DataSpec("embedded")), target, name, meter, None, 1
        )
        value, stats = proxy.objective(evaluator, arch, predicted=1.25, flops=count_flops(arch))
    assert value > 0
    if name == "measured":  # the measurement is the objective, and it is recorded
        assert stats is not None and value == stats.median_ms
    else:
        assert stats is None
        assert value == (1.25 if name == "predicted" else count_flops(arch) / 1e6)
