#!/usr/bin/env python
"""Test helper: ``train_net.py`` (same flags, ``--num-gpus N`` for N processes) that writes the
total loss of every iteration, as the main process logs it (averaged over the workers), to
OUTPUT_DIR/losses.json. The tiny test datasets are registered in every process."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(HERE)), os.path.dirname(HERE)]

from detectron2.engine import HookBase, default_argument_parser  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from tiny_datasets import register_tiny_datasets  # noqa: E402

import train_net  # noqa: E402
from iou_aware.engine import Trainer, launch  # noqa: E402


class RecordLosses(HookBase):
    def after_train(self):
        if comm.is_main_process():
            losses = [value for value, _ in self.trainer.storage.history("total_loss").values()]
            with open(os.path.join(self.trainer.cfg.OUTPUT_DIR, "losses.json"), "w") as f:
                json.dump(losses, f)


class RecordingTrainer(Trainer):
    def build_hooks(self):
        return super().build_hooks() + [RecordLosses()]


def main(args):
    register_tiny_datasets()
    train_net.Trainer = RecordingTrainer
    return train_net.main(args)


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
