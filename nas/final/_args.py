"""Command-line options for :class:`FinalTraining`, built from its fields."""

from __future__ import annotations

import argparse
import dataclasses

from nas.cli import field_type
from nas.final._config import DEFAULT_LR, INITS, FinalTraining

HELP = {
    "epochs": "epochs of final training per front arch (nas.search: 0 turns it off)",
    "init": "start from the arch's own init (scratch) or its supernet weights (inherit)",
    "distill": "also learn from the supernet's largest sub-net (soft targets)",
    "lr": "peak learning rate (default: "
    + ", ".join(f"{lr} {init}" for init, lr in DEFAULT_LR.items())
    + ")",
    "kd_ratio": "weight of the teacher's soft targets (with distillation)",
    "batch_size": "batch size",
    "steps_per_epoch": "cap on the steps of an epoch",
    "shortlist": "archs trained per front arch: it and the next best supernet estimates no "
    "slower; the front is chosen again on their trained validation accuracy",
}


def add_final_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """One option per :class:`FinalTraining` field, named ``--<prefix><field>``."""
    group = parser.add_argument_group("final training")
    defaults = FinalTraining()
    for f in dataclasses.fields(FinalTraining):
        flag = "--" + prefix + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        text = HELP[f.name] + ("" if default is None else f" (default {default})")
        if isinstance(default, bool):
            group.add_argument(flag, dest=f"final_{f.name}", action="store_true", help=text)
            continue
        group.add_argument(
            flag,
            dest=f"final_{f.name}",
            type=field_type(f),
            default=default,
            choices=INITS if f.name == "init" else None,
            help=text,
        )


def final_from_args(args: argparse.Namespace) -> FinalTraining | None:
    """The :class:`FinalTraining` the options ask for; ``None`` at 0 epochs."""
    if args.final_epochs == 0:
        return None
    return FinalTraining(
        **{f.name: getattr(args, f"final_{f.name}") for f in dataclasses.fields(FinalTraining)}
    )
