"""Instance outlines as COCO polygons: traced from binary masks, and their pixel extent."""

from typing import List, Tuple

import cv2
import numpy as np

__all__ = ["mask_to_polygons", "polygons_extent"]


def mask_to_polygons(mask: np.ndarray, min_area: float = 1.0) -> List[List[float]]:
    """Outer contours of a binary mask as COCO polygons ``[x0, y0, x1, y1, ...]``.

    Vertices sit at pixel centres, so the rasterized polygon stays inside the mask's pixel extent.
    Pieces with fewer than 3 vertices or an area below ``min_area`` (px^2) are dropped.
    """
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = []
    for contour in contours:
        if len(contour) < 3 or cv2.contourArea(contour) < min_area:
            continue
        points = contour.reshape(-1, 2).astype(np.float64) + 0.5
        polygons.append([round(float(v), 2) for v in points.reshape(-1)])
    return polygons


def polygons_extent(polygons: List[List[float]]) -> Tuple[float, float, float, float]:
    """XYXY box of the pixels covered by ``polygons`` (vertices at pixel centres, so +-0.5)."""
    points = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polygons])
    x0, y0 = points.min(axis=0) - 0.5
    x1, y1 = points.max(axis=0) + 0.5
    return float(x0), float(y0), float(x1), float(y1)
