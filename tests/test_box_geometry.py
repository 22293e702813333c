import math

import pytest
import torch
from torchvision import ops

from iou_aware.layers import aligned_box_iou, pairwise_box_iou

KINDS = ("iou", "giou", "diou", "ciou")
TORCHVISION_PAIRWISE = {
    "iou": ops.box_iou,
    "giou": ops.generalized_box_iou,
    "diou": ops.distance_box_iou,
    "ciou": ops.complete_box_iou,
}


def random_boxes(n, generator, offset=0.0, scale=100.0, dtype=torch.float64):
    xy = offset + torch.rand(n, 2, generator=generator, dtype=dtype) * scale
    wh = 1 + torch.rand(n, 2, generator=generator, dtype=dtype) * scale
    return torch.cat([xy, xy + wh], dim=1)


def degenerate_pairs(dtype=torch.float64):
    """(boxes1, boxes2) rows: identical, disjoint, contained, touching, zero-area vs box."""
    pairs = [
        ([10, 20, 50, 60], [10, 20, 50, 60]),  # identical
        ([0, 0, 10, 10], [20, 30, 25, 45]),  # disjoint
        ([0, 0, 100, 80], [10, 20, 30, 40]),  # contained
        ([10, 20, 30, 40], [0, 0, 100, 80]),  # containing
        ([0, 0, 10, 10], [10, 0, 20, 10]),  # touching edge
        ([5, 5, 5, 15], [0, 0, 10, 10]),  # zero width
        ([0, 5, 10, 5], [0, 0, 10, 10]),  # zero height
        ([0, 0, 10, 10], [3, 3, 3, 3]),  # point
    ]
    boxes1, boxes2 = zip(*pairs)
    return torch.tensor(boxes1, dtype=dtype), torch.tensor(boxes2, dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
# 1e-7: CIoU's aspect term uses w / (h + eps) where torchvision uses w / h.
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-7)])
def test_pairwise_matches_torchvision_random(kind, dtype, tol):
    g = torch.Generator().manual_seed(0)
    boxes1 = random_boxes(30, g, dtype=dtype)
    boxes2 = random_boxes(20, g, dtype=dtype)
    ours = pairwise_box_iou(boxes1, boxes2, kind)
    assert ours.shape == (30, 20) and ours.dtype == dtype
    torch.testing.assert_close(ours, TORCHVISION_PAIRWISE[kind](boxes1, boxes2), atol=tol, rtol=tol)


@pytest.mark.parametrize("kind", KINDS)
def test_aligned_matches_torchvision_degenerate(kind):
    boxes1, boxes2 = degenerate_pairs()
    ours = aligned_box_iou(boxes1, boxes2, kind)
    expected = TORCHVISION_PAIRWISE[kind](boxes1, boxes2).diagonal()
    finite = expected.isfinite()
    # torchvision is finite on every row but CIoU of the point box (atan(0 / 0)).
    assert finite.sum() >= len(finite) - 1
    torch.testing.assert_close(ours[finite], expected[finite], atol=1e-7, rtol=1e-7)
    assert ours.isfinite().all()


