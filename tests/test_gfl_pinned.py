"""GFL V1 / V2 pinned by hand-built numbers: losses, their normalizers and weights, assignment
bookkeeping and inference decoding.

Every test feeds hand-made head outputs and ground truth to the meta-architecture's own methods
(``label_anchors``, ``losses``, ``forward_inference``) and compares with values written out here:

* The side distributions put their mass on one or two bins (logit ``ln p`` there, -1e4 elsewhere,
  whose probability is exactly 0 in float32), so the decoded box, its IoU / GIoU with the GT and
  the DFL are known in closed form.
* The class logits are ``logit(p)`` of the probabilities written in the tables.
* The models use unusual loss weights (QFL 1.7, DFL 0.3, GIoU 2.5) and QFL beta 1.5, set through
  the config, so that a dropped or swapped weight changes the result.

References (GFL, https://arxiv.org/abs/2006.04388; GFL V2, https://arxiv.org/abs/2011.12885):

* loss_qfl = qfl_weight * sum QFL(p, y) / max(num_pos, 1), with p = sigmoid(logit) (V1) or
  sigmoid(logit) * DGQP quality (V2), and y = IoU(decoded box, GT) on the GT class column of a
  positive, 0 elsewhere; QFL(p, y) = BCE(p, y) * |y - p|^beta on every (point, class).
* loss_box_reg = box_loss_weight * sum w * (1 - GIoU) / max(sum w, 1);
  loss_dfl = dfl_weight * sum w * DFL over the 4 sides / 4 / max(sum w, 1), with w the detached
  max over classes of p of each positive; DFL(t) = -((yl + 1 - t) ln p_yl + (t - yl) ln p_yl+1),
  yl = floor(t), t the GT distance in strides.
* Inference: score p, box = point -/+ expected bin * stride, points with score <= 0.05 dropped.
"""

import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage

from iou_aware.model_zoo import get_config

NUM_CLASSES = 4  # the Shapes configs; label 4 is background
BINS = 17  # reg_max = 16
VERY_NEGATIVE = -1e4
QFL_WEIGHT, DFL_WEIGHT, BOX_LOSS_WEIGHT, QFL_BETA = 1.7, 0.3, 2.5, 1.5
STRIDES = [8, 16, 32, 64, 128]  # P3-P7


@pytest.fixture(scope="module")
def models(repo_root):
    """The slim GFL V1 and V2 of the Shapes configs, with the unusual loss weights."""
    built = {}
    for name in ("gfl_slim_R_FPN", "gflv2_slim_R_FPN"):
        cfg = get_config(f"Shapes/{name}.yaml")
        cfg.MODEL.GFL.QFL_WEIGHT = QFL_WEIGHT
        cfg.MODEL.GFL.DFL_WEIGHT = DFL_WEIGHT
        cfg.MODEL.GFL.BOX_LOSS_WEIGHT = BOX_LOSS_WEIGHT
        cfg.MODEL.GFL.QFL_BETA = QFL_BETA
        torch.manual_seed(0)
        built[name] = build_model(cfg).eval()
    assert built["gfl_slim_R_FPN"].anchor_generator.strides == STRIDES
    return {"v1": built["gfl_slim_R_FPN"], "v2": built["gflv2_slim_R_FPN"]}


def side_logits(*sides):
    """4 dicts {bin: probability} (l, t, r, b) -> (68,) logits: ln p on those bins, -1e4 elsewhere."""
    logits = torch.full((4, BINS), VERY_NEGATIVE)
    for side, probs in enumerate(sides):
        for b, p in probs.items():
            logits[side, b] = math.log(p)
    return logits.flatten()


def dfl(probs, t):
    """DFL of one side with the distribution {bin: p} and the target t (strides)."""
    yl = math.floor(t)
    return -((yl + 1 - t) * math.log(probs[yl]) + (t - yl) * math.log(probs[yl + 1]))


def qfl(p, y, beta=QFL_BETA):
    """Sum over all entries of BCE(p, y) * |y - p|^beta, p and y (R, K) float64."""
    return (-(y * p.log() + (1 - y) * (1 - p).log()) * (y - p).abs().pow(beta)).sum().item()


