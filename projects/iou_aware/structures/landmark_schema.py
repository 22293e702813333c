"""LSNet's landmark schema, shared by the data (targets) and the model (head, losses): which
landmark sets a task predicts, and how many landmarks each set has."""

import math
from dataclasses import dataclass
from typing import Dict, Tuple

from ..layers import NUM_BOX_LANDMARKS

__all__ = ["LandmarkSet", "landmark_sets", "landmark_sets_from_config", "TASK_LANDMARK_SETS"]


@dataclass(frozen=True)
class LandmarkSet:
    """One kind of landmarks a branch predicts.

    Attributes:
        name: key of :func:`landmark_sets`; also names the branch, its losses and its targets
            (``gt_<name>_landmarks``).
        num_landmarks: L, the centre (always last) included.
        cross_iou_mode: mode of :func:`iou_aware.layers.cross_iou_loss`.
        kernel_landmarks: the landmarks among the deformable conv's sampling points; the other
            points of the kernel are free points predicted beside the initial crosses.
    """

    name: str
    num_landmarks: int
    cross_iou_mode: str
    kernel_landmarks: Tuple[int, ...]


def landmark_sets(
    num_keypoints: int = 17, num_contour_points: int = 36, num_kernel_points: int = 9
) -> Dict[str, LandmarkSet]:
    """The landmark sets of a landmark schema, by name. Kernel landmarks (the deformable conv's
    sampling points besides the free ones: ``num_kernel_points - 1`` of them, then the centre):

    * "box", [top, left, bottom, right, centre]: all five (+ 4 free points).
    * "contour", ``num_contour_points`` + centre: every ``ceil(C / (num_kernel_points - 1))``-th
      contour point from the first, as the reference (every 5th of 36: 8 points), and the centre.
    * "keypoint", ``num_keypoints`` + centre: the odd keypoints, then the even ones, up to
      ``num_kernel_points - 1`` (for COCO's 17: the 8 odd ones, left eye, left ear, left
      shoulder, left elbow, left wrist, left hip, left knee, left ankle, the reference's
      choice), and the centre; free points fill what fewer keypoints leave.
    """
    if num_keypoints < 1 or num_contour_points < 1:
        raise ValueError(
            f"A landmark schema needs >= 1 keypoint and contour point, got {num_keypoints} and {num_contour_points}."
        )
    slots = num_kernel_points - 1
    contour_step = math.ceil(num_contour_points / slots)
    contour_kernel = tuple(range(0, num_contour_points, contour_step))[:slots] + (num_contour_points,)
    keypoint_order = list(range(1, num_keypoints, 2)) + list(range(0, num_keypoints, 2))
    keypoint_kernel = tuple(keypoint_order[:slots]) + (num_keypoints,)
    return {
        "box": LandmarkSet("box", NUM_BOX_LANDMARKS, "box", (0, 1, 2, 3, 4)),
        "contour": LandmarkSet("contour", num_contour_points + 1, "contour", contour_kernel),
        "keypoint": LandmarkSet("keypoint", num_keypoints + 1, "keypoint", keypoint_kernel),
    }


def landmark_sets_from_config(cfg) -> Dict[str, LandmarkSet]:
    """:func:`landmark_sets` of a config: MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS (the key of
    Detectron2's Keypoint R-CNN), MODEL.LSNET.NUM_CONTOUR_POINTS, MODEL.LSNET.NUM_KERNEL_POINTS."""
    return landmark_sets(
        cfg.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS, cfg.MODEL.LSNET.NUM_CONTOUR_POINTS, cfg.MODEL.LSNET.NUM_KERNEL_POINTS
    )


# MODEL.LSNET.TASK -> its landmark sets; the last one guides the class branch.
TASK_LANDMARK_SETS = {"box": ("box",), "contour": ("contour",), "keypoint": ("box", "keypoint")}
