"""Search: Optuna over a space, accuracy from the supernet, latency measured on a target."""

from nas.search._evaluator import PROXIES, Evaluation, Evaluator
from nas.search._options import SearchOptions, default_study_name
from nas.search._pareto import dominates, hypervolume, pareto_front
from nas.search._run import run_search
from nas.search._study import SAMPLERS, mask_url, open_storage

__all__ = [
    "PROXIES",
    "SAMPLERS",
    "Evaluation",
    "Evaluator",
    "SearchOptions",
    "default_study_name",
    "dominates",
    "hypervolume",
    "mask_url",
    "open_storage",
    "pareto_front",
    "run_search",
]
