"""ATSSAssigner: a case worked out by hand, the edge cases, and a loop-based reference."""

import torch

from iou_aware.layers import pairwise_box_iou
from iou_aware.modeling.assigners import ATSSAssigner, DenseAssigner


def point_anchors(stride, grid_size, anchor_scale=1.0):
    """Squares of side anchor_scale * stride centred on the points of a grid_size^2 grid,
    row-major (index = row * grid_size + column), as a GFL head places them."""
    centres = torch.arange(grid_size, dtype=torch.float32) * stride + stride / 2
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")
    half = anchor_scale * stride / 2
    return torch.stack([cx - half, cy - half, cx + half, cy + half], dim=-1).reshape(-1, 4)


def two_levels():
    """A 32x32 image. Level 0: stride 8, 4x4 anchors of 8x8 px (the grid cells), indices 0-15,
    centres x, y in {4, 12, 20, 28}. Level 1: stride 16, 2x2 anchors of 16x16 px, indices 16-19,
    centres (8, 8), (24, 8), (8, 24), (24, 24)."""
    return [point_anchors(8, 4), point_anchors(16, 2)]


def expected_assignment(num_anchors, positives):
    expected = torch.full((num_anchors,), -1, dtype=torch.int64)
    for anchor, gt in positives.items():
        expected[anchor] = gt
    return expected


def test_is_a_dense_assigner():
    assert isinstance(ATSSAssigner(), DenseAssigner)


def test_two_gts_two_levels_by_hand():
    # topk = 3 candidates per level.
    #
    # GT 0 = [0, 0, 10, 12], area 120, centre (5, 6).
    #   Level 0, squared centre distances: anchor 0 (4, 4): 1 + 4 = 5; anchor 4 (4, 12):
    #   1 + 36 = 37; anchor 1 (12, 4): 49 + 4 = 53; next is anchor 5 (12, 12): 85.
    #   Level 1: anchor 16 (8, 8): 13; anchor 18 (8, 24): 333; anchor 17 (24, 8): 365; then 19.
    #   IoUs: anchor 0 [0, 0, 8, 8]: 64 / 120 = 0.533333; anchor 4 [0, 8, 8, 16]: 32 / 152 =
    #   0.210526; anchor 1 [8, 0, 16, 8]: 16 / 168 = 0.095238; anchor 16 [0, 0, 16, 16]:
    #   120 / 256 = 0.46875; anchors 17 and 18: 0.
    #   mean = 0.217975, unbiased std = 0.233446, threshold = 0.451421: anchors 0 and 16 pass;
    #   their centres (4, 4) and (8, 8) are inside GT 0 -> both positive for GT 0.
    #
    # GT 1 = [14, 26, 32, 30], area 72, centre (23, 28).
    #   Level 0: anchor 14 (20, 28): 9; anchor 15 (28, 28): 25; anchor 10 (20, 20): 73; next
    #   is anchor 11 (28, 20): 89.
    #   Level 1: anchor 19 (24, 24): 17; anchor 18 (8, 24): 241; anchor 17 (24, 8): 401.
    #   IoUs: anchor 14 [16, 24, 24, 32]: 32 / 104 = 0.307692; anchor 15 [24, 24, 32, 32]:
    #   32 / 104 = 0.307692; anchor 10 [16, 16, 24, 24]: 0; anchor 19 [16, 16, 32, 32]:
    #   64 / 264 = 0.242424; anchor 18 [0, 16, 16, 32]: 8 / 320 = 0.025; anchor 17: 0.
    #   mean = 0.147135, unbiased std = 0.154176, threshold = 0.301311: anchors 14 and 15 pass
    #   (not 19, the closest anchor of level 1); their centres (20, 28) and (28, 28) are at
    #   least 2 px inside GT 1 -> both positive for GT 1.
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 12.0], [14.0, 26.0, 32.0, 30.0]])
    matched = ATSSAssigner(topk=3)(two_levels(), gt_boxes)
    assert matched.dtype == torch.int64
    assert torch.equal(matched, expected_assignment(20, {0: 0, 16: 0, 14: 1, 15: 1}))


def test_no_gt_gives_all_negatives():
    matched = ATSSAssigner(topk=3)(two_levels(), torch.zeros(0, 4))
    assert torch.equal(matched, torch.full((20,), -1, dtype=torch.int64))


