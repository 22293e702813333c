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
    polygons: Sequence[Sequence[float]], num_points: int = 36, num_dense: Optional[int] = None
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
        num_dense: resolution of the intermediate resampling (default: 10 x num_points).
    Returns:
        (num_points, 2) float32 absolute (x, y) pixel coordinates.
    """
    num_dense = 10 * num_points if num_dense is None else num_dense
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
    """LSNet's contour landmarks: :func:`sample_contour` and, last, the centre of the sampled
    contour's extent (the reference's polygon centre). That extent (``landmarks_to_boxes(.., "contour")``) is also
    the box the contour task assigns and penalizes on.

    Returns:
        (num_points + 1, 2) float32 absolute (x, y) pixel coordinates.
    """
    contour = sample_contour(polygons, num_points)
    centre = (contour.min(axis=0) + contour.max(axis=0)) / 2
    return np.concatenate([contour, centre[None]]).astype(np.float32)


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


def _run_middle(outlines: Sequence[np.ndarray], axis: int, extreme: float, tolerance: float) -> float:
    """Where a flat or nearly flat extreme of the outline lies, along the other axis.

    A run is a maximal sequence of vertices, consecutive along one polygon's outline (wrapping
    around from its last vertex to its first), whose coordinate ``axis`` lies within ``tolerance``
    of ``extreme``. Each run holding a vertex exactly at ``extreme`` is a candidate; the result is
    the middle of the other coordinate over the candidate run with the smallest such middle (when
    several runs reach the extreme, e.g. the two prongs of a U: the left-most one for top and
    bottom, the top-most one for left and right), so it depends on the shape only.

    Args:
        outlines: (Ni, 2) float64 vertices of each polygon; at least one reaches ``extreme``.
        axis: 1 for the top and bottom extremes (y), 0 for the left and right ones (x).
        extreme: the extreme value of that coordinate over all outlines, pixels.
        tolerance: half-width of the band around ``extreme``, pixels.
    Returns:
        the middle, in pixels, of the run's extent along the other axis.
    """
    middles = []
    for vertices in outlines:
        values, across = vertices[:, axis], vertices[:, 1 - axis]
        near = np.abs(values - extreme) <= tolerance
        at_extreme = values == extreme
        if not at_extreme.any():
            continue
        labels = np.zeros(len(vertices), dtype=np.int64)
        if not near.all():
            # Label the runs from an out-of-band vertex on, so that a run through the closing edge
            # (last vertex -> first) gets one label.
            shift = int(np.argmin(near))
            rolled = np.roll(near, -shift)
            labels = np.roll(np.cumsum(rolled & ~np.roll(rolled, 1)), shift)
        for label in np.unique(labels[at_extreme]):
            run = across[near & (labels == label)]
            middles.append((run.min() + run.max()) / 2)
    return float(min(middles))


def extreme_points(
    polygons: Optional[Sequence[Sequence[float]]] = None,
    box: Optional[Sequence[float]] = None,
    tolerance: float = 0.02,
) -> np.ndarray:
    """Box landmarks ``[top, left, bottom, right, centre]`` of one instance.

    With polygons, each extreme landmark is the middle of the run of neighbouring vertices around
    the extreme vertex (consecutive along its polygon's outline, wrapping around) that lie within
    ``tolerance`` x the instance's height (top, bottom) or width (left, right) of that extreme
    (:func:`_run_middle`): a flat top gives its middle, not one of its ends, and the landmark stays
    on that stretch of the outline; a vertex in the band elsewhere (the other prong of a U) does
    not pull it off the object. When several runs reach the extreme exactly, the left-most (top,
    bottom) or top-most (left, right) one is taken. The choice depends on the shape only, not on
    the vertex order or the starting vertex, so a mirror-symmetric object gets mirrored landmarks
    when flipped, except at such a tie.

    The reference (``tools/gen_coco_lsvr.py``, from ExtremeNet) walks the same way from the first
    extreme vertex (``np.argmin``, so ties go to the first in polygon order) to its neighbours
    within ``0.02 x (size + 1)``, but over the vertices of all polygons concatenated (a run may
    continue into the next polygon, and wraps around by one vertex only), and floors the middle
    to an integer; for RLE masks it walks the foreground pixels in raster order. Here the runs stay
    within a polygon, the band is ``tolerance x size`` and the middle is not rounded.

    With ``box`` (XYXY, the annotation's box), the landmarks are put on the box: the y of top and
    bottom and the x of left and right are the box's edges, the other coordinates are clipped into
    it, and the centre is the box's centre. So the box of the landmarks (x of left, y of top,
    x of right, y of bottom) IS the annotation box, whatever convention the polygon's vertices
    follow (COCO's, or vertices at pixel centres inside a +-0.5 px box). Without polygons: the
    border midpoints and centre of ``box`` (the reference's ``get_border_center``).

    Args:
        polygons: COCO polygons of one instance, flat ``[x0, y0, x1, y1, ...]`` lists.
        box: (4,) XYXY absolute box of the instance.
        tolerance: band of the extremes, a fraction of the instance's height or width.
    Returns:
        (5, 2) float32 absolute (x, y) pixel coordinates.
    """
    vertices = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons or []]
    vertices = [v for v in vertices if len(v)]
    if not vertices and box is None:
        raise ValueError("extreme_points needs polygons or a box.")
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
    if not vertices:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        return np.array([[cx, y0], [x0, cy], [cx, y1], [x1, cy], [cx, cy]], dtype=np.float32)
    pts = np.concatenate(vertices)
    (vx0, vy0), (vx1, vy1) = pts.min(axis=0), pts.max(axis=0)
    tol_y, tol_x = tolerance * (vy1 - vy0), tolerance * (vx1 - vx0)
    top = [_run_middle(vertices, 1, vy0, tol_y), vy0]
    bottom = [_run_middle(vertices, 1, vy1, tol_y), vy1]
    left = [vx0, _run_middle(vertices, 0, vx0, tol_x)]
    right = [vx1, _run_middle(vertices, 0, vx1, tol_x)]
    if box is None:
        x0, y0, x1, y1 = vx0, vy0, vx1, vy1
    else:
        top[0], bottom[0] = np.clip([top[0], bottom[0]], min(x0, x1), max(x0, x1))
        left[1], right[1] = np.clip([left[1], right[1]], min(y0, y1), max(y0, y1))
        top[1], left[0], bottom[1], right[0] = y0, x0, y1, x1
    centre = [(x0 + x1) / 2, (y0 + y1) / 2]
    return np.array([top, left, bottom, right, centre], dtype=np.float32)


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
