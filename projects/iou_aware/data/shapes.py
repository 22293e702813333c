"""The ``shapes`` scene generator: filled shapes of very different sizes, overlapping, on texture.

Each object's annotation is its visible part (later shapes occlude earlier ones): COCO polygons of
the visible mask and the box of those polygons.
"""

from typing import Dict, List, Tuple

import cv2
import numpy as np

from .rendering import mask_to_polygons, paint_object, polygons_extent, textured_background, visible_parts

__all__ = ["SHAPE_CLASSES", "render_shapes_image"]

SHAPE_CLASSES = ("circle", "square", "triangle", "star")

# Objects hidden below these fractions are not annotated: too little is left to recognise them.
_MIN_VISIBLE_FRACTION = 0.35
_MIN_VISIBLE_PIXELS = 12


def _shape_vertices(kind: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """(V, 2) polygon of a regular shape with circumradius ``radius`` (px), rotated by ``angle``."""
    if kind == "square":
        angles = angle + np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.full(4, radius)
    elif kind == "triangle":
        angles = angle + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, radius)
    elif kind == "star":
        angles = angle + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    else:
        raise ValueError(f"not a polygon shape: {kind!r}")
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


def _draw_shape_mask(kind: str, height: int, width: int, cx, cy, radius, angle) -> np.ndarray:
    """(H, W) bool mask of one shape, drawn with 1/16 px sub-pixel precision."""
    mask = np.zeros((height, width), np.uint8)
    shift = 4
    if kind == "circle":
        center = (int(round(cx * 16)), int(round(cy * 16)))
        cv2.circle(mask, center, int(round(radius * 16)), 1, thickness=-1, shift=shift)
    else:
        vertices = np.round(_shape_vertices(kind, cx, cy, radius, angle) * 16).astype(np.int32)
        cv2.fillPoly(mask, [vertices], 1, shift=shift)
    return mask.astype(bool)


def render_shapes_image(
    rng: np.random.Generator,
    height: int,
    width: int,
    max_objects: int = 8,
    min_size: float = 6.0,
    max_size_fraction: float = 0.6,
) -> Tuple[np.ndarray, List[Dict]]:
    """Render one scene.

    Args:
        rng: the image's own generator (determinism per image).
        height, width: image size in px.
        max_objects: at most this many shapes are drawn (at least 1).
        min_size, max_size_fraction: object diameters are log-uniform between ``min_size`` px and
            ``max_size_fraction * min(height, width)``.

    Returns:
        image (H, W, 3) uint8 RGB, and one dict per visible object with ``category_id`` (0-based
        index into SHAPE_CLASSES), ``segmentation`` (COCO polygons), ``bbox`` (XYXY, px), ``area``.
    """
    image = textured_background(rng, height, width)
    mean_background = np.asarray(cv2.mean(image)[:3])
    num_objects = int(rng.integers(1, max_objects + 1))
    max_size = max(min_size + 1, max_size_fraction * min(height, width))

    full_masks, categories = [], []
    for _ in range(num_objects):
        kind_index = int(rng.integers(len(SHAPE_CLASSES)))
        diameter = float(np.exp(rng.uniform(np.log(min_size), np.log(max_size))))
        radius = diameter / 2
        cx = rng.uniform(0.3 * radius, width - 0.3 * radius)
        cy = rng.uniform(0.3 * radius, height - 0.3 * radius)
        mask = _draw_shape_mask(SHAPE_CLASSES[kind_index], height, width, cx, cy, radius, rng.uniform(0, 2 * np.pi))
        if mask.sum() == 0:
            continue
        paint_object(image, mask, rng, avoid=mean_background)
        full_masks.append(mask)
        categories.append(kind_index)

    annotations = []
    for mask, category, (visible, _) in zip(full_masks, categories, visible_parts(full_masks)):
        visible_pixels = int(visible.sum())
        if visible_pixels < _MIN_VISIBLE_PIXELS or visible_pixels < _MIN_VISIBLE_FRACTION * mask.sum():
            continue
        polygons = mask_to_polygons(visible)
        if not polygons:
            continue
        annotations.append(
            {
                "category_id": category,
                "segmentation": polygons,
                "bbox": polygons_extent(polygons),
                "area": float(visible_pixels),
            }
        )
    return image, annotations
