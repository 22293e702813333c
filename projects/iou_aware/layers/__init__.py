from .box_geometry import aligned_box_iou, pairwise_box_iou
from .cross_iou import (
    CROSS_IOU_MODES,
    NUM_BOX_LANDMARKS,
    cross_iou_loss,
    crosses_to_offsets,
    landmarks_to_boxes,
    offsets_to_crosses,
)
from .gfl_losses import (
    distribution_focal_loss,
    integral_distance,
    quality_focal_loss,
    quality_focal_loss_from_probs,
)
from .iou_losses import BOX_IOU_LOSS_KINDS, box_iou_loss, focal_iou_factor
from .norm import group_norm_32

__all__ = [
    "pairwise_box_iou",
    "aligned_box_iou",
    "box_iou_loss",
    "focal_iou_factor",
    "BOX_IOU_LOSS_KINDS",
    "quality_focal_loss",
    "quality_focal_loss_from_probs",
    "distribution_focal_loss",
    "integral_distance",
    "cross_iou_loss",
    "offsets_to_crosses",
    "crosses_to_offsets",
    "landmarks_to_boxes",
    "CROSS_IOU_MODES",
    "NUM_BOX_LANDMARKS",
    "group_norm_32",
]
