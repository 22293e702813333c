import numpy as np
import pytest
import torch

from iou_aware.modeling.postprocessing import rasterize_polygons
from iou_aware.structures import mask_to_polygons, polygons_extent
from iou_aware.structures.landmarks import (
    contour_landmarks,
    extreme_points,
    flip_contour,
    flip_extreme_points,
    sample_contour,
)


def rasterize_polygon(points, height, width):
    return rasterize_polygons(torch.as_tensor(np.asarray(points, dtype=np.float64))[None], height, width)[0].numpy()


# 40x40 square with corners (10, 10) and (50, 50), listed clockwise on screen (y down).
SQUARE = [10, 10, 50, 10, 50, 50, 10, 50]
SQUARE_STEP = 160 / 36  # perimeter / number of points


def square_arc_position(points):
    """Arc length (px) of points on SQUARE, measured from (30, 10) going left (screen CCW)."""
    x, y = points[:, 0], points[:, 1]
    on_top = np.isclose(y, 10, atol=1e-4)
    on_left = np.isclose(x, 10, atol=1e-4)
    on_bottom = np.isclose(y, 50, atol=1e-4)
    s = np.full(len(points), np.nan)
    # Top edge walked right -> left from the top centre, then left edge top -> bottom, etc.
    s = np.where(on_top, (30 - x) % 160, s)
    s = np.where(on_left & ~on_top, 20 + (y - 10), s)
    s = np.where(on_bottom & ~on_left, 60 + (x - 10), s)
    s = np.where(~on_top & ~on_left & ~on_bottom, 100 + (50 - y), s)
    return s


def square_edges(points):
    """Edge label per point: 't', 'l', 'b', 'r' (no sampled point falls on a corner)."""
    x, y = points[:, 0], points[:, 1]
    labels = np.full(len(points), "r")
    labels[np.isclose(y, 50, atol=1e-4)] = "b"
    labels[np.isclose(x, 10, atol=1e-4)] = "l"
    labels[np.isclose(y, 10, atol=1e-4)] = "t"
    return labels


def mask_iou(a, b):
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def test_square_contour_on_boundary_equally_spaced():
    points = sample_contour([SQUARE])
    assert points.shape == (36, 2) and points.dtype == np.float32
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    dist_to_edge = np.min(np.abs([x - 10, x - 50, y - 10, y - 50]), axis=0)
    assert np.all(dist_to_edge < 1e-4)
    assert np.all((x > 10 - 1e-4) & (x < 50 + 1e-4) & (y > 10 - 1e-4) & (y < 50 + 1e-4))

    # Arc-length spacing along the outline, wrapping from the last point back to the first.
    s = square_arc_position(points.astype(np.float64))
    gaps = np.diff(np.concatenate([s, [s[0] + 160]]))
    np.testing.assert_allclose(gaps, SQUARE_STEP, atol=1e-3)
    # Same-edge neighbours: the Euclidean distance is the arc length.
    labels = square_edges(points)
    same_edge = labels[:-1] == labels[1:]
    step = np.linalg.norm(np.diff(points.astype(np.float64), axis=0), axis=1)
    np.testing.assert_allclose(step[same_edge], SQUARE_STEP, atol=1e-3)


def test_square_contour_start_and_orientation():
    points = sample_contour([SQUARE])
    np.testing.assert_allclose(points[0], [30, 10], atol=1e-4)  # top centre of the box
    assert points[1, 0] < 30 and abs(points[1, 1] - 10) < 1e-4  # moving left along the top
    labels = square_edges(points)
    runs = [labels[0]] + [b for a, b in zip(labels[:-1], labels[1:]) if a != b]
    # Corners sit at arc 20, 60, 100, 140 = 4.5, 13.5, 22.5, 31.5 steps: 5 top points, 9 left,
    # 9 bottom, 9 right, then the 4 top points right of the start.
    assert runs == ["t", "l", "b", "r", "t"]
    assert list(labels) == ["t"] * 5 + ["l"] * 9 + ["b"] * 9 + ["r"] * 9 + ["t"] * 4


