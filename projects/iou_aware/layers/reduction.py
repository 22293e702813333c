"""Per-sample weighting and reduction shared by every loss of the package."""

from typing import Optional

import torch

from ..utils.choices import check_choice

__all__ = ["REDUCTIONS", "check_weight_and_reduction", "weighted_reduce"]

REDUCTIONS = ("none", "sum", "mean")


def check_weight_and_reduction(weight: Optional[torch.Tensor], num_samples: int, reduction: str) -> None:
    """ValueError for an unknown reduction or a weight that is not (num_samples,)."""
    check_choice("reduction", reduction, REDUCTIONS)
    if weight is not None and tuple(weight.shape) != (num_samples,):
        raise ValueError(f"weight must have shape ({num_samples},), got {tuple(weight.shape)}.")


def weighted_reduce(loss: torch.Tensor, weight: Optional[torch.Tensor], reduction: str) -> torch.Tensor:
    """(N,) per-sample losses times ``weight`` (N,) if given, then "none" | "sum" | "mean".

    "mean" divides by N (not by the weights' sum); for N == 0 it is a zero still connected to the
    graph, where ``loss.mean()`` would be NaN.
    """
    if weight is not None:
        loss = loss * weight
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / max(loss.numel(), 1)
    return loss
