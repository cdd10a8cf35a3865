"""The Optuna objective: a trial's arch scored by the supernet, its latency by the proxy."""

from __future__ import annotations

import os
import socket

import optuna
from tqdm.auto import tqdm

from nas.latency import MeasurementError
from nas.search._evaluator import PROXIES, Evaluation, Evaluator
from nas.search._prepare import SearchContext


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def optimize(ctx: SearchContext, study: optuna.Study, evaluator: Evaluator, budget: float) -> None:
    o = ctx.options
    done = len(complete_trials(study))
    remaining = max(0, o.trials - done)
    unit = PROXIES[o.proxy].unit
    if done:
        ctx.log(f"study {ctx.study_name}: {done} trials already complete, {remaining} to go")
    if remaining == 0:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bar = tqdm(total=remaining, desc="search", unit="trial", disable=not o.progress)

    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        trial.set_user_attr("worker", worker)  # which process ran it (several may share)
        arch = ctx.space.suggest(trial)
        seen = {
            t.user_attrs.get("arch_hash"): t
            for t in complete_trials(study)
            if "val_acc" in t.user_attrs
        }
        if arch.hash in seen:  # a repeated arch reuses its result
            earlier = seen[arch.hash]
            result = Evaluation.from_attrs(earlier.user_attrs, earlier.values[1])
            trial.set_user_attr("reused_from", earlier.number)
        else:
            result = evaluator.evaluate(arch)
        for key, value in result.attrs().items():
            trial.set_user_attr(key, value)
        trial.set_constraint("budget", result.objective - budget)
        feasible = "ok" if result.objective <= budget else "over budget"
        bar.update(1)
        tqdm.write(
            f"trial {trial.number:3d}  acc {result.val_acc:.3f}  "
            f"{result.objective:7.2f} {unit}  {feasible:11s}  {arch.short_name()}"
        )
        return result.val_acc, result.objective

    try:
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=o.timeout_s,
            callbacks=[
                optuna.study.MaxTrialsCallback(o.trials, states=(optuna.trial.TrialState.COMPLETE,))
            ],
            # a failed measurement (a remote device gone, a model the runtime rejects)
            # fails that trial; the search goes on
            catch=(RuntimeError, MeasurementError),
            gc_after_trial=True,
        )
    finally:
        bar.close()
