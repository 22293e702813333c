import math

import pytest
import torch

from iou_aware.layers import cross_iou_loss, crosses_to_offsets, landmarks_to_boxes, offsets_to_crosses

EPS = 1e-6  # cross_iou_loss's default eps
NUM_LANDMARKS = {"box": 5, "contour": 37, "keypoint": 18}


def ciou_penalty(pred_box, gt_box, iou):
    """rho^2 / (c^2 + eps) + v^2 / (1 - iou + v + eps) of XYXY tuples, in plain math."""
    px1, py1, px2, py2 = pred_box
    gx1, gy1, gx2, gy2 = gt_box
    rho_sq = ((px1 + px2) / 2 - (gx1 + gx2) / 2) ** 2 + ((py1 + py2) / 2 - (gy1 + gy2) / 2) ** 2
    c_sq = (max(px2, gx2) - min(px1, gx1)) ** 2 + (max(py2, gy2) - min(py1, gy1)) ** 2
    pw, ph = max(px2 - px1, 0), max(py2 - py1, 0)
    gw, gh = max(gx2 - gx1, 0), max(gy2 - gy1, 0)
    v = 4 / math.pi**2 * (math.atan(gw / (gh + EPS)) - math.atan(pw / (ph + EPS))) ** 2
    return rho_sq / (c_sq + EPS) + v**2 / (1 - iou + v + EPS)


def random_case(mode, n, seed, dtype=torch.float64):
    """(pred, target, visible): crosses and offsets of magnitude in [0.5, 2.5], no ties."""
    g = torch.Generator().manual_seed(seed)
    num_landmarks = NUM_LANDMARKS[mode]
    sign = torch.randint(0, 2, (n, num_landmarks, 2), generator=g).to(dtype) * 2 - 1
    target = sign * (0.5 + 2 * torch.rand(n, num_landmarks, 2, generator=g, dtype=dtype))
    pred = 0.5 + 2 * torch.rand(n, num_landmarks, 4, generator=g, dtype=dtype)
    visible = torch.rand(n, num_landmarks, generator=g) > 0.3 if mode == "keypoint" else None
    return pred, target, visible


def test_offsets_to_crosses_by_hand():
    offsets = torch.tensor([[-2.0, 4.0], [0.0, 0.0], [3.0, -1.0]])
    expected = torch.tensor(
        [
            # dy = 4 > 0: y+ = 4, y- = 0.2 * 4; dx = -2 < 0: x- = 2, x+ = 0.2 * 2.
            [0.8, 4.0, 2.0, 0.4],
            [0.0, 0.0, 0.0, 0.0],
            # dy = -1: y- = 1, y+ = 0.2; dx = 3: x- = 0.2 * 3, x+ = 3.
            [1.0, 0.2, 0.6, 3.0],
        ]
    )
    torch.testing.assert_close(offsets_to_crosses(offsets), expected)
    # alpha = 0: only the active channels are non-zero.
    torch.testing.assert_close(
        offsets_to_crosses(offsets, alpha=0.0),
        torch.tensor([[0.0, 4.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 3.0]]),
    )


@pytest.mark.parametrize("alpha", [0.0, 0.2, 0.99])
def test_crosses_round_trip(alpha):
    g = torch.Generator().manual_seed(0)
    offsets = torch.randn(4, 7, 2, generator=g) * 10
    offsets[0, :3] = 0
    offsets[1, 0, 0] = -0.0
    decoded = crosses_to_offsets(offsets_to_crosses(offsets, alpha))
    assert torch.equal(decoded, offsets)


def test_crosses_to_offsets_ties_and_gradient():
    crosses = torch.tensor([[[1.0, 1.0, 2.0, 2.0], [3.0, 1.0, 0.0, 2.0]]], requires_grad=True)
    offsets = crosses_to_offsets(crosses)
    # Ties: "+" wins, so (dx, dy) = (2, 1); then y- = 3 > y+ = 1 gives dy = -3, x+ wins.
    torch.testing.assert_close(offsets, torch.tensor([[[2.0, 1.0], [2.0, -3.0]]]))
    (grad,) = torch.autograd.grad(offsets[..., 1].sum(), crosses)
    # dy flows to the winning channel only: y+ of the first landmark, -y- of the second.
    torch.testing.assert_close(grad, torch.tensor([[[0.0, 1.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]]]))


