import math

import pytest
import torch
from torchvision import ops

from iou_aware.layers import BOX_IOU_LOSS_KINDS, aligned_box_iou, box_iou_loss, focal_iou_factor

TORCHVISION_LOSSES = {
    "giou": ops.generalized_box_iou_loss,
    "diou": ops.distance_box_iou_loss,
    "ciou": ops.complete_box_iou_loss,
}


def box_pairs(n, seed, dtype=torch.float64):
    """(pred, gt): positive-size boxes, about half of the pairs overlapping, no ties."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * 100
    gt = torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g, dtype=dtype) * 100], dim=1)
    pred = gt + 30 * torch.randn(n, 4, generator=g, dtype=dtype)
    pred = torch.cat([pred[:, :2], torch.max(pred[:, 2:], pred[:, :2] + 1)], dim=1)
    return pred, gt


@pytest.mark.parametrize("kind", sorted(TORCHVISION_LOSSES))
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-7)])
def test_matches_torchvision(kind, reduction, dtype, tol):
    pred, gt = box_pairs(64, seed=0, dtype=dtype)
    pred.requires_grad_()
    ours = box_iou_loss(pred, gt, kind, reduction=reduction)
    (grad_ours,) = torch.autograd.grad(ours.sum(), pred)
    theirs = TORCHVISION_LOSSES[kind](pred, gt, reduction=reduction)
    (grad_theirs,) = torch.autograd.grad(theirs.sum(), pred)
    torch.testing.assert_close(ours, theirs, atol=tol, rtol=tol)
    torch.testing.assert_close(grad_ours, grad_theirs, atol=tol, rtol=1e-4)


@pytest.mark.parametrize("kind", sorted(TORCHVISION_LOSSES))
def test_matches_torchvision_degenerate_and_large(kind):
    # identical, disjoint, contained, zero width, large
    pred = torch.tensor(
        [[10, 20, 50, 60], [0, 0, 10, 10], [0, 0, 100, 80], [5, 5, 5, 15], [1e5, 2e5, 6e5, 9e5]],
        dtype=torch.float64,
    )
    gt = torch.tensor(
        [[10, 20, 50, 60], [20, 30, 25, 45], [10, 20, 30, 40], [0, 0, 10, 10], [2e5, 1, 1e6, 7e5]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(
        box_iou_loss(pred, gt, kind, reduction="none"),
        TORCHVISION_LOSSES[kind](pred, gt),
        atol=1e-7,
        rtol=1e-7,
    )
    torch.testing.assert_close(
        box_iou_loss(pred.float(), gt.float(), kind, reduction="none"),
        TORCHVISION_LOSSES[kind](pred, gt).float(),
        atol=1e-6,
        rtol=1e-5,
    )


def test_iou_and_log_iou_against_torchvision_box_iou():
    pred, gt = box_pairs(32, seed=1)
    iou = ops.box_iou(pred, gt).diagonal()
    torch.testing.assert_close(box_iou_loss(pred, gt, "iou", reduction="none"), 1 - iou)
    expected = -torch.log(iou.clamp(min=1e-7))
    torch.testing.assert_close(box_iou_loss(pred, gt, "log_iou", reduction="none"), expected)
    assert (iou == 0).any()  # so that the clamp matters


def test_focal_iou_factor_values():
    conf = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(focal_iou_factor(conf, 0.5, 2.0), torch.tensor([1.0, 0.5625, 0.25]))
    torch.testing.assert_close(focal_iou_factor(conf, 0.7, 1.0), torch.tensor([1.0, 0.65, 0.3]))


def test_focal_iou_slope_wrt_iou():
    # L(u) = (1 - u / 2)^2 (1 - u);  dL/du = -(1 - u / 2)^2 - (1 - u / 2)(1 - u).
    u = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    loss = focal_iou_factor(u, 0.5, 2.0) * (1 - u)
    (slope,) = torch.autograd.grad(loss.sum(), u)
    expected = torch.tensor([1.0, 0.28125, 0.0], dtype=torch.float64)
    torch.testing.assert_close(loss.detach(), expected)
    torch.testing.assert_close(slope, torch.tensor([-2.0, -0.9375, -0.25], dtype=torch.float64))


@pytest.mark.parametrize("width,loss,slope", [(1e-9, 1.0, -2.0), (0.5, 0.28125, -0.9375), (1 - 1e-9, 0.0, -0.25)])
def test_focal_iou_loss_slope_through_boxes(width, loss, slope):
    # pred (0, 0, w, 1) inside gt (0, 0, 1, 1): IoU = w, so dL/dw = dL/dIoU, the focal
    # factor included (it is not detached).
    w = torch.tensor(width, dtype=torch.float64, requires_grad=True)
    zero = torch.zeros((), dtype=torch.float64)
    pred = torch.stack([zero, zero, w, zero + 1])[None]
    gt = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    value = box_iou_loss(pred, gt, "focal_iou")
    value.backward()
    assert value.item() == pytest.approx(loss, abs=1e-6)
    assert w.grad.item() == pytest.approx(slope, rel=1e-5)


def test_focal_diou_and_ciou_by_hand():
    pred = torch.tensor([[0.0, 0.0, 0.5, 1.0]], dtype=torch.float64)
    gt = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    iou = 0.5
    diou = iou - 0.25**2 / 2  # centres 0.25 apart, enclosing diagonal^2 = 2
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(0.5)) ** 2
    ciou = diou - v / (1 - iou + v) * v
    focal_diou = (1 - 0.7 * (diou + 1) / 2) ** 2 * (1 - diou)
    focal_ciou = (1 - 0.5 * (ciou + 2) / 3) ** 2 * (1 - ciou)
    assert box_iou_loss(pred, gt, "focal_diou").item() == pytest.approx(focal_diou, rel=1e-6)
    assert box_iou_loss(pred, gt, "focal_ciou").item() == pytest.approx(focal_ciou, rel=1e-6)
    gamma_1 = (1 - 0.3 * (ciou + 2) / 3) * (1 - ciou)
    value = box_iou_loss(pred, gt, "focal_ciou", focal_gamma=1.0, focal_ciou_coef=0.3)
    assert value.item() == pytest.approx(gamma_1, rel=1e-6)


@pytest.mark.parametrize(
    "kind,base,to_conf",
    [
        ("focal_iou", "iou", lambda x: x),
        ("focal_diou", "diou", lambda x: (x + 1) / 2),
        ("focal_ciou", "ciou", lambda x: (x + 2) / 3),
    ],
)
def test_focal_loss_composition(kind, base, to_conf):
    pred, gt = box_pairs(32, seed=2)
    pred.requires_grad_()
    overlap = aligned_box_iou(pred, gt, base)
    expected = (1 - 0.4 * to_conf(overlap)) ** 1.5 * (1 - overlap)
    coefs = {f"{kind}_coef": 0.4}
    ours = box_iou_loss(pred, gt, kind, reduction="none", focal_gamma=1.5, **coefs)
    torch.testing.assert_close(ours, expected)
    grads = [torch.autograd.grad(x.sum(), pred)[0] for x in (ours, expected)]
    torch.testing.assert_close(*grads)


# The CIoU kinds are left out: their alpha is a constant for autograd, so their gradient is
# by design not the derivative of their value. test_matches_torchvision and
# test_focal_loss_composition check their gradients.
@pytest.mark.parametrize("kind", [k for k in BOX_IOU_LOSS_KINDS if not k.endswith("ciou")])
def test_gradcheck(kind):
    pred, gt = box_pairs(6, seed=3)
    pred.requires_grad_()
    gt.requires_grad_()
    loss_fn = lambda a, b: box_iou_loss(a, b, kind, reduction="none")  # noqa: E731
    assert torch.autograd.gradcheck(loss_fn, (pred, gt))


@pytest.mark.parametrize("kind", BOX_IOU_LOSS_KINDS)
def test_weight_and_reduction(kind):
    pred, gt = box_pairs(10, seed=4)
    weight = torch.rand(10, dtype=torch.float64)
    loss = box_iou_loss(pred, gt, kind, reduction="none")
    assert loss.shape == (10,)
    weighted = box_iou_loss(pred, gt, kind, weight=weight, reduction="none")
    torch.testing.assert_close(weighted, loss * weight)
    weighted_sum = box_iou_loss(pred, gt, kind, weight=weight, reduction="sum")
    torch.testing.assert_close(weighted_sum, (loss * weight).sum())
    # "mean" divides by N, not by the sum of the weights.
    weighted_mean = box_iou_loss(pred, gt, kind, weight=weight, reduction="mean")
    torch.testing.assert_close(weighted_mean, (loss * weight).sum() / 10)
    torch.testing.assert_close(box_iou_loss(pred, gt, kind), loss.mean())


@pytest.mark.parametrize("kind", BOX_IOU_LOSS_KINDS)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_empty_input(kind, reduction):
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = box_iou_loss(pred, torch.zeros(0, 4), kind, weight=torch.zeros(0), reduction=reduction)
    assert loss.shape == () and loss.item() == 0
    loss.backward()
    assert pred.grad.shape == (0, 4)
    assert box_iou_loss(pred, torch.zeros(0, 4), kind, reduction="none").shape == (0,)


@pytest.mark.parametrize("kind", BOX_IOU_LOSS_KINDS)
def test_finite_on_degenerate_boxes_under_autocast(kind):
    # zero area, identical zero area, inverted pred, large
    pred = torch.tensor(
        [[5, 5, 5, 15], [3, 3, 3, 3], [10, 10, 0, 0], [1e6, 1e6, 1e6 + 1, 1e6 + 1e5]],
        requires_grad=True,
    )
    gt = torch.tensor([[0, 0, 10, 10], [3, 3, 3, 3], [0, 0, 10, 10], [1e6, 1e6, 2e6, 1e6 + 1]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = box_iou_loss(pred, gt, kind, reduction="none")
    assert loss.dtype == torch.float32
    assert loss.isfinite().all()
    loss.sum().backward()
    assert pred.grad.isfinite().all()


def test_inputs_not_mutated():
    pred, gt = box_pairs(8, seed=5)
    weight = torch.rand(8, dtype=torch.float64)
    copies = pred.clone(), gt.clone(), weight.clone()
    for kind in BOX_IOU_LOSS_KINDS:
        box_iou_loss(pred, gt, kind, weight=weight)
    for tensor, copy in zip((pred, gt, weight), copies):
        assert torch.equal(tensor, copy)


def test_bad_arguments_raise():
    boxes = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="'siou'.*'iou', 'log_iou', 'giou'.*'focal_ciou'"):
        box_iou_loss(boxes, boxes, "siou")
    with pytest.raises(ValueError, match="'avg'.*'none', 'sum', 'mean'"):
        box_iou_loss(boxes, boxes, reduction="avg")
    with pytest.raises(ValueError, match=r"weight must have shape \(2,\)"):
        box_iou_loss(boxes, boxes, weight=torch.ones(2, 1))
    with pytest.raises(ValueError, match="as many boxes"):
        box_iou_loss(boxes, torch.zeros(3, 4))
