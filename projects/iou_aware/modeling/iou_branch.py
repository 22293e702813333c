"""The IoU prediction branch of IoU-aware single-stage detectors (Wu, Li, Wang), reusable by any
anchor-based dense head: a 3x3 conv on the regression tower, a BCE loss against the IoU of each
positive's decoded box with its GT, and the detection confidence S = p^alpha * IoU^(1 - alpha).
"""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import aligned_box_iou
from ..utils import check_choice

__all__ = ["IoUPredictor", "iou_prediction_loss", "detection_confidence", "SCORE_MODES"]

SCORE_MODES = ("power", "product")


class IoUPredictor(nn.Module):
    """One conv3x3 (in_channels -> num_anchors), shared by all levels, on the box tower's features.

    Initialized like RetinaNet's head convs (normal std 0.01, bias 0).
    """

    def __init__(self, in_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, num_anchors, kernel_size=3, stride=1, padding=1)
        nn.init.normal_(self.conv.weight, mean=0, std=0.01)
        nn.init.constant_(self.conv.bias, 0)

    def forward(self, box_tower_features: List[torch.Tensor]) -> List[torch.Tensor]:
        """(N, C, Hi, Wi) per level -> IoU logits (N, A, Hi, Wi) per level."""
        return [self.conv(x) for x in box_tower_features]


def iou_prediction_loss(
    iou_logits: torch.Tensor, pred_boxes: torch.Tensor, gt_boxes: torch.Tensor, detach_target: bool = False
) -> torch.Tensor:
    """Summed BCE between predicted IoU logits and the IoU of each positive's box with its GT.

    Args:
        iou_logits: (P,) logits of the P positive anchors.
        pred_boxes: (P, 4) decoded predicted boxes, XYXY px.
        gt_boxes: (P, 4) matched GT boxes, XYXY px.
        detach_target: stop the gradient through the IoU target. The reference code does not, so
            that this loss also trains the box regression (part of the paper's gain).
    """
    target = aligned_box_iou(pred_boxes, gt_boxes)
    if detach_target:
        target = target.detach()
    return F.binary_cross_entropy_with_logits(iou_logits.float(), target, reduction="sum")


def detection_confidence(cls_probs: torch.Tensor, iou_probs: torch.Tensor, alpha: float, mode: str = "power"):
    """S = p^alpha * IoU^(1 - alpha) ("power") or p * IoU ("product", the paper's "none" row).

    Args:
        cls_probs: (R, K) class probabilities p.
        iou_probs: (R,) predicted IoU of each anchor's box.
        alpha: in [0, 1]; 1 gives p exactly (stock RetinaNet's ranking), 0 the IoU alone.
    Returns:
        (R, K) detection confidence.
    """
    iou_probs = iou_probs[:, None]
    check_choice("score mode", mode, SCORE_MODES)
    if mode == "product":
        return cls_probs * iou_probs
    return cls_probs.pow(alpha) * iou_probs.pow(1.0 - alpha)
