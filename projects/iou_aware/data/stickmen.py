"""The ``stickmen`` scene generator: person figures posed on a 17-point COCO skeleton.

A figure is a filled torso, a round head and thick limbs between its keypoints. Later figures
occlude earlier ones. Keypoint visibility follows COCO: 2 = visible, 1 = labelled but occluded by
another figure, 0 = outside the image (stored as (0, 0, 0)).
"""

from typing import Dict, List, Tuple

import cv2
import numpy as np
from detectron2.data.datasets.builtin_meta import (
    COCO_PERSON_KEYPOINT_FLIP_MAP,
    COCO_PERSON_KEYPOINT_NAMES,
    KEYPOINT_CONNECTION_RULES,
)

from .rendering import mask_to_polygons, paint_object, polygons_extent, textured_background, visible_parts

__all__ = ["render_stickmen_image", "KEYPOINT_NAMES", "KEYPOINT_FLIP_MAP", "SKELETON"]

KEYPOINT_NAMES = COCO_PERSON_KEYPOINT_NAMES
KEYPOINT_FLIP_MAP = COCO_PERSON_KEYPOINT_FLIP_MAP
# COCO's "skeleton": 1-based keypoint index pairs.
SKELETON = [[KEYPOINT_NAMES.index(a) + 1, KEYPOINT_NAMES.index(b) + 1] for a, b, _ in KEYPOINT_CONNECTION_RULES]
_K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
_LIMBS = [
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
]  # fmt: skip
_MIN_VISIBLE_PIXELS = 20


def _unit(angle: float) -> np.ndarray:
    """Unit vector of an angle measured from "straight down" (image y grows downwards)."""
    return np.array([np.sin(angle), np.cos(angle)])


def _random_pose(rng: np.random.Generator, cx: float, cy: float, height: float) -> np.ndarray:
    """(17, 2) keypoints of a figure facing the viewer (its left is the image's right), in px.

    ``(cx, cy)`` is the hip centre, ``height`` the standing height.
    """
    lean = rng.normal(0, 0.15)
    up = -_unit(lean)
    side = np.array([-up[1], up[0]])  # towards the image's left, i.e. the figure's right
    hip = np.array([cx, cy])
    neck = hip + 0.32 * height * up
    points = np.zeros((17, 2))
    points[_K["left_shoulder"]] = neck - 0.12 * height * side
    points[_K["right_shoulder"]] = neck + 0.12 * height * side
    points[_K["left_hip"]] = hip - 0.08 * height * side
    points[_K["right_hip"]] = hip + 0.08 * height * side
    head = neck + 0.1 * height * up
    turn = rng.uniform(-0.4, 0.4)  # head yaw moves the face features sideways
    points[_K["nose"]] = head + 0.015 * height * up - turn * 0.03 * height * side
    for name, sign in (("left", -1), ("right", 1)):
        points[_K[f"{name}_eye"]] = head + 0.03 * height * up + (sign * 0.025 - turn * 0.03) * height * side
        points[_K[f"{name}_ear"]] = head + 0.01 * height * up + (sign * 0.05 - turn * 0.02) * height * side
        arm = lean + sign * rng.uniform(0.1, 2.2)
        elbow = points[_K[f"{name}_shoulder"]] + 0.15 * height * _unit(-arm)
        forearm = arm + sign * rng.uniform(-0.3, 1.6)
        points[_K[f"{name}_elbow"]] = elbow
        points[_K[f"{name}_wrist"]] = elbow + 0.14 * height * _unit(-forearm)
        thigh = lean + sign * rng.uniform(-0.1, 0.6)
        knee = points[_K[f"{name}_hip"]] + 0.24 * height * _unit(-thigh)
        shin = thigh - sign * rng.uniform(0.0, 1.0)
        points[_K[f"{name}_knee"]] = knee
        points[_K[f"{name}_ankle"]] = knee + 0.23 * height * _unit(-shin)
    return points


