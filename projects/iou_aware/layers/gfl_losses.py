"""
Losses of Generalized Focal Loss (GFL, https://arxiv.org/abs/2006.04388) and GFL V2
(https://arxiv.org/abs/2011.12885): Quality Focal Loss (QFL) on the joint
classification-IoU score, Distribution Focal Loss (DFL) on the discretized box side
distances, and the integral that turns those distributions into distances.
"""

from typing import Optional

import torch
import torch.nn.functional as F

from .reduction import check_weight_and_reduction, weighted_reduce

__all__ = [
    "quality_focal_loss",
    "quality_focal_loss_from_probs",
    "distribution_focal_loss",
    "integral_distance",
]


def quality_focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    beta: float = 2.0,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """
    Quality Focal Loss: ``BCE(sigma, y) * |y - sigma|^beta`` on every (sample, class) entry,
    with ``sigma = sigmoid(logits)`` and the soft target ``y`` equal to the sample's IoU
    score on its ground-truth class column and 0 elsewhere. A background sample thus gets
    ``BCE(sigma, 0) * sigma^beta`` on every class.

    Args:
        logits (Tensor[N, C]): raw classification logits.
        labels (Tensor[N]): int64 class indices; labels in [0, C) are positives, C (or any
            other value) is background.
        scores (Tensor[N]): IoU targets in [0, 1] of the positives; ignored for background.
        beta (float): focusing exponent.
        weight (Tensor[N] or None): per-sample weight multiplied into the per-sample loss.
        reduction (str): "none" | "sum" | "mean". "mean" is the (weighted) sum divided by
            N, and a zero connected to the graph of ``logits`` when N == 0.

    Returns:
        Tensor[N] (the loss summed over the C classes) for reduction "none", else a scalar;
        float32 (float64 for float64 inputs), also under autocast.
    """
    _check_inputs(logits, labels, scores, weight, reduction)
    logits = _as_full_precision(logits)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        target = _soft_target(logits, labels, scores)
        modulator = (target - logits.sigmoid()).abs().pow(beta)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none") * modulator
        return weighted_reduce(loss.sum(dim=1), weight, reduction)


def quality_focal_loss_from_probs(
    probs: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor,
    beta: float = 2.0,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "sum",
    eps: float = 1e-12,
) -> torch.Tensor:
    """
    :func:`quality_focal_loss` on probabilities rather than logits, for heads whose score is
    not a plain sigmoid, e.g. GFL V2's ``sigmoid(cls) * DGQP quality``.

    The BCE term sees the probabilities clamped to [eps, 1 - eps], and uses
    ``F.binary_cross_entropy``, whose log is clamped at -100; so the loss and its gradient
    are finite for probabilities of exactly 0 or 1. The modulating factor uses the
    unclamped probabilities.

    Args:
        probs (Tensor[N, C]): probabilities in [0, 1].
        labels, scores, beta, weight, reduction: see :func:`quality_focal_loss`.
        eps (float): clamp margin of the probabilities in the BCE term.

    Returns:
        See :func:`quality_focal_loss`.
    """
    _check_inputs(probs, labels, scores, weight, reduction)
    probs = _as_full_precision(probs)
    # F.binary_cross_entropy raises under CUDA autocast.
    with torch.autocast(device_type=probs.device.type, enabled=False):
        target = _soft_target(probs, labels, scores)
        modulator = (target - probs).abs().pow(beta)
        bce = F.binary_cross_entropy(probs.clamp(eps, 1 - eps), target, reduction="none")
        return weighted_reduce((bce * modulator).sum(dim=1), weight, reduction)


