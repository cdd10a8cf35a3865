"""Optuna storage, sampler and study set-up, with the run's settings pinned to the study."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from typing import Any

import optuna

from nas._errors import ConfigError
from nas.data import mix_seed

SamplerFactory = Callable[[int, bool], optuna.samplers.BaseSampler]
#: name -> factory(seed, shared): one Optuna sampler each (``register_sampler`` adds one).
SAMPLERS: dict[str, SamplerFactory] = {}


def register_sampler(name: str) -> Callable[[SamplerFactory], SamplerFactory]:
    def add(factory: SamplerFactory) -> SamplerFactory:
        if name in SAMPLERS:
            raise ValueError(f"sampler {name!r} is registered already")
        SAMPLERS[name] = factory
        return factory

    return add


@register_sampler("tpe")
def _tpe(seed: int, shared: bool) -> optuna.samplers.BaseSampler:
    # constant_liar keeps parallel workers from proposing the same point
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, n_startup_trials=10, constant_liar=shared
    )


@register_sampler("nsga2")
def _nsga2(seed: int, shared: bool) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed)


@register_sampler("random")
def _random(seed: int, shared: bool) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


# validation accuracy up, latency (or FLOPs) down
DIRECTIONS = (optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE)


def mask_url(url: str) -> str:
    """The storage URL without its password, for messages."""
    return re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats: a trial whose worker died (kill -9, lost machine) is
    marked failed after the grace period and retried by a live worker."""
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine["connect_args"] = {"timeout": 60}
    elif url.startswith("postgresql"):
        engine["connect_args"] = {"connect_timeout": 10}
    # NAS_STORAGE_HEARTBEAT="interval,grace" (seconds) shortens detection, e.g. in tests
    interval, grace = (int(v) for v in os.environ.get("NAS_STORAGE_HEARTBEAT", "10,40").split(","))
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _rdb(url, engine, interval, grace)
    except ImportError as exc:
        raise ConfigError(
            f"storage {mask_url(url)} needs a driver that is not installed "
            f"({exc.name}); for PostgreSQL: pip install 'shufflenas[postgres]'"
        ) from None
    except Exception as exc:  # sqlalchemy: unreachable server, bad URL, refused login
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot open storage {mask_url(url)}: {reason[:200]}") from None


def _rdb(url: str, engine: dict[str, Any], interval: int, grace: int) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine,
        heartbeat_interval=interval,
        grace_period=grace,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=2
        ),
    )


def make_sampler(name: str, seed: int, shared: bool) -> optuna.samplers.BaseSampler:
    """``shared``: other workers may run at the same time (their seeds must differ)."""
    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}: choose one of {', '.join(SAMPLERS)}")
    if shared:
        seed = mix_seed(seed, os.getpid()) % 2**32  # numpy's seeds are 32-bit
    return SAMPLERS[name](seed, shared)


def open_study(
    name: str,
    storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler,
    settings: dict[str, Any],
) -> optuna.Study:
    """Create the study or continue it; a study made with other settings is refused."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=sampler,
        directions=list(DIRECTIONS),
        load_if_exists=True,
    )
    recorded = study.user_attrs.get("settings")
    if recorded is None:
        study.set_user_attr("settings", settings)
    elif recorded != settings:
        changed = sorted(
            k for k in set(recorded) | set(settings) if recorded.get(k) != settings.get(k)
        )
        raise ConfigError(
            f"study {name!r} was created with other settings ({', '.join(changed)} "
            "differ); rerun with the same options, or give a new --study-name"
        )
    return study
