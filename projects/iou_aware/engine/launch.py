"""Multi-process launch that also works without GPUs.

With CUDA, this is Detectron2's ``launch`` (NCCL, one process per GPU). Without CUDA, Detectron2 0.6
asserts CUDA in its worker and wraps models with ``DistributedDataParallel(device_ids=[rank])``,
which DDP rejects for CPU modules; here the workers join a gloo process group instead, set up the
same local process group Detectron2's ``comm`` helpers read, and DDP gets no device ids. Same
arguments and semantics otherwise (``--num-machines``, ``--machine-rank``, ``--dist-url``).
"""

import contextlib
import logging
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import defaults as detectron2_defaults
from detectron2.engine import launch as detectron2_launch
from detectron2.utils import comm

from ..utils.detectron2_compat import set_local_process_group

__all__ = ["launch", "cpu_ddp_model_wrapping"]

DEFAULT_TIMEOUT = timedelta(minutes=30)


def launch(
    main_func,
    num_processes_per_machine,
    num_machines=1,
    machine_rank=0,
    dist_url=None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
):
    """Run ``main_func(*args)`` in ``num_processes_per_machine`` processes on each machine: one per
    GPU with CUDA (Detectron2's launch), CPU processes on the gloo backend without it."""
    world_size = num_machines * num_processes_per_machine
    if world_size == 1 or torch.cuda.is_available():
        return detectron2_launch(
            main_func, num_processes_per_machine, num_machines, machine_rank, dist_url, args=args, timeout=timeout
        )
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto only works on one machine; give tcp://<host of rank 0>:<port>.")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    mp.spawn(
        _cpu_worker,
        nprocs=num_processes_per_machine,
        args=(main_func, world_size, num_processes_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _free_port() -> int:
    """A TCP port free on this machine now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _cpu_worker(local_rank, main_func, world_size, num_processes_per_machine, machine_rank, dist_url, args, timeout):
    global_rank = machine_rank * num_processes_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
        )
    except Exception:
        logging.getLogger(__name__).error(f"Process group URL: {dist_url}")
        raise
    # The group of the ranks on this machine, which Detectron2's comm.get_local_rank() reads.
    set_local_process_group(num_processes_per_machine, machine_rank)
    comm.synchronize()
    try:
        with cpu_ddp_model_wrapping():
            main_func(*args)
        # Every rank leaves together: a rank that exits while gloo's threads still serve another
        # rank's last collectives dies with "terminate called without an active exception".
        comm.synchronize()
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def cpu_ddp_model_wrapping():
    """While active, Detectron2's trainers wrap CPU models in DDP without device ids."""
    original = detectron2_defaults.create_ddp_model

    def create_ddp_model(model, **kwargs):
        if comm.get_world_size() > 1 and next(model.parameters()).device.type == "cpu":
            kwargs["device_ids"] = None
        return original(model, **kwargs)

    detectron2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        detectron2_defaults.create_ddp_model = original
