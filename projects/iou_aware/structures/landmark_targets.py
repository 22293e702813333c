"""LSNet's landmark targets from Detectron2's standard instance fields (gt_boxes, gt_masks,
gt_keypoints): used by LandmarkDatasetMapper, and by LSNet itself when a user's mapper gives only
the standard fields."""

from typing import List, Sequence

import numpy as np
import torch
from detectron2.structures import Instances, PolygonMasks

from .landmarks import contour_landmarks, extreme_points
from .polygons import mask_to_polygons

__all__ = ["add_landmark_targets"]


def add_landmark_targets(instances: Instances, landmark_sets: Sequence[str], num_contour_points: int = 36) -> Instances:
    """Write LSNet's targets ``gt_<set>_landmarks`` (and ``gt_keypoint_visible``) of each landmark
    set into ``instances`` from Detectron2's standard fields, in place (see LandmarkDatasetMapper):
    "box" from ``gt_masks`` (PolygonMasks or BitMasks) and ``gt_boxes`` (border midpoints without
    masks, or beside keypoints), "contour" from ``gt_masks``, "keypoint" from ``gt_keypoints``.
    Works on CPU tensors; returns ``instances``."""
    boxes = instances.gt_boxes.tensor.numpy()
    polygons = _instance_polygons(instances.gt_masks) if instances.has("gt_masks") else [None] * len(instances)
    if "box" in landmark_sets:
        box_polygons = polygons if "keypoint" not in landmark_sets else [None] * len(instances)
        landmarks = [extreme_points(p, box) for p, box in zip(box_polygons, boxes)]
        instances.gt_box_landmarks = _as_landmarks(landmarks, 5)
    if "contour" in landmark_sets:
        if not instances.has("gt_masks") and len(instances):
            raise ValueError("LSNet's contour task needs instance masks (gt_masks) to derive its contour targets.")
        contours = [contour_landmarks(p, num_contour_points) for p in polygons]
        instances.gt_contour_landmarks = _as_landmarks(contours, num_contour_points + 1)
    if "keypoint" in landmark_sets:
        keypoints = instances.gt_keypoints.tensor  # (G, K, 3)
        centres = instances.gt_boxes.get_centers()[:, None, :]
        instances.gt_keypoint_landmarks = torch.cat([keypoints[..., :2], centres], dim=1)
        always = torch.ones(len(instances), 1, dtype=torch.bool)
        instances.gt_keypoint_visible = torch.cat([keypoints[..., 2] > 0, always], dim=1)
    return instances


def _instance_polygons(masks) -> List[List[np.ndarray]]:
    """Per instance, its outline as polygons: PolygonMasks as they are, BitMasks traced."""
    if isinstance(masks, PolygonMasks):
        return masks.polygons
    return [mask_to_polygons(mask, min_area=0.0) for mask in masks.tensor.numpy()]


def _as_landmarks(landmarks, num_landmarks: int) -> torch.Tensor:
    return torch.as_tensor(np.asarray(landmarks, dtype=np.float32).reshape(-1, num_landmarks, 2))