def _draw_figure_mask(points: np.ndarray, height: float, image_hw: Tuple[int, int]) -> np.ndarray:
    """(H, W) bool mask of a figure drawn from its (17, 2) keypoints."""
    mask = np.zeros(image_hw, np.uint8)
    scale = 16
    p = np.round(points * scale).astype(np.int32)
    thickness = max(2, int(round(0.045 * height)))
    torso = p[[_K["left_shoulder"], _K["right_shoulder"], _K["right_hip"], _K["left_hip"]]]
    cv2.fillPoly(mask, [torso], 1, shift=4)
    for a, b in _LIMBS:
        cv2.line(mask, tuple(p[_K[a]]), tuple(p[_K[b]]), 1, thickness, cv2.LINE_8, shift=4)
    head_centre = np.round((points[_K["left_ear"]] + points[_K["right_ear"]]) / 2 * scale)
    head_radius = int(round(0.065 * height * scale))
    cv2.circle(mask, tuple(int(v) for v in head_centre), head_radius, 1, -1, shift=4)
    return mask.astype(bool)


def render_stickmen_image(
    rng: np.random.Generator,
    height: int,
    width: int,
    max_objects: int = 4,
    min_size: float = 32.0,
    max_size_fraction: float = 0.9,
) -> Tuple[np.ndarray, List[Dict]]:
    """Render one scene of 1..max_objects figures.

    Figure heights are log-uniform between ``min_size`` px and ``max_size_fraction * height``.

    Returns:
        image (H, W, 3) uint8 RGB, and one dict per visible figure with ``category_id`` (0),
        ``segmentation`` (COCO polygons), ``bbox`` (XYXY px; encloses the visible mask and every
        labelled keypoint), ``area``, ``keypoints`` (51 floats, COCO's integer-pixel convention:
        pixel centre coordinates minus 0.5) and ``num_keypoints``.
    """
    image = textured_background(rng, height, width)
    mean_background = np.asarray(cv2.mean(image)[:3])
    num_objects = int(rng.integers(1, max_objects + 1))
    max_size = max(min_size + 1, max_size_fraction * height)

    figures = []
    for _ in range(num_objects):
        size = float(np.exp(rng.uniform(np.log(min_size), np.log(max_size))))
        cx = rng.uniform(0.1 * width, 0.9 * width)
        cy = rng.uniform(0.2 * size, height - 0.2 * size)
        points = _random_pose(rng, cx, cy, size)
        mask = _draw_figure_mask(points, size, (height, width))
        if not mask.any():
            continue
        paint_object(image, mask, rng, avoid=mean_background)
        figures.append((points, mask))

    annotations = []
    parts = visible_parts([mask for _, mask in figures])
    for (points, _), (visible, covering) in zip(figures, parts):
        if visible.sum() < _MIN_VISIBLE_PIXELS:
            continue
        polygons = mask_to_polygons(visible)
        if not polygons:
            continue
        inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
        cols = np.clip(points[:, 0].astype(int), 0, width - 1)
        rows = np.clip(points[:, 1].astype(int), 0, height - 1)
        hidden = covering[rows, cols]
        visibility = np.where(inside, np.where(hidden, 1, 2), 0)
        x0, y0, x1, y1 = polygons_extent(polygons)
        labelled = points[visibility > 0]
        if len(labelled):
            x0, y0 = min(x0, labelled[:, 0].min()), min(y0, labelled[:, 1].min())
            x1, y1 = max(x1, labelled[:, 0].max()), max(y1, labelled[:, 1].max())
        keypoints = np.concatenate([points - 0.5, visibility[:, None]], axis=1)
        keypoints[visibility == 0] = 0
        annotations.append(
            {
                "category_id": 0,
                "segmentation": polygons,
                "bbox": (float(x0), float(y0), float(x1), float(y1)),
                "area": float(visible.sum()),
                "keypoints": [float(v) for v in keypoints.reshape(-1)],
                "num_keypoints": int((visibility > 0).sum()),
            }
        )
    return image, annotations
