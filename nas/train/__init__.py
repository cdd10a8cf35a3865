"""Training: standalone nets and weight-sharing supernets, BatchNorm recalibration, eval."""

from nas.train._config import SCHEDULES, SUPERNET_RECIPE, TrainConfig, lr_at
from nas.train._distributed import pick_device
from nas.train._evaluate import (
    evaluate,
    loader_for,
    recalibrate_bn,
    subnet_accuracy,
    subnet_model,
)
from nas.train._strategies import (
    STRATEGIES,
    Draw,
    Strategy,
    make_strategy,
    pin,
    register_strategy,
)
from nas.train._trainer import FINAL, LOG, STATE, fit_to_data, train

__all__ = [
    "FINAL",
    "LOG",
    "SCHEDULES",
    "STATE",
    "STRATEGIES",
    "SUPERNET_RECIPE",
    "Draw",
    "Strategy",
    "TrainConfig",
    "evaluate",
    "fit_to_data",
    "loader_for",
    "lr_at",
    "make_strategy",
    "pick_device",
    "pin",
    "recalibrate_bn",
    "register_strategy",
    "subnet_accuracy",
    "subnet_model",
    "train",
]
