"""The only place where iou_aware reaches into Detectron2 beyond its public API, because Detectron2
offers no public way. Each function says which builds it covers; both builds the installer
supports are covered: Detectron2 0.6 (the PyPI source distribution ``pb1-detectron2==0.6``, the
installer's fallback) and the official GitHub master (0.6 + later commits).

Tested in ``tests/test_detectron2_compat.py`` on the installed build, and on a stand-in with the
other build's attribute layout.
"""

import functools
from typing import Dict

import torch.distributed as dist
from detectron2.utils import comm

__all__ = [
    "detectron2_has_compiled_ops",
    "inner_trainer",
    "replace_train_loader",
    "last_eval_results",
    "set_local_process_group",
]


@functools.lru_cache(maxsize=None)
def detectron2_has_compiled_ops() -> bool:
    """True for a Detectron2 with its compiled ``_C`` (official build from source); False when
    ``detectron2._C`` is the placeholder installed by ``scripts/install.sh`` (0.6 fallback), or missing."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "IS_IOU_AWARE_PLACEHOLDER", False)


def inner_trainer(trainer):
    """The SimpleTrainer / AMPTrainer that runs a DefaultTrainer's steps (its model, data loader,
    optimizer and grad scaler). 0.6 and master: ``DefaultTrainer._trainer``."""
    return trainer._trainer


def replace_train_loader(trainer, data_loader) -> None:
    """Make a DefaultTrainer draw its next batches from ``data_loader`` (e.g. a resumed stream).

    Master: the public ``SimpleTrainer.reset_data_loader``. 0.6 has none: its SimpleTrainer
    iterates ``_data_loader_iter``, made in its constructor, which is replaced here.
    """
    runner = inner_trainer(trainer)
    if hasattr(runner, "reset_data_loader"):  # master
        runner.reset_data_loader(lambda: data_loader)
        return
    runner.data_loader = data_loader  # 0.6
    runner._data_loader_iter = iter(data_loader)


def last_eval_results(trainer) -> Dict:
    """The results of a DefaultTrainer's last evaluation during ``train()``, {} if none ran.
    0.6 and master: its EvalHook stores them as ``_last_eval_results``; DefaultTrainer.train
    returns them only when TEST.EXPECTED_RESULTS is set."""
    return getattr(trainer, "_last_eval_results", None) or {}


def set_local_process_group(num_processes_per_machine: int, machine_rank: int) -> None:
    """Create the process group of each machine's ranks and make it the one Detectron2's
    ``comm.get_local_rank()`` / ``get_local_size()`` read (Detectron2's own ``launch`` does this
    in its worker). Master: ``comm.create_local_process_group``. 0.6: it has none; the group is
    stored in ``comm._LOCAL_PROCESS_GROUP``. Every rank must call this (``new_group`` is collective)."""
    if hasattr(comm, "create_local_process_group"):  # master
        comm.create_local_process_group(num_processes_per_machine)
        return
    world_size = dist.get_world_size()
    for i in range(world_size // num_processes_per_machine):
        ranks = list(range(i * num_processes_per_machine, (i + 1) * num_processes_per_machine))
        group = dist.new_group(ranks)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