# The scene of the loss tests: one image, level P3 (stride 8) with points A = (12, 20) and
# G = (36, 20), level P4 (stride 16) with point B = (40, 40), levels P5-P7 empty.
# A is a positive of class 1, G background, B a positive of class 3.
POINTS = [[(12.0, 20.0), (36.0, 20.0)], [(40.0, 40.0)], [], [], []]
LABELS = [1, NUM_CLASSES, 3]
# A: expected sides (1.5, 1.25, 2.5, 1.75) strides = (12, 10, 20, 14) px -> box (0, 10, 32, 34).
SIDES_A = ({1: 0.5, 2: 0.5}, {1: 0.75, 2: 0.25}, {2: 0.5, 3: 0.5}, {1: 0.25, 2: 0.75})
GT_A = (2.0, 8.0, 30.0, 34.0)  # sides (10, 12, 18, 14) px = (1.25, 1.5, 2.25, 1.75) strides
TARGETS_A = (1.25, 1.5, 2.25, 1.75)
# B: expected sides (0.5, 1.5, 0.75, 1.5) strides = (8, 24, 12, 24) px -> box (32, 16, 52, 64).
SIDES_B = ({0: 0.5, 1: 0.5}, {1: 0.5, 2: 0.5}, {0: 0.25, 1: 0.75}, {1: 0.5, 2: 0.5})
GT_B = (32.0, 20.0, 52.0, 64.0)  # sides (8, 20, 12, 24) px = (0.5, 1.25, 0.75, 1.5) strides
TARGETS_B = (0.5, 1.25, 0.75, 1.5)
# IoU and GIoU of the decoded boxes with their GTs, by hand:
# A: areas 32 * 24 = 768 and 28 * 26 = 728, intersection 28 * 24 = 672, union 824, enclosing
#    box (0, 8, 32, 34) of area 832.  B: inside the decoded box, 20 * 44 / (20 * 48) = 11 / 12.
IOU_A, IOU_B = 672 / 824, 11 / 12
GIOU_LOSS_A, GIOU_LOSS_B = 1 - (672 / 824 - (832 - 824) / 832), 1 - 11 / 12
# DFL summed over the 4 sides, e.g. A's left side: t = 1.25 between bins 1 and 2 of p 0.5 each,
# -(0.75 ln 0.5 + 0.25 ln 0.5) = ln 2.
DFL_A = sum(dfl(p, t) for p, t in zip(SIDES_A, TARGETS_A))
DFL_B = sum(dfl(p, t) for p, t in zip(SIDES_B, TARGETS_B))
# Class probabilities of A, G, B. B's largest (0.6) is not on its GT class 3.
CLASS_PROBS = [[0.3, 0.8, 0.1, 0.5], [0.2, 0.4, 0.1, 0.05], [0.6, 0.1, 0.5, 0.4]]
QUALITY = [0.9, 0.5, 0.7]  # V2's DGQP output at A, G, B


def scene(class_probs=CLASS_PROBS, labels=LABELS, quality=None, requires_grad=False):
    """The hand-made arguments of ``GFL.losses`` and the leaf tensors behind ``pred``."""
    anchors = [
        Boxes(torch.tensor([[x - 4 * s, y - 4 * s, x + 4 * s, y + 4 * s] for x, y in pts]).reshape(-1, 4))
        for pts, s in zip(POINTS, STRIDES)
    ]
    leaves = {
        "logits": torch.logit(torch.tensor([class_probs])),  # (1, 3, K)
        "box_logits": torch.stack([side_logits(*SIDES_A), torch.zeros(4 * BINS), side_logits(*SIDES_B)])[None],
        "quality": None if quality is None else torch.tensor(quality)[None, :, None],
    }
    for leaf in leaves.values():
        if leaf is not None:
            leaf.requires_grad_(requires_grad)
    sizes = [len(pts) for pts in POINTS]
    pred = {name: None if leaf is None else list(leaf.split(sizes, dim=1)) for name, leaf in leaves.items()}
    pred["iou_logits"] = None
    gt_labels = [torch.tensor(labels)]
    gt_boxes = [torch.tensor([GT_A, (0.0, 0.0, 0.0, 0.0), GT_B])]
    return anchors, pred, gt_labels, gt_boxes, leaves


def losses(model, *args):
    with EventStorage():
        return model.losses(*args)


