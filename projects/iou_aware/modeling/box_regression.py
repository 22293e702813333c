"""Box coding and box-regression losses shared by every head of the package.

Anchor-based heads use Detectron2's Box2BoxTransform (deltas); point-based heads the distances
from a point to the four sides (``distances_to_boxes`` / ``boxes_to_distances``). The loss is
selected by name: ``"smooth_l1"`` on deltas (Detectron2's default) or any IoU-family kind of
:func:`iou_aware.layers.box_iou_loss` on decoded boxes.
"""

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes
from fvcore.nn import smooth_l1_loss

from ..layers import BOX_IOU_LOSS_KINDS, box_iou_loss
from ..utils import check_choice

__all__ = [
    "BOX_REG_LOSS_TYPES",
    "check_box_reg_loss_type",
    "box_iou_loss_options",
    "box_regression_loss",
    "distances_to_boxes",
    "boxes_to_distances",
    "anchor_points_and_strides",
]

BOX_REG_LOSS_TYPES = ("smooth_l1",) + tuple(BOX_IOU_LOSS_KINDS)


def check_box_reg_loss_type(loss_type: str, config_key: str) -> str:
    """Fail at model construction, naming the config key, for an unknown loss type."""
    return check_choice(config_key, loss_type, BOX_REG_LOSS_TYPES)


def box_iou_loss_options(cfg) -> Dict[str, float]:
    """The focal coefficients of the IoU-family losses (MODEL.BOX_IOU_LOSS.*) as kwargs."""
    node = cfg.MODEL.BOX_IOU_LOSS
    return {
        "focal_gamma": node.FOCAL_GAMMA,
        "focal_iou_coef": node.FOCAL_IOU_COEF,
        "focal_diou_coef": node.FOCAL_DIOU_COEF,
        "focal_ciou_coef": node.FOCAL_CIOU_COEF,
    }


def box_regression_loss(
    pred_deltas: torch.Tensor,
    anchors: torch.Tensor,
    gt_boxes: torch.Tensor,
    box2box_transform: Box2BoxTransform,
    loss_type: str = "smooth_l1",
    smooth_l1_beta: float = 0.0,
    weight: Optional[torch.Tensor] = None,
    iou_loss_options: Optional[Dict[str, float]] = None,
    pred_boxes: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Summed box-regression loss over P foreground anchors / proposals.

    Args:
        pred_deltas: (P, 4) predicted Box2BoxTransform deltas.
        anchors: (P, 4) XYXY anchors or proposals (px) the deltas are relative to.
        gt_boxes: (P, 4) XYXY matched ground-truth boxes (px).
        loss_type: one of BOX_REG_LOSS_TYPES.
        smooth_l1_beta: beta of the smooth L1 loss (0: L1).
        weight: (P,) per-box weights, or None.
        iou_loss_options: extra keyword arguments of ``box_iou_loss`` (focal coefficients).
        pred_boxes: (P, 4) the deltas already decoded on ``anchors``, when the caller has them
            (IoU-family losses then skip decoding again).

    Returns:
        Scalar tensor: the sum over the P boxes (normalize in the caller).
    """
    if loss_type == "smooth_l1":
        gt_deltas = box2box_transform.get_deltas(anchors, gt_boxes)
        loss = smooth_l1_loss(pred_deltas, gt_deltas, beta=smooth_l1_beta, reduction="none")
        if weight is not None:
            loss = loss * weight[:, None]
        return loss.sum()
    check_box_reg_loss_type(loss_type, "box regression loss type")
    if pred_boxes is None:
        pred_boxes = box2box_transform.apply_deltas(pred_deltas, anchors)
    return box_iou_loss(
        pred_boxes, gt_boxes, kind=loss_type, weight=weight, reduction="sum", **(iou_loss_options or {})
    )


def distances_to_boxes(points: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """(R, 2) points and (R, 4) distances (l, t, r, b) in px -> (R, 4) XYXY boxes in px."""
    return torch.cat([points - distances[:, :2], points + distances[:, 2:]], dim=1)


def boxes_to_distances(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(R, 2) points and (R, 4) XYXY boxes in px -> (R, 4) distances (l, t, r, b) to the sides."""
    return torch.cat([points - boxes[:, :2], boxes[:, 2:] - points], dim=1)


def anchor_points_and_strides(anchors: List[Boxes], strides: List[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The points of a point-based head: (R, 2) centres of the per-level anchors (levels
    concatenated) and (R,) the stride of each point's level."""
    points = Boxes.cat(anchors).get_centers()
    point_strides = torch.cat([torch.full((len(a),), float(s), device=points.device) for a, s in zip(anchors, strides)])
    return points, point_strides
