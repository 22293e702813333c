"""Raster helpers shared by the synthetic generators: backgrounds, colours, and the polygons of
:mod:`iou_aware.structures.polygons`.

Images are (H, W, 3) uint8 RGB; masks are (H, W) bool. Polygon coordinates follow COCO: continuous
pixel coordinates where pixel (i, j) covers [j, j + 1) x [i, i + 1), so a pixel centre is +0.5.
"""

from typing import List, Optional, Tuple

import cv2
import numpy as np

from ..structures.polygons import mask_to_polygons, polygons_extent

__all__ = [
    "textured_background",
    "random_color",
    "paint_object",
    "visible_parts",
    "mask_to_polygons",
    "polygons_extent",
]


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random low-frequency colour field plus stripes and pixel noise, (H, W, 3) uint8 RGB.

    The texture makes the task more than colour thresholding: objects must be told from edges and
    blobs of the background.
    """
    coarse = rng.uniform(40, 215, size=(4, 4, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    period = rng.uniform(6, 40)
    angle = rng.uniform(0, np.pi)
    xs = np.arange(width, dtype=np.float32) * np.float32(np.cos(angle) * 2 * np.pi / period)
    ys = np.arange(height, dtype=np.float32) * np.float32(np.sin(angle) * 2 * np.pi / period)
    image += np.float32(rng.uniform(5, 30)) * np.sin(ys[:, None] + xs[None, :])[..., None]
    noise = rng.standard_normal(size=image.shape, dtype=np.float32)
    image += np.float32(rng.uniform(2, 12)) * noise
    return np.clip(image, 0, 255).astype(np.uint8)


def random_color(rng: np.random.Generator, avoid: Optional[np.ndarray] = None) -> Tuple[int, ...]:
    """A saturated RGB colour at least 60 (L2 in RGB) away from ``avoid`` where possible."""
    color = rng.integers(0, 256, size=3)
    for _ in range(10):
        if avoid is None or np.linalg.norm(color - avoid) > 60:
            break
        color = rng.integers(0, 256, size=3)
    return tuple(int(c) for c in color)


def paint_object(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, avoid: np.ndarray) -> None:
    """Fill ``mask`` (H, W) bool of ``image`` in place with a random colour away from ``avoid``,
    plus a little per-pixel shading so that objects are not flat."""
    color = np.asarray(random_color(rng, avoid=avoid), np.float32)
    shading = rng.normal(0, 6, size=(int(mask.sum()), 1)).astype(np.float32)
    image[mask] = np.clip(color + shading, 0, 255).astype(np.uint8)


def visible_parts(masks: List[np.ndarray]) -> List[Tuple[np.ndarray, np.ndarray]]:
    """For masks in painting order (later ones cover earlier ones): per mask, its visible part and
    the union of the masks painted after it (what covers it), both (H, W) bool."""
    parts = []
    covering = np.zeros_like(masks[0]) if masks else None
    for mask in reversed(masks):
        parts.append((mask & ~covering, covering.copy()))
        covering |= mask
    return parts[::-1]