@pytest.mark.parametrize("mode", ["box", "contour"])
def test_identical_prediction_gives_zero_loss_and_finite_gradients(mode):
    # The reference implementation is 0 / 0 = NaN here.
    _, target, _ = random_case(mode, 3, seed=1, dtype=torch.float32)
    target[0] = 0  # also all-zero crosses, i.e. a zero-size box
    target[1, :2] = 0
    pred = offsets_to_crosses(target).requires_grad_()
    loss = cross_iou_loss(pred, target, mode)
    assert loss.abs().max() < 1e-6
    (grad,) = torch.autograd.grad(loss.sum(), pred)
    assert torch.isfinite(grad).all()


def test_box_mode_opposite_direction_by_hand():
    # GT landmarks (dx, dy): top (0, -2), left (-3, 0), bottom (0, 1), right (1, 0), centre 0.
    target = torch.tensor([[[0.0, -2.0], [-3.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])
    # The prediction is exact but for the top landmark, which points down: (0, 2).
    pred = offsets_to_crosses(target)
    pred[0, 0] = offsets_to_crosses(torch.tensor([0.0, 2.0]))  # [0.4, 2, 0, 0]
    # Target crosses: top [2, 0.4, 0, 0], left [0, 0, 3, 0.6], bottom [0.2, 1, 0, 0],
    # right [0, 0, 0.2, 1], centre 0. Top: minima 0.4 + 0.4 = 0.8, maxima 2 + 2 = 4; the
    # other landmarks agree: 3.6 + 1.2 + 1.2 = 6 in both sums.
    inter, union = 0.8 + 6.0, 4.0 + 6.0
    iou = (inter + EPS) / (union + EPS)  # 0.68
    # GT box (x of left, y of top, x of right, y of bottom) = (-3, -2, 1, 1); the predicted
    # one (-3, 2, 1, 1) is inverted (height 0 in v). rho^2 = (1.5 - -0.5)^2 = 4, c^2 = 4^2 + 3^2.
    expected = 1 - iou + ciou_penalty((-3.0, 2.0, 1.0, 1.0), (-3.0, -2.0, 1.0, 1.0), iou)
    # About 1 - 0.68 + 4 / 25 + 0.0577.
    assert abs(expected - 0.5377) < 1e-3
    torch.testing.assert_close(cross_iou_loss(pred, target, "box"), torch.tensor([expected]), atol=1e-6, rtol=1e-6)


def test_box_mode_one_axis_zero_and_alpha_by_hand():
    # Only the right landmark is non-zero: GT (2, 0); the prediction (1, 0) with crosses
    # [0, 0, 0.2, 1]. The y channels are all zero.
    target = torch.zeros(1, 5, 2)
    target[0, 3, 0] = 2.0
    pred = torch.zeros(1, 5, 4)
    pred[0, 3] = torch.tensor([0.0, 0.0, 0.2, 1.0])
    # Boxes (0, 0, 1, 0) and GT (0, 0, 2, 0): rho^2 = 0.5^2, c^2 = 2^2, v ~ 0 (both flat).
    penalty = ciou_penalty((0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 2.0, 0.0), 0.5)
    assert abs(penalty - 0.0625) < 1e-6
    # alpha = 0.2: GT crosses [0, 0, 0.4, 2]; minima 0.2 + 1 = 1.2, maxima 0.4 + 2 = 2.4.
    iou = (1.2 + EPS) / (2.4 + EPS)
    torch.testing.assert_close(
        cross_iou_loss(pred, target, "box", alpha=0.2),
        torch.tensor([1 - iou + ciou_penalty((0, 0, 1, 0), (0, 0, 2, 0), iou)]),
    )
    # alpha = 0: GT crosses [0, 0, 0, 2]; minima 0 + 1 = 1, maxima 0.2 + 2 = 2.2.
    iou = (1.0 + EPS) / (2.2 + EPS)
    torch.testing.assert_close(
        cross_iou_loss(pred, target, "box", alpha=0.0),
        torch.tensor([1 - iou + ciou_penalty((0, 0, 1, 0), (0, 0, 2, 0), iou)]),
    )


def test_keypoint_mode_one_axis_zero_and_alpha_by_hand():
    # Only keypoint 0 is non-zero: GT (3, 0); predicted cross [0, 1, 0, 2]. All visible.
    target = torch.zeros(1, 18, 2)
    target[0, 0, 0] = 3.0
    pred = torch.zeros(1, 18, 4)
    pred[0, 0] = torch.tensor([0.0, 1.0, 0.0, 2.0])
    visible = torch.ones(1, 18, dtype=torch.bool)
    # y axis: GT [0, 0]; minima 0, maxima 0 + 1: IoU ~ 0. The other 17 landmarks: 0 / 0 = 1.
    iou_y = EPS / (1 + EPS)
    # alpha = 0.2: GT x cross [0.6, 3]: (0 + 2) / (0.6 + 3).
    iou_x = (2 + EPS) / (3.6 + EPS)
    loss = cross_iou_loss(pred, target, "keypoint", alpha=0.2, visible=visible)
    torch.testing.assert_close(loss, torch.tensor([(2 - iou_y - iou_x) / 36]))
    # alpha = 0: GT x cross [0, 3]: (0 + 2) / (0 + 3).
    iou_x = (2 + EPS) / (3 + EPS)
    loss = cross_iou_loss(pred, target, "keypoint", alpha=0.0, visible=visible)
    torch.testing.assert_close(loss, torch.tensor([(2 - iou_y - iou_x) / 36]))


def test_keypoint_mode_two_visible_by_hand():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(1, 18, 2, generator=g) * 5  # invisible ones: arbitrary
    pred = torch.rand(1, 18, 4, generator=g) * 5
    visible = torch.zeros(1, 18, dtype=torch.bool)
    visible[0, :2] = True  # the centre, marked invisible here, counts anyway
    # Keypoint 0: GT (-2, 4) -> [0.8, 4, 2, 0.4], pred [1, 3, 2, 0.4]:
    #   y: (min(1, 0.8) + min(3, 4)) / (max(1, 0.8) + max(3, 4)) = 3.8 / 5; x: 2.4 / 2.4 = 1.
    target[0, 0] = torch.tensor([-2.0, 4.0])
    pred[0, 0] = torch.tensor([1.0, 3.0, 2.0, 0.4])
    # Keypoint 1: GT (3, -1) -> [1, 0.2, 0.6, 3], pred 0: y 0 / 1.2, x 0 / 3.6.
    target[0, 1] = torch.tensor([3.0, -1.0])
    pred[0, 1] = 0
    # Centre: GT 0, pred [0, 0, 1, 0]: y 0 / 0 = 1, x 0 / 1.
    target[0, 17] = 0
    pred[0, 17] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    one_minus_iou = [
        1 - (3.8 + EPS) / (5 + EPS),
        1 - 1,
        1 - EPS / (1.2 + EPS),
        1 - EPS / (3.6 + EPS),
        1 - 1,
        1 - EPS / (1 + EPS),
    ]
    expected = sum(one_minus_iou) / 36  # about 3.24 / 36
    assert abs(expected - 0.09) < 1e-5
    loss = cross_iou_loss(pred, target, "keypoint", visible=visible)
    torch.testing.assert_close(loss, torch.tensor([expected]))


def test_keypoint_mode_ignores_invisible_landmarks():
    pred, target, visible = random_case("keypoint", 4, seed=3, dtype=torch.float32)
    hidden = ~visible
    hidden[:, -1] = False  # the centre is never ignored

    def loss_and_grad(pred, target):
        pred = pred.clone().requires_grad_()
        loss = cross_iou_loss(pred, target, "keypoint", visible=visible)
        (grad,) = torch.autograd.grad(loss.sum(), pred)
        return loss, grad

    loss, grad = loss_and_grad(pred, target)
    changed_pred = torch.where(hidden[..., None], 100 * pred + 7, pred)
    changed_target = torch.where(hidden[..., None], torch.full_like(target, float("inf")), target)
    changed_loss, changed_grad = loss_and_grad(changed_pred, changed_target)
    torch.testing.assert_close(changed_loss, loss)
    torch.testing.assert_close(changed_grad, grad)
    assert (grad[hidden] == 0).all()


def circle_offsets(radius=2.0):
    """(1, 37, 2): 36 contour points 10 degrees apart, from angle 0, and the centre (0, 0)."""
    angles = torch.arange(36, dtype=torch.float64) * (math.pi / 18)
    contour = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return torch.cat([contour, torch.zeros(1, 2, dtype=torch.float64)])[None]


def test_contour_mode_only_group_3_differs():
    target = circle_offsets()
    pred = offsets_to_crosses(target)
    # Group 3 = points 3, 12, 21, 30 (30, 120, 210, 300 degrees): halve their crosses, i.e.
    # predict each point halfway to the anchor. The extreme points (0, 90, 180, 270 degrees)
    # are in group 0 and stay exact, so both boxes are (-2, -2, 2, 2): no penalty.
    pred[0, 3::9] = pred[0, 3::9] / 2
    # Each group-3 channel: min = t / 2, max = t; with S = sum of their target crosses =
    # 1.2 * 4 * (|2 cos| + |2 sin|) at 30 degrees and its mirrors: IoU_3 = (S / 2) / S.
    s = 1.2 * 4 * 2 * (math.cos(math.pi / 6) + math.sin(math.pi / 6))
    iou_3 = (s / 2 + EPS) / (s + EPS)
    loss = cross_iou_loss(pred, target, "contour")
    torch.testing.assert_close(loss, torch.tensor([(1 - iou_3) / 9], dtype=torch.float64))


def test_contour_mode_centre_joins_group_0():
    target = circle_offsets()
    target[0, 36] = torch.tensor([1.0, 0.0])  # centre cross [0, 0, 0.2, 1]
    pred = offsets_to_crosses(target)
    pred[0, 36] = 0
    # Group 0 = points 0, 9, 18, 27 (the axes points, |dx| + |dy| = 2) and the centre:
    # minima 1.2 * 2 * 4 + 0, maxima 9.6 + 1.2. The centre is not part of the extent.
    iou_0 = (9.6 + EPS) / (10.8 + EPS)
    loss = cross_iou_loss(pred, target, "contour")
    torch.testing.assert_close(loss, torch.tensor([(1 - iou_0) / 9], dtype=torch.float64))


def test_contour_mode_penalty_on_extent():
    target = circle_offsets()
    pred = offsets_to_crosses(target)
    # Point 0 (angle 0, the rightmost) predicted at x = 3 rather than 2: crosses
    # [0, 0, 0.4, 2] -> [0, 0, 0.4, 3]; minima sum unchanged, maxima + 1 in group 0.
    pred[0, 0, 3] = 3.0
    iou_0 = (9.6 + EPS) / (10.6 + EPS)
    iou = (8 + iou_0) / 9
    # Extent (-2, -2, 3, 2) vs (-2, -2, 2, 2) (up to cos / sin rounding of the circle).
    expected = 1 - iou + ciou_penalty((-2.0, -2.0, 3.0, 2.0), (-2.0, -2.0, 2.0, 2.0), iou)
    loss = cross_iou_loss(pred, target, "contour")
    torch.testing.assert_close(loss, torch.tensor([expected], dtype=torch.float64))


@pytest.mark.parametrize("mode", ["box", "contour", "keypoint"])
def test_reduction_and_weight(mode):
    pred, target, visible = random_case(mode, 3, seed=4, dtype=torch.float32)
    weight = torch.tensor([0.5, 2.0, 0.0])
    loss = cross_iou_loss(pred, target, mode, visible=visible)
    assert loss.shape == (3,) and (loss > 0).all()
    weighted = cross_iou_loss(pred, target, mode, visible=visible, weight=weight)
    torch.testing.assert_close(weighted, loss * weight)
    torch.testing.assert_close(
        cross_iou_loss(pred, target, mode, visible=visible, weight=weight, reduction="sum"),
        (loss * weight).sum(),
    )
    torch.testing.assert_close(
        cross_iou_loss(pred, target, mode, visible=visible, weight=weight, reduction="mean"),
        (loss * weight).sum() / 3,
    )


@pytest.mark.parametrize("mode", ["box", "contour", "keypoint"])
def test_empty_batch(mode):
    num_landmarks = NUM_LANDMARKS[mode]
    pred = torch.zeros(0, num_landmarks, 4, requires_grad=True)
    target = torch.zeros(0, num_landmarks, 2)
    visible = torch.zeros(0, num_landmarks, dtype=torch.bool) if mode == "keypoint" else None
    assert cross_iou_loss(pred, target, mode, visible=visible).shape == (0,)
    for reduction in ("sum", "mean"):
        loss = cross_iou_loss(pred, target, mode, visible=visible, reduction=reduction)
        assert loss.item() == 0
        (grad,) = torch.autograd.grad(loss, pred)
        assert grad.shape == pred.shape


@pytest.mark.parametrize(
    "pred_shape,target_shape,mode,kwargs,message",
    [
        ((2, 5, 3), (2, 5, 2), "box", {}, r"needs pred \(N, 5, 4\).*got \(2, 5, 3\)"),  # pred last dim != 4
        ((2, 5, 4), (2, 5, 3), "box", {}, r"needs pred \(N, 5, 4\).*and \(2, 5, 3\)"),  # target last dim != 2
        ((2, 5, 4), (3, 5, 2), "box", {}, r"needs pred \(N, 5, 4\).*and \(3, 5, 2\)"),  # different N
        ((2, 18, 4), (2, 18, 2), "box", {}, r"mode 'box' needs pred \(N, 5, 4\)"),  # L != 5
        ((2, 5, 4), (2, 5, 2), "contour", {}, r"num_groups must divide the 4 contour points, got 9"),
        ((2, 37, 4), (2, 37, 2), "keypoint", {"visible": torch.ones(2, 36, dtype=torch.bool)}, r"shape \(2, 37\)"),
        ((2, 1, 4), (2, 1, 2), "keypoint", {"visible": torch.ones(2, 1, dtype=torch.bool)}, r"L >= 2"),  # L < 2
        ((2, 18, 4), (2, 18, 2), "keypoint", {}, r"needs the visible \(N, L\) bool mask"),
        ((2, 18, 4), (2, 18, 2), "keypoint", {"visible": torch.ones(2, 18)}, r"bool tensor.*float32"),
        ((2, 5, 4), (2, 5, 2), "box", {"visible": torch.ones(2, 5, dtype=torch.bool)}, r"only used by mode 'keypoint'"),
        ((2, 37, 4), (2, 37, 2), "contour", {"num_groups": 7}, r"divide the 36 contour points, got 7"),
        ((2, 5, 4), (2, 5, 2), "box", {"weight": torch.ones(3)}, r"weight must have shape \(2,\), got \(3,\)"),
        ((2, 5, 4), (2, 5, 2), "box", {"reduction": "avg"}, r"reduction = 'avg'; use one of \('none', 'sum', 'mean'\)"),
        ((2, 5, 4), (2, 5, 2), "polygon", {}, r"cross-IoU mode = 'polygon'; use one of"),
        ((2, 5, 4), (2, 5, 2), "box", {"alpha": 1.0}, r"alpha must be in \[0, 1\)"),
    ],
)
def test_bad_arguments_raise_naming_the_problem(pred_shape, target_shape, mode, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cross_iou_loss(torch.rand(pred_shape), torch.rand(target_shape), mode, **kwargs)


def test_bad_cross_shapes_raise():
    with pytest.raises(ValueError, match=r"offsets must have shape \(\.\.\., L, 2\), got \(3, 4\)"):
        offsets_to_crosses(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"crosses must have shape \(\.\.\., L, 4\), got \(3, 2\)"):
        crosses_to_offsets(torch.zeros(3, 2))


@pytest.mark.parametrize("mode", ["box", "contour", "keypoint"])
def test_gradcheck(mode):
    pred, target, visible = random_case(mode, 1 if mode == "contour" else 2, seed=5)
    # Away from the kinks of min / max and of the decoding.
    target_crosses = offsets_to_crosses(target)
    assert (pred - target_crosses).abs().min() > 1e-3
    assert (pred[..., 0::2] - pred[..., 1::2]).abs().min() > 1e-3
    pred.requires_grad_()
    target.requires_grad_()
    assert torch.autograd.gradcheck(lambda p, t: cross_iou_loss(p, t, mode, visible=visible), (pred, target))


@pytest.mark.parametrize("mode", ["box", "contour", "keypoint"])
def test_autocast_bfloat16(mode):
    pred, target, visible = random_case(mode, 3, seed=6, dtype=torch.float32)
    pred = pred.bfloat16().requires_grad_()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        loss = cross_iou_loss(pred, target.bfloat16(), mode, visible=visible)
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all()
    (grad,) = torch.autograd.grad(loss.sum(), pred)
    assert torch.isfinite(grad).all()


def test_box_penalty_targets_the_given_boxes_by_hand():
    """A perfect landmark prediction is penalized only by how its box misses ``target_boxes``."""
    # Landmarks top (0, -1), left (-1, 0), bottom (0, 1), right (1, 0), centre (0, 0): box (-1, -1, 1, 1).
    target = torch.tensor([[[0.0, -1.0], [-1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    pred = offsets_to_crosses(target)
    assert cross_iou_loss(pred, target, "box").item() == pytest.approx(0.0, abs=1e-12)
    # GT box (-1, -1, 1, 2): centres (0, 0) and (0, 0.5), rho^2 = 0.25; enclosing 2 x 3, c^2 = 13;
    # cross-IoU 1, so the aspect term is v^2 / v = v with v = 4 / pi^2 (atan(2 / 3) - atan(1))^2.
    v = 4 / math.pi**2 * (math.atan(2 / (3 + EPS)) - math.atan(2 / (2 + EPS))) ** 2
    expected = 0.25 / (13 + EPS) + v**2 / (v + EPS)
    gt_box = torch.tensor([[-1.0, -1.0, 1.0, 2.0]], dtype=torch.float64)
    loss = cross_iou_loss(pred, target, "box", target_boxes=gt_box)
    torch.testing.assert_close(loss, torch.tensor([expected], dtype=torch.float64))
    with pytest.raises(ValueError, match="target_boxes must have shape"):
        cross_iou_loss(pred, target, "box", target_boxes=gt_box[:, :3])


def test_keypoint_object_overlap_by_hand():
    """keypoint_overlap="object": one overlap over the channels of the counted landmarks."""
    target = torch.full((1, 18, 2), 5.0, dtype=torch.float64)  # invisible ones: any value
    target[0, 0] = torch.tensor([2.0, -1.0])  # crosses [y-, y+, x-, x+] = [1, 0.2, 0.4, 2]
    target[0, 17] = 0.0  # the centre, on the point: crosses all 0
    pred = torch.full((1, 18, 4), 7.0, dtype=torch.float64)
    pred[0, 0] = torch.tensor([1.0, 0.2, 0.4, 3.0])  # x+ one unit too long
    pred[0, 17] = torch.tensor([0.5, 0.0, 0.0, 0.0])
    visible = torch.zeros(1, 18, dtype=torch.bool)
    visible[0, 0] = True
    # Minima 1 + 0.2 + 0.4 + 2 + 0 = 3.6; maxima 1 + 0.2 + 0.4 + 3 + 0.5 = 5.1.
    loss = cross_iou_loss(pred, target, "keypoint", visible=visible, keypoint_overlap="object")
    torch.testing.assert_close(loss, torch.tensor([1 - (3.6 + EPS) / (5.1 + EPS)], dtype=torch.float64))
    # The reference's per-axis pooling of the same case: landmark 0's y axis matches, its x axis
    # 2.4 / 3.4; the centre's y axis eps / (0.5 + eps), its x axis 0 / 0 -> 1; over 2 x 18 axes.
    axis = cross_iou_loss(pred, target, "keypoint", visible=visible)
    expected = ((1 - (2.4 + EPS) / (3.4 + EPS)) + (1 - EPS / (0.5 + EPS))) / 36
    torch.testing.assert_close(axis, torch.tensor([expected], dtype=torch.float64))
    with pytest.raises(ValueError, match="keypoint_overlap = .*; use one of"):
        cross_iou_loss(pred, target, "keypoint", visible=visible, keypoint_overlap="group")


def _reference_keypoint_loss(pred, target, visible, alpha=0.2):
    """Per-axis keypoint cross-IoU in plain Python loops, for any L."""
    losses = []
    for p, t, v in zip(pred.tolist(), target.tolist(), visible.tolist()):
        total = 0.0
        for i, ((dx, dy), cross) in enumerate(zip(t, p)):
            if not (v[i] or i == len(t) - 1):
                continue
            for axis, d in ((0, dy), (1, dx)):  # crosses are [y-, y+, x-, x+]
                minus, plus = (abs(d), alpha * abs(d)) if d < 0 else (alpha * abs(d), abs(d))
                pm, pp = cross[2 * axis], cross[2 * axis + 1]
                overlap = (min(pm, minus) + min(pp, plus) + EPS) / (max(pm, minus) + max(pp, plus) + EPS)
                total += 1 - overlap
        losses.append(total / (2 * len(t)))
    return torch.tensor(losses, dtype=torch.float64)


@pytest.mark.parametrize("num_keypoints", [1, 5, 17, 30])
def test_keypoint_mode_takes_any_number_of_keypoints(num_keypoints):
    g = torch.Generator().manual_seed(num_keypoints)
    L = num_keypoints + 1
    target = (torch.rand(4, L, 2, generator=g, dtype=torch.float64) - 0.5) * 4
    pred = torch.rand(4, L, 4, generator=g, dtype=torch.float64) * 2
    visible = torch.rand(4, L, generator=g) > 0.3
    loss = cross_iou_loss(pred, target, "keypoint", visible=visible)
    torch.testing.assert_close(loss, _reference_keypoint_loss(pred, target, visible))


def test_contour_mode_takes_any_number_of_points():
    """12 points on a circle + centre in 4 groups: a perfect prediction gives 0, one point off by
    one unit changes only its group's overlap."""
    angles = torch.arange(12, dtype=torch.float64) * (2 * math.pi / 12)
    target = torch.cat(
        [torch.stack([2 * torch.cos(angles), 2 * torch.sin(angles)], 1), torch.zeros(1, 2, dtype=torch.float64)]
    )[None]
    pred = offsets_to_crosses(target)
    assert cross_iou_loss(pred, target, "contour", num_groups=4).item() == pytest.approx(0.0, abs=1e-9)
    pred[0, 1, 1] += 1.0  # point 1 (group 1): y+ one unit longer; the extent changes too
    inter = offsets_to_crosses(target)[0, 1::4].sum()  # group 1's minima: unchanged
    iou = (3 + (inter + EPS) / (inter + 1 + EPS)) / 4
    pred_box = landmarks_to_boxes(crosses_to_offsets(pred), "contour")[0].tolist()
    gt_box = landmarks_to_boxes(target, "contour")[0].tolist()
    expected = 1 - iou + ciou_penalty(pred_box, gt_box, iou.item())
    torch.testing.assert_close(cross_iou_loss(pred, target, "contour", num_groups=4), expected.reshape(1))