def test_degenerate_iou_values_by_hand():
    boxes1, boxes2 = degenerate_pairs()
    iou = aligned_box_iou(boxes1, boxes2)
    expected = torch.tensor([1, 0, 400 / 8000, 400 / 8000, 0, 0, 0, 0], dtype=torch.float64)
    torch.testing.assert_close(iou, expected, atol=1e-8, rtol=0)
    # Disjoint: enclosing box (0, 0, 25, 45), union 100 + 75.
    giou = aligned_box_iou(boxes1[1:2], boxes2[1:2], "giou")
    expected = torch.tensor([-(25 * 45 - 175) / (25 * 45)], dtype=torch.float64)
    torch.testing.assert_close(giou, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_pairwise_large_coordinates(kind):
    g = torch.Generator().manual_seed(1)
    boxes1 = random_boxes(16, g, offset=1e5, scale=9e5)
    boxes2 = torch.cat(
        [
            boxes1[:8] + 1e4 * torch.rand(8, 4, generator=g, dtype=torch.float64),
            random_boxes(8, g, offset=1e5, scale=9e5),
        ]
    )
    expected = TORCHVISION_PAIRWISE[kind](boxes1, boxes2)
    ours = pairwise_box_iou(boxes1.float(), boxes2.float(), kind)
    assert ours.isfinite().all()
    torch.testing.assert_close(ours, expected.float(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_aligned_is_diagonal_of_pairwise(kind):
    g = torch.Generator().manual_seed(2)
    boxes1, boxes2 = random_boxes(12, g), random_boxes(12, g)
    torch.testing.assert_close(aligned_box_iou(boxes1, boxes2, kind), pairwise_box_iou(boxes1, boxes2, kind).diagonal())


def test_ciou_aspect_term_by_hand():
    pred = torch.tensor([[0.0, 0.0, 2.0, 1.0]], dtype=torch.float64)
    gt = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    iou = 0.5
    diou = iou - (0.5**2) / (2**2 + 1**2)
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    ciou = diou - v / (1 - iou + v) * v
    torch.testing.assert_close(aligned_box_iou(pred, gt, "ciou").item(), ciou, rtol=1e-6, atol=0)


def hard_cases():
    """(boxes1, boxes2) pairs where naive formulas produce NaN / inf or leave the value range."""
    both_inverted = [[0.0, 0.0, -1e-3, 1e-4], [10.0, 10.0, 0.0, 0.0]]
    return {
        "zero_area": (
            [[5.0, 5.0, 5.0, 15.0], [3.0, 3.0, 3.0, 3.0]],
            [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]],
        ),
        "identical_zero_area": (
            [[3.0, 3.0, 3.0, 3.0], [1.0, 2.0, 1.0, 9.0]],
            [[3.0, 3.0, 3.0, 3.0], [1.0, 2.0, 1.0, 9.0]],
        ),
        "inverted_pred": (
            [[10.0, 10.0, 0.0, 0.0], [10.0, 0.0, 0.0, 5.0]],
            [[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 3.0, 3.0]],
        ),
        "both_inverted": (both_inverted, both_inverted),
        "large": (
            [[1e6, 1e6, 1e6 + 1.0, 1e6 + 1e5], [0.0, 0.0, 1e6, 1e6]],
            [[1e6 - 3e5, 1e6, 1e6, 1e6 + 2.0], [1e6, 1e6, 1e6, 1e6]],
        ),
    }


@pytest.mark.parametrize("case", sorted(hard_cases()))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", ["aligned", "pairwise"])
def test_finite_values_and_gradients(case, kind, form):
    boxes1, boxes2 = (torch.tensor(b, requires_grad=True) for b in hard_cases()[case])
    fn = aligned_box_iou if form == "aligned" else pairwise_box_iou
    out = fn(boxes1, boxes2, kind)
    assert out.isfinite().all()
    if kind in ("iou", "giou"):
        # Raw centres of inverted boxes can leave the enclosing box: no such bound on DIoU / CIoU.
        assert (out >= (0 if kind == "iou" else -1)).all() and (out <= 1).all()
    out.sum().backward()
    assert boxes1.grad.isfinite().all() and boxes2.grad.isfinite().all()


def test_inverted_box_counts_as_empty():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    inverted = torch.tensor([[8.0, 8.0, 2.0, 2.0]])
    assert aligned_box_iou(inverted, gt).item() == 0
    # Enclosing box is the gt itself, the union is the gt area: GIoU = 0 - 0 / 100.
    assert aligned_box_iou(inverted, gt, "giou").item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("in_dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_autocast_computes_in_float32(kind, in_dtype):
    g = torch.Generator().manual_seed(3)
    boxes1 = random_boxes(10, g, offset=1e3, scale=1e3).to(in_dtype)
    boxes2 = random_boxes(10, g, offset=1e3, scale=1e3).to(in_dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = aligned_box_iou(boxes1, boxes2, kind)
        pairwise = pairwise_box_iou(boxes1, boxes2, kind)
    assert out.dtype == torch.float32 and pairwise.dtype == torch.float32
    expected = aligned_box_iou(boxes1.double(), boxes2.double(), kind).float()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_float64_preserved():
    g = torch.Generator().manual_seed(4)
    assert aligned_box_iou(random_boxes(3, g), random_boxes(3, g), "ciou").dtype == torch.float64


def test_inputs_not_mutated():
    g = torch.Generator().manual_seed(5)
    boxes1, boxes2 = random_boxes(6, g), random_boxes(6, g)
    boxes1[0, 2] = boxes1[0, 0] - 1  # inverted
    copies = boxes1.clone(), boxes2.clone()
    for kind in KINDS:
        aligned_box_iou(boxes1, boxes2, kind)
        pairwise_box_iou(boxes1, boxes2, kind)
    assert torch.equal(boxes1, copies[0]) and torch.equal(boxes2, copies[1])


@pytest.mark.parametrize(
    "boxes1,boxes2,fn,match",
    [
        (torch.zeros(3, 3), torch.zeros(3, 4), aligned_box_iou, r"boxes1 must have shape \(N, 4\)"),
        (torch.zeros(3, 4), torch.zeros(4), pairwise_box_iou, r"boxes2 must have shape \(N, 4\)"),
        (torch.zeros(2, 3, 4), torch.zeros(3, 4), pairwise_box_iou, "boxes1"),
        (torch.zeros(3, 4), torch.zeros(2, 4), aligned_box_iou, "as many boxes"),
    ],
)
def test_bad_shapes_raise(boxes1, boxes2, fn, match):
    with pytest.raises(ValueError, match=match):
        fn(boxes1, boxes2)


def test_unknown_kind_raises():
    with pytest.raises(ValueError, match="'siou'.*'iou', 'giou', 'diou', 'ciou'"):
        aligned_box_iou(torch.zeros(1, 4), torch.ones(1, 4), "siou")


def smooth_box_pairs(n, seed):
    """Float64 (pred, gt) with positive sizes and no ties between coordinates."""
    g = torch.Generator().manual_seed(seed)
    gt = random_boxes(n, g)
    pred = gt + 10 * torch.randn(n, 4, generator=g, dtype=torch.float64)
    pred = torch.cat([pred[:, :2], torch.max(pred[:, 2:], pred[:, :2] + 1)], dim=1)
    return pred.requires_grad_(), gt.requires_grad_()


# CIoU is left out: its alpha is a constant for autograd, so its gradient is by design not
# the derivative of its value; test_ciou_gradient_matches_torchvision covers it.
@pytest.mark.parametrize("kind", ["iou", "giou", "diou"])
def test_gradcheck(kind):
    pred, gt = smooth_box_pairs(6, seed=6)
    assert torch.autograd.gradcheck(lambda a, b: aligned_box_iou(a, b, kind), (pred, gt))
    assert torch.autograd.gradcheck(lambda a, b: pairwise_box_iou(a, b, kind), (pred[:3], gt[:4]))


@pytest.mark.parametrize("kind", KINDS)
def test_gradient_matches_torchvision(kind):
    pred, gt = smooth_box_pairs(8, seed=7)
    weights = torch.randn(8, 8, dtype=torch.float64)
    ours = torch.autograd.grad((pairwise_box_iou(pred, gt, kind) * weights).sum(), (pred, gt))
    theirs = torch.autograd.grad((TORCHVISION_PAIRWISE[kind](pred, gt) * weights).sum(), (pred, gt))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-6)
