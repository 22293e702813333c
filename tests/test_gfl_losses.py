"""GFL losses: QFL (on logits and on probabilities), DFL, the integral of the side distributions,
and the GIoU loss GFL uses, against values computed with the reference implementation."""

import pytest
import torch

from iou_aware.layers import (
    box_iou_loss,
    distribution_focal_loss,
    integral_distance,
    quality_focal_loss,
    quality_focal_loss_from_probs,
)

# Reference case: C = 3 classes, label 3 is background.
QFL_LOGITS = [[0.5, -1.0, 2.0], [-2.0, 0.3, 0.0], [1.5, -0.5, -3.0], [-4.0, -4.0, -4.0]]
QFL_LABELS = [1, 3, 0, 3]
QFL_SCORES = [0.8, 0.0, 0.35, 0.0]
QFL_WEIGHTS = [1.0, 1.0, 1.0, 0.0]
QFL_PER_SAMPLE = [2.34145546, 0.457014084, 0.324877143, 1.76146368e-5]


def qfl_case(dtype=torch.float32):
    return (
        torch.tensor(QFL_LOGITS, dtype=dtype),
        torch.tensor(QFL_LABELS),
        torch.tensor(QFL_SCORES, dtype=dtype),
    )


def dfl_case():
    """Three rows of reg_max = 16 with their reference losses."""
    peaked = torch.zeros(17)
    peaked[5], peaked[6] = 3.0, 2.0
    logits = torch.stack([torch.zeros(17), torch.arange(17) * 0.1, peaked])
    return logits, torch.tensor([4.3, 15.9, 5.0]), torch.tensor([2.83321333, 2.16043949, 0.74890614])


def test_qfl_matches_reference():
    logits, labels, scores = qfl_case()
    loss = quality_focal_loss(logits, labels, scores, beta=2.0, reduction="none")
    torch.testing.assert_close(loss, torch.tensor(QFL_PER_SAMPLE), rtol=1e-6, atol=0)
    weighted = quality_focal_loss(logits, labels, scores, weight=torch.tensor(QFL_WEIGHTS))
    torch.testing.assert_close(weighted / 2, torch.tensor(1.5616734), rtol=1e-6, atol=0)


def test_qfl_is_the_elementwise_formula():
    logits, labels, scores = qfl_case(torch.float64)
    target = torch.zeros_like(logits)
    target[0, 1], target[2, 0] = 0.8, 0.35
    p = logits.sigmoid()
    bce = -(target * p.log() + (1 - target) * (1 - p).log())
    expected = (bce * (target - p).abs().pow(1.5)).sum(dim=1)
    torch.testing.assert_close(quality_focal_loss(logits, labels, scores, beta=1.5, reduction="none"), expected)


def test_qfl_reductions_and_empty_input():
    logits, labels, scores = qfl_case()
    per_sample = quality_focal_loss(logits, labels, scores, reduction="none")
    torch.testing.assert_close(quality_focal_loss(logits, labels, scores), per_sample.sum())
    torch.testing.assert_close(quality_focal_loss(logits, labels, scores, reduction="mean"), per_sample.mean())

    empty = torch.zeros(0, 3, requires_grad=True)
    for fn, pred in ((quality_focal_loss, empty), (quality_focal_loss_from_probs, empty.sigmoid())):
        loss = fn(pred, torch.zeros(0, dtype=torch.int64), torch.zeros(0), reduction="mean")
        assert loss.item() == 0 and loss.requires_grad
        loss.backward()
    with pytest.raises(ValueError, match="reduction = 'avg'; use one of"):
        quality_focal_loss(logits, labels, scores, reduction="avg")
    with pytest.raises(ValueError, match="weight"):
        quality_focal_loss(logits, labels, scores, weight=torch.ones(3))


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_qfl_from_probs_equals_qfl_from_logits(dtype, rtol):
    logits, labels, scores = qfl_case(dtype)
    weight = torch.tensor(QFL_WEIGHTS, dtype=dtype)
    for reduction in ("none", "sum", "mean"):
        expected = quality_focal_loss(logits, labels, scores, weight=weight, reduction=reduction)
        ours = quality_focal_loss_from_probs(logits.sigmoid(), labels, scores, weight=weight, reduction=reduction)
        torch.testing.assert_close(ours, expected, rtol=rtol, atol=0)


