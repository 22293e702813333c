"""Training entry points: the DefaultTrainer subclass used by train_net.py, exact resume, strict
checkpoint loading, and a launcher that also runs multi-process training on CPUs."""

from .checkpoint import EvaluationCheckpointer, IncompatibleCheckpointError, check_weights_file
from .launch import launch
from .optimizer import build_optimizer
from .trainer import Trainer, build_train_mapper

__all__ = [
    "Trainer",
    "build_train_mapper",
    "EvaluationCheckpointer",
    "IncompatibleCheckpointError",
    "check_weights_file",
    "launch",
    "build_optimizer",
]
