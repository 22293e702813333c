"""Small collective helpers for loss normalizers."""

import torch
import torch.distributed as dist
from detectron2.utils import comm

__all__ = ["reduce_mean"]


def reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor over all workers (identity with one process)."""
    if comm.get_world_size() == 1:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / comm.get_world_size()
