"""Helpers of the dense heads' training and inference over per-level predictions."""

from typing import List

from detectron2.modeling.meta_arch.dense_detector import permute_to_N_HWA_K
from torch import Tensor, nn

__all__ = ["transpose_dense_predictions", "ema_update"]


def transpose_dense_predictions(predictions: List[List[Tensor]], dims_per_anchor: List[int]) -> List[List[Tensor]]:
    """Per output, per level (N, A * K, Hi, Wi) -> (N, Hi * Wi * A, K), K from ``dims_per_anchor``
    (as Detectron2's dense detectors order their anchors)."""
    if len(predictions) != len(dims_per_anchor):
        raise ValueError(f"{len(predictions)} head outputs but {len(dims_per_anchor)} dims per anchor")
    return [[permute_to_N_HWA_K(x, dim) for x in levels] for levels, dim in zip(predictions, dims_per_anchor)]


def ema_update(module: nn.Module, name: str, value: float, initial_value: float, momentum: float = 0.9) -> float:
    """``module.<name> = momentum * old + (1 - momentum) * value`` (old: ``initial_value`` the first
    time) and return it: RetinaNet's moving normalizer of the number of positive anchors."""
    old = getattr(module, name, initial_value)
    new = old * momentum + value * (1 - momentum)
    setattr(module, name, new)
    return new