def test_anchor_positive_for_two_gts_goes_to_the_larger_iou():
    # GT [0, 0, 10, 12] alone: anchors 0 (IoU 0.533333) and 16 (IoU 0.46875) positive, as in
    # test_two_gts_two_levels_by_hand.
    # GT [0, 0, 8, 8] alone: candidates anchors 0, 1, 4 (level 0) and 16, 17, 18 (level 1),
    # IoUs 1, 0, 0, 0.25, 0, 0; mean = 0.208333, std = 0.400520, threshold = 0.608854:
    # anchor 0 (IoU 1, centre (4, 4) inside) is positive, anchor 16 (IoU 0.25) is not.
    # Together, anchor 0 goes to [0, 0, 8, 8], whatever the order of the GTs.
    big, small = [0.0, 0.0, 10.0, 12.0], [0.0, 0.0, 8.0, 8.0]
    assigner = ATSSAssigner(topk=3)
    matched = assigner(two_levels(), torch.tensor([big, small]))
    assert torch.equal(matched, expected_assignment(20, {0: 1, 16: 0}))
    matched = assigner(two_levels(), torch.tensor([small, big]))
    assert torch.equal(matched, expected_assignment(20, {0: 0, 16: 1}))


def test_topk_larger_than_the_levels():
    # All 3 anchors are candidates: IoUs with [0, 0, 8, 8] are 1, 0, 0.25; mean = 0.416667,
    # std = 0.520416, threshold = 0.937083: only anchor 0.
    levels = [torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 0.0, 16.0, 8.0]]), torch.tensor([[0.0, 0.0, 16.0, 16.0]])]
    gt_boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    assert ATSSAssigner(topk=9)(levels, gt_boxes).tolist() == [0, -1, -1]
    # An empty level changes nothing.
    assert ATSSAssigner(topk=9)(levels + [torch.zeros(0, 4)], gt_boxes).tolist() == [0, -1, -1]
    # A single candidate in all (its std is undefined) is positive when its centre is inside.
    lone = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])]
    assert ATSSAssigner(topk=9)(lone, torch.tensor([[1.0, 1.0, 9.0, 9.0]])).tolist() == [0]
    assert ATSSAssigner(topk=9)(lone, torch.tensor([[5.0, 5.0, 9.0, 9.0]])).tolist() == [-1]


def test_centre_must_be_more_than_a_hundredth_of_a_pixel_inside():
    # Two 16x8 anchors, mirror images of each other about the centre of the GT [0, 0, 16, 8]:
    # same IoU, so std = 0 and both reach the threshold; their centres are c px inside the GT.
    gt_boxes = torch.tensor([[0.0, 0.0, 16.0, 8.0]])
    for c, expected in ((1 / 128, [-1, -1]), (1 / 64, [0, 0])):  # 0.0078 and 0.0156 px
        anchors = torch.tensor([[c - 8, 0.0, c + 8, 8.0], [8 - c, 0.0, 24 - c, 8.0]])
        assert ATSSAssigner(topk=2)([anchors], gt_boxes).tolist() == expected


def loop_reference(anchors_per_level, gt_boxes, topk):
    """ATSS written one GT and one anchor at a time."""
    anchors = torch.cat(anchors_per_level)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    ious = pairwise_box_iou(anchors, gt_boxes)
    best = [(-1.0, -1)] * len(anchors)
    for g, gt in enumerate(gt_boxes):
        gt_centre = (gt[:2] + gt[2:]) / 2
        candidates, start = [], 0
        for level in anchors_per_level:
            distances = (centres[start : start + len(level)] - gt_centre).norm(dim=1)
            candidates += [start + i for i in distances.argsort()[:topk].tolist()]
            start += len(level)
        candidate_ious = ious[candidates, g]
        threshold = candidate_ious.mean() + candidate_ious.std()
        for a in candidates:
            inside = min(*(centres[a] - gt[:2]), *(gt[2:] - centres[a])) > 0.01
            if ious[a, g] >= threshold and inside and ious[a, g] > best[a][0]:
                best[a] = (ious[a, g].item(), g)
    return torch.tensor([g for _, g in best])


def test_matches_loop_reference():
    levels = [point_anchors(8, 8, 4.0), point_anchors(16, 4, 4.0), point_anchors(32, 2, 4.0)]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        xy = torch.rand(6, 2, generator=g) * 48
        gt_boxes = torch.cat([xy, xy + 4 + torch.rand(6, 2, generator=g) * 40], dim=1)
        matched = ATSSAssigner(topk=5)(levels, gt_boxes)
        assert (matched >= 0).any()
        assert torch.equal(matched, loop_reference(levels, gt_boxes, topk=5))


