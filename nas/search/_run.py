"""A search run, step by step: preparation, supernet, study, budget, objective, final
front, export, summary (one module each)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import optuna

from nas._errors import ConfigError
from nas.latency import LatencyMeter
from nas.search._anchors import anchored, explore, measure_anchors
from nas.search._budget import objective_budget, space_reach
from nas.search._evaluator import Evaluator
from nas.search._export import export_front
from nas.search._front import final_front, shortlist
from nas.search._objective import optimize
from nas.search._options import SearchOptions
from nas.search._prepare import load_supernet, lookup_predictor, prepare, study_settings
from nas.search._study import make_sampler, open_storage, open_study
from nas.search._summary import print_summary, write_summary


def run_search(options: SearchOptions, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Search ``options``' space for the best archs under the budget; returns the summary
    (also written as ``summary.json`` next to ``pareto.csv`` in the run directory)."""
    started = time.time()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ctx = prepare(options, log)  # every input checked; nothing written yet
    # An explicit storage is opened first, so a wrong URL fails before any training.
    storage = open_storage(ctx.storage_url) if options.storage else None
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or open_storage(ctx.storage_url)
    supernet = load_supernet(ctx)
    study = open_study(
        ctx.study_name,
        storage,
        make_sampler(
            options.sampler, options.seed, shared=not ctx.storage_url.startswith("sqlite")
        ),
        study_settings(ctx),
    )
    if not study.trials:
        for params in ctx.start_params:
            study.enqueue_trial(params, skip_if_exists=True)
    meter = LatencyMeter(ctx.target)  # whatever the proxy, the final front is measured
    try:
        predictor = lookup_predictor(ctx, meter)
        if options.proxy == "predicted" and predictor is None:
            raise ConfigError(
                f"--proxy predicted needs a lookup table for {ctx.target.name} and "
                f"{ctx.space.name}: python -m nas.latency build-lut --target {options.target} "
                f"--space {options.space or ctx.space.name}"
            )
        warning = space_reach(ctx, meter)
        if warning:
            log(warning)
        anchors = measure_anchors(ctx, meter)  # in the round the search starts in
        budget = objective_budget(ctx, meter)
        evaluator = Evaluator(
            supernet,
            ctx.data,
            ctx.target,
            options.proxy,
            meter,
            predictor,
            options.bn_batches,
            device=ctx.device,
            seed=options.seed,
        )
        optimize(ctx, study, evaluator, budget)
        explore(ctx, study, evaluator, budget, anchors)  # where the search drew too little
        front = anchored(ctx, study, meter, final_front(ctx, study, meter, budget), anchors)
        if options.final is not None:
            front = shortlist(ctx, study, meter, front, options.final.shortlist)
        exported = export_front(ctx, supernet, front)
        summary = write_summary(ctx, study, exported, budget, time.time() - started)
    finally:
        meter.close()
    print_summary(ctx, summary, exported, log)
    return summary
