"""Landmark targets for LSNet (Duan et al.): contour points and extreme points of an instance.

All coordinates are absolute pixels in the COCO polygon convention: continuous coordinates, x to the
right, y down, pixel (i, j) covering [j, j + 1) x [i, i + 1).

Orientation: contours run top -> left -> bottom -> right, i.e. counter-clockwise as seen on screen.
Because y points down, such a polygon has a NEGATIVE signed shoelace area
``0.5 * sum(x_i * y_{i+1} - x_{i+1} * y_i)``. For example the screen-CCW square
(10, 10) -> (10, 50) -> (50, 50) -> (50, 10) gives 0.5 * (400 - 2000 - 2000 + 400) = -1600.
"""
from typing import Optional, Sequence

import numpy as np

__all__ = [
    "sample_contour",
    "contour_landmarks",
    "flip_contour",
    "extreme_points",
    "flip_extreme_points",
]


def _signed_area(points: np.ndarray) -> float:
    """Signed shoelace area (px^2) of a closed (N, 2) outline; negative = screen CCW."""
    x, y = points[:, 0], points[:, 1]
    x_next, y_next = np.roll(x, -1), np.roll(y, -1)
    return 0.5 * float(np.sum(x * y_next - x_next * y))


def _largest_polygon(polygons: Sequence[Sequence[float]]) -> np.ndarray:
    """The (N, 2) float64 vertices of the polygon with the largest absolute area (N >= 3)."""
    candidates = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons or []]
    candidates = [p for p in candidates if len(p) >= 3]
    if not candidates:
        raise ValueError("The instance has no polygon with at least 3 vertices.")
    areas = [abs(_signed_area(p)) for p in candidates]
    return candidates[int(np.argmax(areas))]


def _resample_outline(vertices: np.ndarray, num_dense: int) -> np.ndarray:
    """``num_dense`` points at equal arc length along the closed outline, from ``vertices[0]``.

    Args:
        vertices: (N, 2) polygon vertices; the closing edge back to ``vertices[0]`` is implied.
    Returns:
        (num_dense, 2) float64 points; the last one is one step before ``vertices[0]``.
    """
    closed = np.concatenate([vertices, vertices[:1]])
    seg_len = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    # Zero-length edges would give np.interp repeated abscissae.
    keep = np.concatenate([[True], seg_len > 0])
    closed = closed[keep]
    cum = np.concatenate([[0.0], np.cumsum(seg_len[seg_len > 0])])
    perimeter = cum[-1]
    if perimeter <= 0:
        raise ValueError("The polygon has a zero-length outline.")
    s = np.arange(num_dense, dtype=np.float64) * (perimeter / num_dense)
    return np.stack([np.interp(s, cum, closed[:, 0]), np.interp(s, cum, closed[:, 1])], axis=1)


def sample_contour(
    polygons: Sequence[Sequence[float]], num_points: int = 36, num_dense: int = 360
) -> np.ndarray:
    """Contour landmarks: ``num_points`` points at equal arc length on the instance's outline.

    The largest polygon (by absolute area) is resampled to ``num_dense`` equally spaced points, put
    in screen counter-clockwise order (top -> left -> bottom -> right), rolled so the point nearest
    to the top-centre of the polygon's box comes first, and every ``num_dense // num_points``-th
    point is kept. The result does not depend on the input's orientation or starting vertex (up to
    the resampling grid).

    Args:
        polygons: COCO polygons of one instance, each a flat ``[x0, y0, x1, y1, ...]`` list.
        num_points: number of landmarks; ``num_dense`` should be a multiple of it.
        num_dense: resolution of the intermediate resampling.
    Returns:
        (num_points, 2) float32 absolute (x, y) pixel coordinates.
    """
    if num_dense < num_points:
        raise ValueError(f"num_dense={num_dense} must be >= num_points={num_points}.")
    vertices = _largest_polygon(polygons)
    dense = _resample_outline(vertices, num_dense)
    if _signed_area(vertices) > 0:  # screen clockwise
        dense = dense[::-1]
    x_min, y_min = vertices.min(axis=0)
    x_max = vertices[:, 0].max()
    top_centre = np.array([(x_min + x_max) / 2, y_min])
    start = int(np.argmin(np.sum((dense - top_centre) ** 2, axis=1)))
    dense = np.roll(dense, -start, axis=0)
    return dense[:: num_dense // num_points][:num_points].astype(np.float32)


def contour_landmarks(polygons: Sequence[Sequence[float]], num_points: int = 36) -> np.ndarray:
    """LSNet's contour landmarks: :func:`sample_contour` and, last, the centre of the extent of the
    instance's largest polygon.

    Returns:
        (num_points + 1, 2) float32 absolute (x, y) pixel coordinates.
    """
    vertices = _largest_polygon(polygons)
    centre = (vertices.min(axis=0) + vertices.max(axis=0)) / 2
    return np.concatenate([sample_contour(polygons, num_points), centre[None].astype(np.float32)])


def flip_contour(points: np.ndarray, image_width: float) -> np.ndarray:
    """Mirror contour landmarks horizontally, keeping the start point and the orientation.

    Mirroring reverses the orientation, so the order becomes p0, p[N-1], ..., p1: the start (top
    centre) stays first and the points again run top -> left -> bottom -> right.

    Args:
        points: (N, 2) absolute (x, y) contour points from :func:`sample_contour`.
        image_width: image width in pixels; x' = W - x.
    Returns:
        (N, 2) array of the same dtype.
    """
    points = np.asarray(points)
    flipped = points.copy()
    flipped[:, 0] = image_width - points[:, 0]
    order = np.concatenate([[0], np.arange(len(points) - 1, 0, -1)]).astype(np.int64)
    return flipped[order]


def extreme_points(
    polygons: Optional[Sequence[Sequence[float]]] = None, box: Optional[Sequence[float]] = None
) -> np.ndarray:
    """Box landmarks ``[top, left, bottom, right, centre]`` of one instance.

    With polygons: the topmost, leftmost, bottommost and rightmost vertices over all polygons (ties
    go to the first in the concatenated vertex list) and the centre of the vertices' extent. Without
    polygons: the border midpoints and centre of the XYXY ``box``.

    Returns:
        (5, 2) float32 absolute (x, y) pixel coordinates.
    """
    vertices = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons or []]
    vertices = [v for v in vertices if len(v)]
    if vertices:
        pts = np.concatenate(vertices)
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        top = pts[np.argmin(pts[:, 1])]
        left = pts[np.argmin(pts[:, 0])]
        bottom = pts[np.argmax(pts[:, 1])]
        right = pts[np.argmax(pts[:, 0])]
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        return np.stack([top, left, bottom, right, centre]).astype(np.float32)
    if box is None:
        raise ValueError("extreme_points needs polygons or a box.")
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[cx, y0], [x0, cy], [cx, y1], [x1, cy], [cx, cy]], dtype=np.float32)


def flip_extreme_points(points: np.ndarray, image_width: float) -> np.ndarray:
    """Mirror ``[top, left, bottom, right, centre]`` landmarks: x' = W - x, left and right swap.

    Args:
        points: (5, 2) absolute (x, y) points from :func:`extreme_points`.
        image_width: image width in pixels.
    Returns:
        (5, 2) array of the same dtype.
    """
    points = np.asarray(points)
    flipped = points.copy()
    flipped[:, 0] = image_width - points[:, 0]
    return flipped[[0, 3, 2, 1, 4]]