def quality_targets():
    """(3, K) QFL targets: the IoU on the GT class column of A (1) and B (3), 0 elsewhere."""
    y = torch.zeros(3, NUM_CLASSES, dtype=torch.float64)
    y[0, 1], y[2, 3] = IOU_A, IOU_B
    return y


# ---------------------------------------------------------------------------------------------
# Assignment bookkeeping


def test_label_anchors_gives_each_point_its_matched_gt_class_and_box(models, monkeypatch):
    model = models["v1"]
    anchors, *_ = scene()
    instances = Instances((64, 64))
    instances.gt_boxes = Boxes(torch.tensor([GT_A, GT_B]))
    instances.gt_classes = torch.tensor([1, 3])
    seen = {}

    def assigner(anchors_per_level, gt_boxes):  # G unmatched, A -> GT 0, B -> GT 1
        seen["levels"], seen["gt"] = anchors_per_level, gt_boxes
        return torch.tensor([0, -1, 1])

    monkeypatch.setattr(model, "assigner", assigner)
    (labels,), (boxes,) = model.label_anchors(anchors, [instances])
    assert [a.shape[0] for a in seen["levels"]] == [2, 1, 0, 0, 0]
    assert torch.equal(seen["gt"], instances.gt_boxes.tensor)
    assert labels.tolist() == [1, NUM_CLASSES, 3]  # background = num_classes
    assert boxes[0].tolist() == list(GT_A) and boxes[2].tolist() == list(GT_B)


# ---------------------------------------------------------------------------------------------
# GFL V1 losses


def test_v1_qfl_targets_the_iou_of_the_decoded_box_normalized_by_num_pos(models):
    # 2 positives; targets IoU_A = 672 / 824 (class 1) and IoU_B = 11 / 12 (class 3).
    expected = QFL_WEIGHT * qfl(torch.tensor(CLASS_PROBS, dtype=torch.float64), quality_targets()) / 2
    assert losses(models["v1"], *scene()[:4])["loss_qfl"].item() == pytest.approx(expected, rel=1e-5)


def test_v1_giou_loss_is_weighted_by_the_max_class_score_over_the_weight_sum(models):
    # w = 0.8 (A, class 1) and 0.6 (B, class 0, not its GT class 3); sum w = 1.4 > 1.
    expected = BOX_LOSS_WEIGHT * (0.8 * GIOU_LOSS_A + 0.6 * GIOU_LOSS_B) / 1.4
    assert losses(models["v1"], *scene()[:4])["loss_box_reg"].item() == pytest.approx(expected, rel=1e-5)


def test_v1_dfl_is_weighted_averaged_over_the_four_sides_over_the_weight_sum(models):
    # GT distances in strides: A (1.25, 1.5, 2.25, 1.75) at stride 8, B (0.5, 1.25, 0.75, 1.5) at 16.
    expected = DFL_WEIGHT * (0.8 * DFL_A + 0.6 * DFL_B) / 4 / 1.4
    assert losses(models["v1"], *scene()[:4])["loss_dfl"].item() == pytest.approx(expected, rel=1e-5)


def test_v1_weight_sum_below_one_is_clamped_to_one(models):
    # Max class scores 0.3 (A) and 0.2 (B): sum w = 0.5 -> normalizer 1.
    probs = [[0.3, 0.1, 0.1, 0.1], [0.2, 0.1, 0.1, 0.05], [0.1, 0.1, 0.2, 0.1]]
    out = losses(models["v1"], *scene(class_probs=probs)[:4])
    expected_box = BOX_LOSS_WEIGHT * (0.3 * GIOU_LOSS_A + 0.2 * GIOU_LOSS_B)
    expected_dfl = DFL_WEIGHT * (0.3 * DFL_A + 0.2 * DFL_B) / 4
    assert out["loss_box_reg"].item() == pytest.approx(expected_box, rel=1e-5)
    assert out["loss_dfl"].item() == pytest.approx(expected_dfl, rel=1e-5)


def test_v1_without_positives_qfl_is_normalized_by_one_and_box_losses_are_zero(models):
    background = [NUM_CLASSES] * 3
    out = losses(models["v1"], *scene(labels=background)[:4])
    zero_targets = torch.zeros(3, NUM_CLASSES, dtype=torch.float64)
    expected = QFL_WEIGHT * qfl(torch.tensor(CLASS_PROBS, dtype=torch.float64), zero_targets)
    assert out["loss_qfl"].item() == pytest.approx(expected, rel=1e-5)
    assert out["loss_box_reg"].item() == 0 and out["loss_dfl"].item() == 0


