#!/usr/bin/env python
"""Test helper: ``train_net.py`` that SIGKILLs its own process right after the iteration given by
the environment variable KILL_AFTER_ITER (after Detectron2's checkpoint hook of that iteration),
as a crash or an OOM kill would. The tiny test datasets are registered first."""

import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(HERE)), os.path.dirname(HERE)]

from detectron2.engine import HookBase, default_argument_parser  # noqa: E402
from tiny_datasets import register_tiny_datasets  # noqa: E402

import train_net  # noqa: E402
from iou_aware.engine import Trainer  # noqa: E402


class SigkillAfter(HookBase):
    def __init__(self, iteration: int):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            os.kill(os.getpid(), signal.SIGKILL)


class KilledTrainer(Trainer):
    def build_hooks(self):
        return super().build_hooks() + [SigkillAfter(int(os.environ["KILL_AFTER_ITER"]))]


if __name__ == "__main__":
    register_tiny_datasets()
    train_net.Trainer = KilledTrainer
    train_net.main(default_argument_parser().parse_args())