def test_contour_independent_of_orientation_and_start_vertex():
    expected = sample_contour([SQUARE])
    reversed_square = np.asarray(SQUARE).reshape(-1, 2)[::-1].reshape(-1).tolist()
    np.testing.assert_allclose(sample_contour([reversed_square]), expected, atol=1e-4)
    rotated_start = [50, 50, 10, 50, 10, 10, 50, 10]
    np.testing.assert_allclose(sample_contour([rotated_start]), expected, atol=1e-4)


def test_contour_uses_largest_polygon():
    small = [60, 60, 70, 60, 65, 70]
    np.testing.assert_allclose(sample_contour([small, SQUARE]), sample_contour([SQUARE]), atol=1e-6)
    # A degenerate 2-vertex piece is ignored.
    with_piece = sample_contour([[0, 0, 5, 5], SQUARE])
    np.testing.assert_allclose(with_piece, sample_contour([SQUARE]), atol=1e-6)


def test_flip_contour_matches_sampling_mirrored_polygon():
    mirrored = [100 - v if i % 2 == 0 else v for i, v in enumerate(SQUARE)]
    flipped = flip_contour(sample_contour([SQUARE]), 100)
    direct = sample_contour([mirrored])
    np.testing.assert_allclose(flipped, direct, atol=1e-4)
    np.testing.assert_allclose(flipped[0], [70, 10], atol=1e-4)  # top centre of x in [50, 90]


def test_extreme_points_from_polygon_and_box():
    triangle = [20, 10, 40, 50, 5, 40]
    points = extreme_points([triangle])
    # Vertices: top (20, 10), left (5, 40), bottom and right both (40, 50); box [5, 10, 40, 50].
    expected = [[20, 10], [5, 40], [40, 50], [40, 50], [22.5, 30]]
    np.testing.assert_allclose(points, expected)

    box_points = extreme_points(box=[10, 20, 30, 60])
    # Border midpoints of the box, cx = 20, cy = 40.
    np.testing.assert_allclose(box_points, [[20, 20], [10, 40], [20, 60], [30, 40], [20, 40]])
    np.testing.assert_allclose(extreme_points([], box=[10, 20, 30, 60]), box_points)

    flipped = flip_extreme_points(points, 100)
    # x -> 100 - x, and the old right (40, 50) -> (60, 50) is now the leftmost point.
    np.testing.assert_allclose(flipped, [[80, 10], [60, 50], [60, 50], [95, 40], [77.5, 30]])


def test_rasterized_contour_matches_polygon_mask():
    angles = np.arange(64) * (2 * np.pi / 64)
    circle = np.stack([32 + 20 * np.cos(angles), 32 + 20 * np.sin(angles)], axis=1)
    for polygon, size in ((circle, 64), (np.asarray(SQUARE, dtype=np.float64).reshape(-1, 2), 64)):
        reference = rasterize_polygon(polygon, size, size)
        assert reference.shape == (size, size) and reference.dtype == bool
        contour = sample_contour([polygon.reshape(-1).tolist()])
        assert mask_iou(rasterize_polygon(contour, size, size), reference) > 0.95


def test_rasterize_square_area():
    mask = rasterize_polygon(np.asarray(SQUARE, dtype=np.float64).reshape(-1, 2), 64, 64)
    # Pixel columns and rows 10..49 are inside [10, 50): exactly 40 x 40 pixels.
    assert mask.sum() == 40 * 40 and mask[10:50, 10:50].all()


