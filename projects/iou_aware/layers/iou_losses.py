"""
IoU-family box regression losses, built on :mod:`iou_aware.layers.box_geometry`.
"""

from typing import Optional

import torch

from ..utils.choices import check_choice
from .box_geometry import aligned_box_iou
from .reduction import check_weight_and_reduction, weighted_reduce

__all__ = ["BOX_IOU_LOSS_KINDS", "box_iou_loss", "focal_iou_factor"]

BOX_IOU_LOSS_KINDS = (
    "iou",
    "log_iou",
    "giou",
    "diou",
    "ciou",
    "focal_iou",
    "focal_diou",
    "focal_ciou",
)

# The box_geometry measure each loss kind is a function of, where it is not the kind itself.
_OVERLAP_KIND = {"log_iou": "iou", "focal_iou": "iou", "focal_diou": "diou", "focal_ciou": "ciou"}


def focal_iou_factor(conf: torch.Tensor, coef: float, gamma: float) -> torch.Tensor:
    """
    Focal-IoU modulating factor ``(1 - coef * conf) ** gamma``.

    Args:
        conf (Tensor): overlap mapped to [0, 1] (1 = perfect box), any shape.
        coef (float): in [0, 1]; how much a good box is down-weighted.
        gamma (float): focusing exponent.

    Returns:
        Tensor: same shape as ``conf``. Not detached: gradients flow through it.
    """
    return (1 - coef * conf).pow(gamma)


def box_iou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    kind: str = "giou",
    weight: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    eps: float = 1e-7,
    focal_gamma: float = 2.0,
    focal_iou_coef: float = 0.5,
    focal_diou_coef: float = 0.7,
    focal_ciou_coef: float = 0.5,
) -> torch.Tensor:
    """
    IoU-family loss between predicted and ground-truth boxes.

    Kinds, with IoU / DIoU / CIoU from :func:`aligned_box_iou`:

    * "iou": 1 - IoU;  "log_iou": -ln(max(IoU, eps));
    * "giou": 1 - GIoU;  "diou": 1 - DIoU;  "ciou": 1 - CIoU;
    * "focal_iou":  (1 - focal_iou_coef * IoU)^gamma * (1 - IoU);
    * "focal_diou": (1 - focal_diou_coef * (DIoU + 1) / 2)^gamma * (1 - DIoU);
    * "focal_ciou": (1 - focal_ciou_coef * (CIoU + 2) / 3)^gamma * (1 - CIoU).

    The focal factor is not detached, as in the Focal-IoU reference implementation.

    Args:
        pred (Tensor[N, 4]): predicted XYXY boxes in pixels.
        target (Tensor[N, 4]): ground-truth XYXY boxes in pixels.
        kind (str): one of :data:`BOX_IOU_LOSS_KINDS`.
        weight (Tensor[N] or None): per-box weight multiplied into the loss.
        reduction (str): "none" | "sum" | "mean". "mean" is the (weighted) sum divided
            by N, and a zero connected to the graph of ``pred`` when N == 0.
        eps (float): see :func:`aligned_box_iou`; also the lower clamp of IoU for "log_iou".
        focal_gamma (float): exponent of the focal factor.
        focal_iou_coef, focal_diou_coef, focal_ciou_coef (float): coefficient of the focal
            factor of "focal_iou", "focal_diou" and "focal_ciou".

    Returns:
        Tensor[N] for reduction "none", else a scalar; float32 (float64 for float64 inputs).
    """
    check_choice("box IoU loss kind", kind, BOX_IOU_LOSS_KINDS)
    check_weight_and_reduction(weight, pred.shape[0], reduction)

    overlap = aligned_box_iou(pred, target, kind=_OVERLAP_KIND.get(kind, kind), eps=eps)
    if kind == "log_iou":
        loss = -torch.log(overlap.clamp(min=eps))
    else:
        loss = 1 - overlap
    if kind == "focal_iou":
        loss = focal_iou_factor(overlap, focal_iou_coef, focal_gamma) * loss
    elif kind == "focal_diou":
        loss = focal_iou_factor((overlap + 1) / 2, focal_diou_coef, focal_gamma) * loss
    elif kind == "focal_ciou":
        loss = focal_iou_factor((overlap + 2) / 3, focal_ciou_coef, focal_gamma) * loss
    return weighted_reduce(loss, weight, reduction)