def test_invalid_anchors_are_never_candidates_by_hand():
    # A 32 (w) x 24 (h) image in a 32 x 32 batch: the anchors centred at y >= 24 (level 0:
    # 12-15; level 1: 18, 19) are padding. topk = 3.
    # GT [0, 12, 15, 24], area 180, centre (7.5, 18).
    #   Level 0, squared centre distances: anchor 8 (4, 20): 16.25; 9 (12, 20): 24.25;
    #   4 (4, 12): 48.25; then 5 (12, 12): 56.25 and the padding 12 (4, 28): 112.25.
    #   Level 1: 18 (8, 24): 36.25 (padding); 16 (8, 8): 100.25; 19 (24, 24): 308.25 (padding);
    #   17 (24, 8): 372.25.
    #   IoUs: anchor 8 [0, 16, 8, 24]: 64 / 180 = 0.355556; 9 [8, 16, 16, 24]: 56 / 188 =
    #   0.297872; 4 [0, 8, 8, 16]: 32 / 212 = 0.150943; 16 [0, 0, 16, 16]: 60 / 376 = 0.159574;
    #   18 [0, 16, 16, 32]: 120 / 316 = 0.379747; 17 and 19: 0.
    # All anchors: candidates 8, 9, 4, 18, 16, 19; mean = 0.223949, std = 0.146072,
    #   threshold = 0.370021: only the padding anchor 18 passes, and its centre lies on the GT's
    #   bottom edge: no positive at all.
    # Valid anchors only: candidates 8, 9, 4, 16, 17; mean = 0.192789, std = 0.139246,
    #   threshold = 0.332035: anchor 8 passes, its centre 4 px inside the GT -> positive.
    levels = two_levels()
    centres = (torch.cat(levels)[:, :2] + torch.cat(levels)[:, 2:]) / 2
    valid = centres[:, 1] < 24
    assert valid.tolist() == [True] * 12 + [False] * 4 + [True, True, False, False]
    gt_boxes = torch.tensor([[0.0, 12.0, 15.0, 24.0]])
    assert torch.equal(ATSSAssigner(topk=3)(levels, gt_boxes), expected_assignment(20, {}))
    assert torch.equal(ATSSAssigner(topk=3)(levels, gt_boxes, valid=valid), expected_assignment(20, {8: 0}))


def test_a_valid_mask_is_atss_on_the_valid_anchors_alone():
    """With ``valid``, the assignment is the one of ATSS run on the valid anchors only (the
    reference drops the invalid anchors before assigning); all valid is no mask."""
    levels = [point_anchors(8, 8, 4.0), point_anchors(16, 4, 4.0), point_anchors(32, 2, 4.0)]
    anchors = torch.cat(levels)
    level_of = torch.cat([torch.full((len(a),), i) for i, a in enumerate(levels)])
    g = torch.Generator().manual_seed(1)
    assigner = ATSSAssigner(topk=5)
    for trial in range(6):
        if trial % 2:  # the padding of a 40 x 36 image: level 2 keeps a single valid anchor
            centres = (anchors[:, :2] + anchors[:, 2:]) / 2
            valid = (centres < torch.tensor([40.0, 36.0])).all(dim=1)
            xy = torch.rand(5, 2, generator=g) * 12
            gt_boxes = torch.cat([xy, xy + 12 + torch.rand(5, 2, generator=g) * 12], dim=1)
        else:
            valid = torch.rand(len(anchors), generator=g) > 0.4
            xy = torch.rand(5, 2, generator=g) * 48
            gt_boxes = torch.cat([xy, xy + 4 + torch.rand(5, 2, generator=g) * 40], dim=1)
        matched = assigner(levels, gt_boxes, valid=valid)
        alone = assigner([a[valid[level_of == i]] for i, a in enumerate(levels)], gt_boxes)
        expected = torch.full((len(anchors),), -1, dtype=torch.int64)
        expected[valid] = alone
        assert (expected >= 0).any()
        assert torch.equal(matched, expected)
        assert torch.equal(assigner(levels, gt_boxes, valid=torch.ones_like(valid)), assigner(levels, gt_boxes))
