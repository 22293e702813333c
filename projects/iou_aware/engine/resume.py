"""What ``--resume`` needs beyond Detectron2's model / optimizer / scheduler / iteration state, so that
a run killed after a checkpoint continues exactly where it was:

* the data stream: :class:`ResumableTrainingSampler` starts at the first image the killed run had
  not consumed (Detectron2's TrainingSampler restarts from the beginning);
* the random state of the main process (NumPy, PyTorch, Python): :class:`RandomState`, saved in
  each checkpoint (augmentations draw from it when DATALOADER.NUM_WORKERS is 0);
* checkpoints written atomically: :class:`AtomicDetectionCheckpointer` writes to a temporary file
  and renames it, so a kill never leaves a half-written checkpoint or ``last_checkpoint`` tag.
"""

import itertools
import os
import random
from typing import Dict, Optional

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data.samplers import TrainingSampler

__all__ = ["ResumableTrainingSampler", "RandomState", "AtomicDetectionCheckpointer"]


class ResumableTrainingSampler(TrainingSampler):
    """Detectron2's TrainingSampler (same infinite shuffled stream for a given seed) that can
    start at any position of the stream, e.g. after ``start_iter * IMS_PER_BATCH`` images."""

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None, start: int = 0):
        """
        Args:
            start: position in the global stream (all workers together) of the first index.
        """
        super().__init__(size, shuffle=shuffle, seed=seed)
        self.start = start

    @property
    def seed(self) -> int:
        return self._seed

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self.start + self._rank, None, self._world_size)


class RandomState:
    """Checkpointable random state of this process: NumPy, PyTorch (CPU) and Python's ``random``,
    stored as tensors and lists so that ``torch.load(weights_only=True)`` reads it."""

    def state_dict(self) -> Dict:
        kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
        version, python_state, gauss_next = random.getstate()
        return {
            "numpy": {
                "kind": kind,
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached_gaussian),
            },
            "torch": torch.get_rng_state(),
            "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
        }

    def load_state_dict(self, state: Dict) -> None:
        n = state["numpy"]
        np.random.set_state(
            (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        )
        torch.set_rng_state(state["torch"])
        p = state["python"]
        random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose checkpoint files and ``last_checkpoint`` tag appear whole or not
    at all (written to ``<name>.tmp``, then renamed)."""

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        _atomic_write(save_file, lambda f: torch.save(data, f), "wb")
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        _atomic_write(os.path.join(self.save_dir, "last_checkpoint"), lambda f: f.write(last_filename_basename), "w")


def _atomic_write(path: str, write, mode: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
