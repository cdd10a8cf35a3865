"""Final training: the searched front's archs trained to their best before delivery."""

from nas.final._args import add_final_arguments, final_from_args
from nas.final._config import INITS, FinalTraining
from nas.final._train import FrontTrainer

__all__ = [
    "INITS",
    "FinalTraining",
    "FrontTrainer",
    "add_final_arguments",
    "final_from_args",
]
