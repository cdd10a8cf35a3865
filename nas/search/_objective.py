"""The Optuna objective: a trial's arch scored by the supernet, its latency by the proxy."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import optuna
from tqdm.auto import tqdm

from nas.latency import MeasurementError
from nas.search._evaluator import PROXIES, Evaluation, Evaluator
from nas.search._prepare import SearchContext


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def waiting_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials enqueued in ``study`` and not run yet."""
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))


def search_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The complete trials the sampler drew (or the start archs): not an anchor's
    exploration (``explore`` attr), which adds trials after the search and so does not
    count towards ``--trials``."""
    return [t for t in complete_trials(study) if "explore" not in t.user_attrs]


def optimize(ctx: SearchContext, study: optuna.Study, evaluator: Evaluator, budget: float) -> None:
    """Run the study up to ``--trials`` search trials (a resumed study only the rest)."""
    o = ctx.options
    # An exploration cut short by a kill is finished first: Optuna runs waiting trials
    # before it samples, and they would take the places of the search's own.
    if any("explore" in t.user_attrs for t in waiting_trials(study)):
        run_waiting(ctx, study, evaluator, budget, "explore (resumed)")
    done = len(search_trials(study))
    remaining = max(0, o.trials - done)
    if done:
        ctx.log(f"study {ctx.study_name}: {done} trials already complete, {remaining} to go")
    if remaining == 0:
        return

    def cap(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        # counts complete search trials, so that failed ones are made up for
        if len(search_trials(study)) >= o.trials:
            study.stop()

    _run_trials(ctx, study, evaluator, budget, remaining, "search", [cap], o.timeout_s)


def run_waiting(
    ctx: SearchContext, study: optuna.Study, evaluator: Evaluator, budget: float, desc: str
) -> int:
    """Run the trials enqueued in ``study`` and not run yet; returns how many there were.
    Not bounded by ``--timeout``; one worker at a time (another's waiting trials would be
    run here too)."""
    waiting = len(waiting_trials(study))
    if waiting:
        _run_trials(ctx, study, evaluator, budget, waiting, desc, [], None)
    return waiting


def _run_trials(
    ctx: SearchContext,
    study: optuna.Study,
    evaluator: Evaluator,
    budget: float,
    n_trials: int,
    desc: str,
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]],
    timeout_s: float | None,
) -> None:
    unit = PROXIES[ctx.options.proxy].unit
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bar = tqdm(total=n_trials, desc=desc, unit="trial", disable=not ctx.options.progress)
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
            n_trials=n_trials,
            timeout=timeout_s,
            callbacks=callbacks,
            # a failed measurement (a remote device gone, a model the runtime rejects)
            # fails that trial; the search goes on
            catch=(RuntimeError, MeasurementError),
            gc_after_trial=True,
        )
    finally:
        bar.close()
