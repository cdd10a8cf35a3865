"""Search: Optuna over a space, accuracy from the supernet, latency measured on a target."""

from nas.search._evaluator import PROXIES, Evaluation, Evaluator, LatencyProxy, register_proxy
from nas.search._options import SearchOptions, default_study_name
from nas.search._pareto import dominates, hypervolume, pareto_front
from nas.search._run import run_search
from nas.search._study import SAMPLERS, make_sampler, mask_url, open_storage, register_sampler

__all__ = [
    "PROXIES",
    "SAMPLERS",
    "Evaluation",
    "Evaluator",
    "LatencyProxy",
    "SearchOptions",
    "default_study_name",
    "dominates",
    "hypervolume",
    "make_sampler",
    "mask_url",
    "open_storage",
    "pareto_front",
    "register_proxy",
    "register_sampler",
    "run_search",
]