def test_v1_box_and_dfl_weights_are_constants(models):
    # The weights are detached scores: no gradient from the box losses to the class logits.
    *args, leaves = scene(requires_grad=True)
    out = losses(models["v1"], *args)
    (grad,) = torch.autograd.grad(out["loss_box_reg"] + out["loss_dfl"], leaves["logits"], allow_unused=True)
    assert grad is None or not grad.any()


def test_v1_qfl_target_is_a_constant(models):
    # The IoU target is computed on detached boxes: QFL does not train the box branch.
    *args, leaves = scene(requires_grad=True)
    out = losses(models["v1"], *args)
    (grad,) = torch.autograd.grad(out["loss_qfl"], leaves["box_logits"], allow_unused=True)
    assert grad is None or not grad.any()


# ---------------------------------------------------------------------------------------------
# GFL V2 losses: the score is sigmoid(logit) * DGQP quality


def joint_probs():
    return torch.tensor(CLASS_PROBS, dtype=torch.float64) * torch.tensor(QUALITY, dtype=torch.float64)[:, None]


def test_v2_qfl_scores_are_class_probability_times_quality(models):
    expected = QFL_WEIGHT * qfl(joint_probs(), quality_targets()) / 2
    out = losses(models["v2"], *scene(quality=QUALITY)[:4])
    assert out["loss_qfl"].item() == pytest.approx(expected, rel=1e-5)


def test_v2_box_and_dfl_weights_are_the_max_joint_score(models):
    # w = 0.8 * 0.9 = 0.72 (A) and 0.6 * 0.7 = 0.42 (B); sum w = 1.14 > 1.
    out = losses(models["v2"], *scene(quality=QUALITY)[:4])
    expected_box = BOX_LOSS_WEIGHT * (0.72 * GIOU_LOSS_A + 0.42 * GIOU_LOSS_B) / 1.14
    expected_dfl = DFL_WEIGHT * (0.72 * DFL_A + 0.42 * DFL_B) / 4 / 1.14
    assert out["loss_box_reg"].item() == pytest.approx(expected_box, rel=1e-5)
    assert out["loss_dfl"].item() == pytest.approx(expected_dfl, rel=1e-5)


def test_v2_box_and_dfl_weights_are_constants(models):
    *args, leaves = scene(quality=QUALITY, requires_grad=True)
    out = losses(models["v2"], *args)
    grads = torch.autograd.grad(
        out["loss_box_reg"] + out["loss_dfl"], [leaves["logits"], leaves["quality"]], allow_unused=True
    )
    assert all(g is None or not g.any() for g in grads)


# ---------------------------------------------------------------------------------------------
# Inference: P3 8 x 8, P4 4 x 4, P5 2 x 2, P6 and P7 1 x 1 on a 128 x 128 image. The anchors
# (DefaultAnchorGenerator's offset 0.5) put the point of (row i, column j) at
# ((j + 0.5) * stride, (i + 0.5) * stride).

SIZES = [8, 4, 2, 1, 1]


def peaked(l, t, r, b):
    """(68,) logits: each side has all its mass on one bin (logit 20, the others -20)."""
    logits = torch.full((4, BINS), -20.0)
    for side, b_ in enumerate((l, t, r, b)):
        logits[side, b_] = 20.0
    return logits.flatten()


def inference_outputs(with_quality):
    """Every class logit -20 (score ~2e-9) except the points set below; quality 0.5 everywhere."""
    logits = [torch.full((1, NUM_CLASSES, s, s), -20.0) for s in SIZES]
    box_logits = [torch.zeros(1, 4 * BINS, s, s) for s in SIZES]
    quality = [torch.full((1, 1, s, s), 0.5) for s in SIZES]
    # P4 (stride 16), row 2, column 3 -> point (56, 40); class 2; sides (2, 1, 3, 2) bins.
    logits[1][0, 2, 2, 3] = 1.0
    box_logits[1][0, :, 2, 3] = peaked(2, 1, 3, 2)
    quality[1][0, 0, 2, 3] = 0.8
    # P3 (stride 8), row 3, column 5 -> point (44, 28); class 0; sides (1, 2, 1, 3) bins.
    logits[0][0, 0, 3, 5] = 2.0
    box_logits[0][0, :, 3, 5] = peaked(1, 2, 1, 3)
    quality[0][0, 0, 3, 5] = 0.6
    # P3, row 6, column 1: score sigmoid(-3) = 0.047 <= 0.05, dropped.
    logits[0][0, 1, 6, 1] = -3.0
    # P5 (stride 32), row 1, column 1 -> point (48, 48): sigmoid(-1.5) = 0.18 kept by V1; V2 0.18 * 0.2 = 0.036 dropped.
    logits[2][0, 3, 1, 1] = -1.5
    box_logits[2][0, :, 1, 1] = peaked(1, 1, 1, 1)
    quality[2][0, 0, 1, 1] = 0.2
    return [logits, box_logits] + ([quality] if with_quality else [])