def distribution_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "none",
) -> torch.Tensor:
    """
    Distribution Focal Loss: with ``yl = floor(t)`` and ``yr = yl + 1`` the two bins around
    the target distance ``t``, ``(yr - t) * CE(logits, yl) + (t - yl) * CE(logits, yr)``.
    It is minimal when the predicted distribution puts all its mass on yl and yr, in the
    proportions that make its expectation (:func:`integral_distance`) equal to t.

    Args:
        logits (Tensor[N, reg_max + 1]): logits of the distribution of one box side over the
            bins 0, 1, ..., reg_max.
        target (Tensor[N]): target distances in bin units (pixels / stride), expected in
            [0, reg_max). They are clamped to [0, reg_max - 0.01], so that yr <= reg_max
            exists and a distance at or beyond reg_max is learnt as (almost) reg_max.
        weight (Tensor[N] or None): per-sample weight multiplied into the loss.
        reduction (str): "none" | "sum" | "mean". "mean" is the (weighted) sum divided by
            N, and a zero connected to the graph of ``logits`` when N == 0.

    Returns:
        Tensor[N] for reduction "none", else a scalar; float32 (float64 for float64 inputs),
        also under autocast.
    """
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(
            "distribution_focal_loss needs logits (N, reg_max + 1) and target (N,), got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}."
        )
    check_weight_and_reduction(weight, logits.shape[0], reduction)
    logits = _as_full_precision(logits)
    reg_max = logits.shape[1] - 1
    with torch.autocast(device_type=logits.device.type, enabled=False):
        target = target.to(logits.dtype).clamp(min=0, max=reg_max - 0.01)
        left = target.floor()
        bins = left.long()[:, None] + torch.arange(2, device=logits.device)  # (N, 2): yl, yr
        # CE(logits, y) = -log_softmax(logits)[y]: one log-softmax for both bins.
        log_probs = F.log_softmax(logits, dim=1).gather(1, bins)
        loss = -((left + 1 - target) * log_probs[:, 0] + (target - left) * log_probs[:, 1])
        return weighted_reduce(loss, weight, reduction)


def integral_distance(logits: torch.Tensor) -> torch.Tensor:
    """
    Expected distance of each of the four box sides under its predicted distribution:
    ``sum_i i * softmax(logits_side)_i`` over the bins i = 0, ..., reg_max.

    Args:
        logits (Tensor[..., 4 * (reg_max + 1)]): distribution logits, the 4 sides (in the
            order of the box encoding, e.g. left, top, right, bottom) one after the other.

    Returns:
        Tensor[..., 4]: distances in bin units (multiply by the stride for pixels), in
        [0, reg_max].
    """
    if logits.dim() == 0 or logits.shape[-1] % 4 != 0 or logits.shape[-1] == 0:
        raise ValueError(
            f"integral_distance needs a last dimension of 4 * (reg_max + 1), got shape {tuple(logits.shape)}."
        )
    # The four sides split and stacked rather than reshaped to (..., 4, -1): in an exported graph
    # the reshape's target shape is computed from the traced input's shape, which ONNX Runtime's
    # graph optimizer folds into (0, 4, -1); with no candidate (an empty input) the -1 cannot
    # be inferred and the run fails. The split has constant sizes and works on empty inputs.
    probs = F.softmax(torch.stack(logits.chunk(4, dim=-1), dim=-2), dim=-1)
    bins = torch.arange(probs.shape[-1], dtype=probs.dtype, device=probs.device)
    # Not a matmul: autocast would run it in half precision.
    return (probs * bins).sum(dim=-1)


def _as_full_precision(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _soft_target(pred: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """(N, C) target: ``scores`` on the class column of the positives, 0 elsewhere."""
    num_classes = pred.shape[1]
    positive = (labels >= 0) & (labels < num_classes)
    # Background rows scatter a 0 into column 0, which leaves the target unchanged.
    columns = torch.where(positive, labels, torch.zeros_like(labels))
    values = scores.to(pred.dtype).masked_fill(~positive, 0)
    return torch.zeros_like(pred).scatter_(1, columns[:, None], values[:, None])


def _check_inputs(pred, labels, scores, weight, reduction) -> None:
    if pred.dim() != 2 or labels.shape != pred.shape[:1] or scores.shape != pred.shape[:1]:
        raise ValueError(
            "Quality focal loss needs predictions (N, C), labels (N,) and scores (N,), got "
            f"{tuple(pred.shape)}, {tuple(labels.shape)} and {tuple(scores.shape)}."
        )
    check_weight_and_reduction(weight, pred.shape[0], reduction)
