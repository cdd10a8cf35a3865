"""Training: standalone nets and weight-sharing supernets, BatchNorm recalibration, eval."""

from nas.train._config import SCHEDULES, STRATEGIES, TrainConfig, lr_at
from nas.train._evaluate import (
    evaluate,
    loader_for,
    recalibrate_bn,
    subnet_accuracy,
    subnet_model,
)
from nas.train._trainer import FINAL, LOG, STATE, fit_to_data, train

__all__ = [
    "FINAL",
    "LOG",
    "SCHEDULES",
    "STATE",
    "STRATEGIES",
    "TrainConfig",
    "evaluate",
    "fit_to_data",
    "loader_for",
    "lr_at",
    "recalibrate_bn",
    "subnet_accuracy",
    "subnet_model",
    "train",
]