def test_bad_input():
    with pytest.raises(ValueError, match="no polygon with at least 3 vertices"):
        sample_contour([])
    with pytest.raises(ValueError, match="no polygon with at least 3 vertices"):
        sample_contour([[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="extreme_points needs polygons or a box"):
        extreme_points()


def test_contour_landmarks_end_with_the_centre_of_the_largest_polygon():
    small = [0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]
    landmarks = contour_landmarks([small, SQUARE])
    assert landmarks.shape == (37, 2) and landmarks.dtype == np.float32
    np.testing.assert_allclose(landmarks[:36], sample_contour([SQUARE]))
    np.testing.assert_allclose(landmarks[36], [30, 30])  # centre of the 40x40 square's extent


def test_rasterize_polygons_handles_several_and_none():
    squares = torch.tensor(
        [[[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]], [[2.0, 2.0], [8.0, 2.0], [8.0, 8.0], [2.0, 8.0]]]
    )
    masks = rasterize_polygons(squares, 10, 12)
    assert masks.shape == (2, 10, 12) and masks.dtype == torch.bool
    assert masks.sum(dim=(1, 2)).tolist() == [16, 36]
    assert rasterize_polygons(torch.zeros(0, 36, 2), 10, 12).shape == (0, 10, 12)


# --- Extreme points: on the annotation box, independent of the vertex order ------------------------


def _circle_mask(size=40, centre=(19.5, 17.0), radius=11.0):
    ys, xs = np.mgrid[:size, :size]
    return (xs + 0.5 - centre[0]) ** 2 + (ys + 0.5 - centre[1]) ** 2 <= radius**2


def _star(points=5, cx=30.0, cy=30.0, outer=20.0, inner=8.0):
    """A star symmetric about x = cx (one tip straight up), as a flat polygon."""
    angles = np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([cx + radii * np.sin(angles), cy - radii * np.cos(angles)], axis=1)


def test_extreme_landmarks_lie_on_the_annotation_box_for_any_vertex_convention():
    mask = _circle_mask()
    polygons = mask_to_polygons(mask)  # vertices at pixel centres
    box = polygons_extent(polygons)  # the pixels' extent: vertices +- 0.5 px
    coco_box = [5.0, 5.0, 40.0, 30.0]  # COCO convention: vertices on the box
    coco_polygon = [5.0, 5.0, 40.0, 5.0, 40.0, 30.0, 5.0, 30.0]
    for polys, gt_box in ((polygons, box), ([coco_polygon], coco_box)):
        points = extreme_points(polys, gt_box)
        # The box of the landmarks (x of left, y of top, x of right, y of bottom) is the GT box.
        np.testing.assert_allclose([points[1, 0], points[0, 1], points[3, 0], points[2, 1]], gt_box, atol=1e-5)
        np.testing.assert_allclose(points[4], [(gt_box[0] + gt_box[2]) / 2, (gt_box[1] + gt_box[3]) / 2], atol=1e-5)


def test_a_flat_extreme_gives_the_middle_of_its_run():
    # The top edge runs from x = 10 to x = 50 and the bottom from 20 to 30 in every vertex order.
    polygon = np.array([[10, 10], [50, 10], [40, 40], [30, 50], [20, 50], [0, 40]], dtype=np.float64)
    for start in range(len(polygon)):
        for order in (1, -1):
            vertices = np.roll(polygon[::order], start, axis=0).reshape(-1).tolist()
            points = extreme_points([vertices], [0, 10, 50, 50])
            np.testing.assert_allclose(points[0], [30, 10])  # middle of the top run
            np.testing.assert_allclose(points[2], [25, 50])  # middle of the bottom run


@pytest.mark.parametrize("shape", ["circle", "square", "star"])
def test_mirror_symmetric_shapes_get_mirrored_landmarks_for_any_start_vertex(shape):
    width = 60
    if shape == "circle":
        # A raster circle symmetric about x = 20, outlined by cv2 (starting at its top-left).
        mask = _circle_mask(size=width, centre=(20.0, 23.0))
        outlines = [np.asarray(mask_to_polygons(m)[0]).reshape(-1, 2) for m in (mask, mask[:, ::-1].copy())]
    else:
        outline = _star() if shape == "star" else np.array([[10, 10], [50, 10], [50, 50], [10, 50]], dtype=np.float64)
        outlines = [outline, np.stack([width - outline[:, 0], outline[:, 1]], axis=1)]
    original, mirrored = outlines
    box = list(original.min(axis=0)) + list(original.max(axis=0))
    mirrored_box = [width - box[2], box[1], width - box[0], box[3]]
    expected = flip_extreme_points(extreme_points([original.reshape(-1).tolist()], box), width)
    for start in range(0, len(mirrored), max(1, len(mirrored) // 7)):
        rolled = np.roll(mirrored, start, axis=0).reshape(-1).tolist()
        np.testing.assert_allclose(extreme_points([rolled], mirrored_box), expected, atol=1e-5)
        # Mirror symmetry about the box's vertical axis: top and bottom sit on that axis, except
        # the star's bottom: its two lower tips reach the bottom (up to rounding), and the bottom
        # landmark is one of them, on the star, not the axis between them, off the star.
        axis_x = (mirrored_box[0] + mirrored_box[2]) / 2
        top, bottom = extreme_points([rolled], mirrored_box)[[0, 2], 0]
        assert top == pytest.approx(axis_x, abs=1e-5)
        if shape == "star":
            tips = axis_x + np.array([-1.0, 1.0]) * 20.0 * np.sin(0.8 * np.pi)  # outer radius 20, at +-144 degrees
            assert np.abs(tips - bottom).min() < 1e-4
        else:
            assert bottom == pytest.approx(axis_x, abs=1e-5)


def test_an_extreme_shared_by_two_prongs_lands_on_one_of_them():
    """A U (prongs x in [0, 10] and [20, 30], joined at the bottom, y in [30, 40]): the top is the
    middle of one prong's top run, on the U, not of every vertex at the top (x = 15, the gap).
    The prongs tie: the left-most run is taken, for any start vertex and orientation."""
    u_shape = np.array([[0, 0], [10, 0], [10, 30], [20, 30], [20, 0], [30, 0], [30, 40], [0, 40]], dtype=np.float64)
    mask = rasterize_polygon(u_shape, 40, 30)
    assert mask[0, 5] and not mask[0, 15]  # the gap between the prongs
    for start in range(len(u_shape)):
        for order in (1, -1):
            vertices = np.roll(u_shape[::order], start, axis=0).reshape(-1).tolist()
            points = extreme_points([vertices])
            # top, left, bottom, right, centre; left and right runs pass through corners.
            np.testing.assert_allclose(points, [[5, 0], [0, 20], [15, 40], [30, 20], [15, 20]])
            assert mask[int(points[0, 1]), int(points[0, 0])]  # the pixel below the top landmark is the U's
            np.testing.assert_allclose(extreme_points([vertices], [0, 0, 30, 40])[0], [5, 0])

    # The right prong 0.5 px higher, within the 2% band (0.81 px) of the left one: the top is the
    # right prong's run alone; the left prong, in the band but not a neighbour, does not count.
    raised = u_shape.copy()
    raised[[4, 5], 1] = -0.5
    for start in range(len(raised)):
        np.testing.assert_allclose(extreme_points([np.roll(raised, start, axis=0).reshape(-1).tolist()])[0], [25, -0.5])

    # An instance in two pieces whose tops tie: the top is on the left piece; only the right one
    # reaches the bottom.
    pieces = [[0, 0, 10, 0, 10, 10, 0, 10], [20, 0, 30, 0, 30, 20, 20, 20]]
    points = extreme_points(pieces)
    np.testing.assert_allclose(points[[0, 2]], [[5, 0], [25, 20]])
    np.testing.assert_allclose(extreme_points(pieces[::-1])[[0, 2]], [[5, 0], [25, 20]])
