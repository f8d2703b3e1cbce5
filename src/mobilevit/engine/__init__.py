"""The training engine: one trainer for every task (classification, segmentation, detection),
the task plug-ins, the training config, and the pieces they share (optimizer and schedule, EMA,
resume files, torchrun, metrics)."""

from __future__ import annotations

from .config import ConfigError, save_config
from .errors import TrainingError
from .evaluate import evaluate_weights
from .recipe import load_config
from .tasks import TASKS
from .trainer import Trainer, train

__all__ = [
    "TASKS",
    "ConfigError",
    "Trainer",
    "TrainingError",
    "evaluate_weights",
    "load_config",
    "save_config",
    "train",
]