def infer(model, predictions):
    images = ImageList(torch.zeros(1, 3, 128, 128), [(128, 128)])
    features = [torch.zeros(1, 1, s, s) for s in SIZES]
    with torch.no_grad():
        return model.forward_inference(images, features, predictions)[0]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_v1_inference_decodes_expected_bins_times_stride_around_the_point(models):
    detections = infer(models["v1"], inference_outputs(with_quality=False))
    # (44, 28) -/+ (1, 2, 1, 3) * 8, (56, 40) -/+ (2, 1, 3, 2) * 16 and (48, 48) -/+ 1 * 32.
    torch.testing.assert_close(
        detections.pred_boxes.tensor,
        torch.tensor([[36.0, 12.0, 52.0, 52.0], [24.0, 24.0, 104.0, 72.0], [16.0, 16.0, 80.0, 80.0]]),
        rtol=0,
        atol=1e-4,
    )
    assert detections.pred_classes.tolist() == [0, 2, 3]


def test_v1_inference_scores_are_the_sigmoid_and_low_scores_are_dropped(models):
    detections = infer(models["v1"], inference_outputs(with_quality=False))
    # sigmoid(-3) = 0.047 is not above the 0.05 threshold: 3 detections, not 4.
    assert detections.scores.tolist() == pytest.approx([sigmoid(2.0), sigmoid(1.0), sigmoid(-1.5)], rel=1e-6)


def test_v2_inference_scores_are_sigmoid_times_quality(models):
    detections = infer(models["v2"], inference_outputs(with_quality=True))
    # 0.88 * 0.6 = 0.53 and 0.73 * 0.8 = 0.58; the P5 point 0.18 * 0.2 = 0.036 is dropped.
    assert detections.scores.tolist() == pytest.approx([sigmoid(1.0) * 0.8, sigmoid(2.0) * 0.6], rel=1e-6)
    assert detections.pred_classes.tolist() == [2, 0]
    expected_boxes = torch.tensor([[24.0, 24.0, 104.0, 72.0], [36.0, 12.0, 52.0, 52.0]])
    torch.testing.assert_close(detections.pred_boxes.tensor, expected_boxes, rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# GFL with the IoU-aware branch (MODEL.IOU_AWARE.ENABLED)


def test_gfl_iou_branch_loss_is_weighted_bce_against_the_decoded_box_iou_over_num_pos(models):
    # loss_iou = LOSS_WEIGHT * sum over positives BCE(sigmoid(iou_logit), IoU(decoded, GT)) / num_pos,
    # IoU logits 0.4 (A) and -1.2 (B); G is background and does not count.
    model = models["v1"]
    anchors, pred, gt_labels, gt_boxes, _ = scene()
    iou_logits = torch.tensor([0.4, 3.0, -1.2])[None, :, None]  # (1, 3, 1)
    pred["iou_logits"] = list(iou_logits.split([len(p) for p in POINTS], dim=1))

    def bce(logit, target):
        p = 1 / (1 + math.exp(-logit))
        return -(target * math.log(p) + (1 - target) * math.log(1 - p))

    expected = 2.7 * (bce(0.4, IOU_A) + bce(-1.2, IOU_B)) / 2
    previous = model.iou_loss_weight
    model.iou_loss_weight = 2.7
    try:
        out = losses(model, anchors, pred, gt_labels, gt_boxes)
    finally:
        model.iou_loss_weight = previous
    assert out["loss_iou"].item() == pytest.approx(expected, rel=1e-5)