def test_qfl_from_probs_is_finite_at_0_and_1():
    probs = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    labels, scores = torch.tensor([0, 2, 3]), torch.tensor([0.7, 1.0, 0.0])
    loss = quality_focal_loss_from_probs(probs, labels, scores, reduction="none")
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(probs.grad).all()


def test_qfl_finite_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], requires_grad=True)
    loss = quality_focal_loss(logits, torch.tensor([1, 3]), torch.tensor([0.9, 0.0]), reduction="none")
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_qfl_runs_in_float32_under_autocast():
    logits, labels, scores = qfl_case()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = quality_focal_loss(logits.bfloat16(), labels, scores.bfloat16(), reduction="none")
        loss_p = quality_focal_loss_from_probs(logits.sigmoid().bfloat16(), labels, scores, reduction="none")
    assert loss.dtype == torch.float32 and loss_p.dtype == torch.float32
    torch.testing.assert_close(loss, torch.tensor(QFL_PER_SAMPLE), rtol=2e-2, atol=1e-3)


def test_qfl_gradcheck():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 4, 1, 4, 2])
    scores = torch.rand(6, generator=g, dtype=torch.float64)
    weight = torch.rand(6, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: quality_focal_loss(x, labels, scores, weight=weight), (logits,))
    probs = (0.05 + 0.9 * torch.rand(6, 4, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: quality_focal_loss_from_probs(p, labels, scores), (probs,))


def test_dfl_matches_reference():
    logits, target, expected = dfl_case()
    torch.testing.assert_close(distribution_focal_loss(logits, target), expected, rtol=1e-6, atol=0)
    weight = torch.tensor([1.0, 0.5, 2.0])
    torch.testing.assert_close(
        distribution_focal_loss(logits, target, weight=weight, reduction="sum"), (expected * weight).sum()
    )
    torch.testing.assert_close(distribution_focal_loss(logits, target, reduction="mean"), expected.mean())


def test_dfl_clamps_targets_into_the_bins():
    logits, _, _ = dfl_case()
    at_edge = distribution_focal_loss(logits, torch.full((3,), 15.99))
    torch.testing.assert_close(distribution_focal_loss(logits, torch.full((3,), 16.0)), at_edge)
    torch.testing.assert_close(distribution_focal_loss(logits, torch.full((3,), 40.0)), at_edge)
    torch.testing.assert_close(
        distribution_focal_loss(logits, torch.full((3,), -2.0)), distribution_focal_loss(logits, torch.zeros(3))
    )


def test_dfl_finite_for_huge_logits_and_gradcheck():
    logits = torch.tensor([[1e4] + [-1e4] * 16, [-1e4] * 16 + [1e4]], requires_grad=True)
    loss = distribution_focal_loss(logits, torch.tensor([7.5, 0.2]))
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(logits.grad).all()

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 9, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(5, generator=g, dtype=torch.float64) * 8
    assert torch.autograd.gradcheck(lambda x: distribution_focal_loss(x, target, reduction="sum"), (logits,))


def test_integral_distance():
    reg_max = 16
    uniform = integral_distance(torch.zeros(2, 3, 4 * (reg_max + 1)))
    assert uniform.shape == (2, 3, 4)
    torch.testing.assert_close(uniform, torch.full((2, 3, 4), reg_max / 2))

    logits = torch.zeros(4, reg_max + 1)
    bins = torch.tensor([0, 5, 11, 16])
    logits[torch.arange(4), bins] = 1e4
    peaked = integral_distance(logits.flatten())
    assert peaked.shape == (4,)
    torch.testing.assert_close(peaked, bins.float())

    with pytest.raises(ValueError, match=r"last dimension of 4 \* \(reg_max \+ 1\), got shape \(5, 66\)"):
        integral_distance(torch.zeros(5, 66))


def test_giou_loss_matches_reference():
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 3.0, 8.0, 12.0], [0.0, 0.0, 4.0, 4.0]])
    gt = torch.tensor([[1.0, 1.0, 11.0, 11.0], [2.0, 3.0, 8.0, 12.0], [5.0, 5.0, 9.0, 9.0]])
    loss = box_iou_loss(pred, gt, kind="giou", reduction="none")
    torch.testing.assert_close(loss, torch.tensor([0.33585662, 0.0, 1.60493827]), rtol=1e-6, atol=1e-7)
