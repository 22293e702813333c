"""IoULossROIHeads pinned by exact values (iou_aware.modeling.roi_heads.iou_loss_roi_heads).

The box predictor of IoULossROIHeads is Detectron2's FastRCNNOutputLayers with any box loss of
the package. Specification (the module docs and Detectron2's fast_rcnn.py):

* class-specific regression (Detectron2's default MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG False,
  kept by the shipped configs): each foreground proposal's loss reads the 4 deltas of its GT
  class only;
* the IoU-family loss is computed on the boxes decoded by Box2BoxTransform with
  MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS, with the focal coefficients of MODEL.BOX_IOU_LOSS;
* it is summed over the foreground proposals and divided by the number of ALL proposals
  (foreground and background), as stock, then multiplied by MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT;
* with "smooth_l1" (or Detectron2's own "giou") the losses are Detectron2's.

Predictions and proposals are hand-built; each reference is computed with Detectron2's
Box2BoxTransform / FastRCNNOutputLayers and torchvision, independently of the package.
"""

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads import FastRCNNOutputLayers
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from torchvision.ops import box_iou, generalized_box_iou_loss

from iou_aware.model_zoo import get_config
from iou_aware.modeling import IoULossROIHeads

NUM_CLASSES = 3  # background = 3
GARBAGE_DELTA = 2.5  # the deltas of every class but the GT class: would move the box far away


def _cfg(repo_root, **overrides):
    cfg = get_config("Shapes/faster_rcnn_slim_R_FPN_focal_iou.yaml")
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = NUM_CLASSES
    cfg.merge_from_list([item for key, value in overrides.items() for item in (key, value)])
    return cfg


def _predictor(cfg):
    """The box predictor of the model the config builds (through IoULossROIHeads)."""
    model = build_model(cfg)
    assert isinstance(model.roi_heads, IoULossROIHeads)
    return model.roi_heads.box_predictor


def _proposals(boxes, gt_boxes, gt_classes):
    instances = Instances((64, 64))
    instances.proposal_boxes = Boxes(torch.tensor(boxes))
    instances.gt_boxes = Boxes(torch.tensor(gt_boxes))
    instances.gt_classes = torch.tensor(gt_classes)
    return instances


# Two images, R = 6 proposals: 4 foreground of classes 0, 1, 2, 1 and 2 background (class 3, whose
# gt_boxes are placeholders, as Detectron2's ROI heads fill them).
PROPOSALS = [
    _proposals(
        [[0.0, 0.0, 20.0, 20.0], [10.0, 10.0, 40.0, 30.0], [30.0, 5.0, 60.0, 35.0], [40.0, 40.0, 60.0, 60.0]],
        [[2.0, 1.0, 22.0, 19.0], [8.0, 12.0, 42.0, 34.0], [28.0, 8.0, 58.0, 40.0], [0.0, 0.0, 1.0, 1.0]],
        [0, 1, 2, 3],
    ),
    _proposals(
        [[5.0, 5.0, 25.0, 45.0], [0.0, 40.0, 10.0, 50.0]],
        [[6.0, 4.0, 26.0, 40.0], [0.0, 0.0, 1.0, 1.0]],
        [1, 3],
    ),
]
ALL_PROPOSAL_BOXES = torch.cat([p.proposal_boxes.tensor for p in PROPOSALS])
ALL_GT_BOXES = torch.cat([p.gt_boxes.tensor for p in PROPOSALS])
ALL_GT_CLASSES = torch.cat([p.gt_classes for p in PROPOSALS])
FOREGROUND = ALL_GT_CLASSES < NUM_CLASSES
NUM_PROPOSALS = len(ALL_GT_CLASSES)  # 6: the normalizer of the box loss


def _predictions(class_agnostic=False, near_gt=False, seed=0):
    """Class logits (R, K + 1) and deltas (R, 4) or (R, 4 K). The GT class's deltas are small
    (or, with near_gt, the GT deltas + 0.05 noise, so that smooth L1 sees both of its regimes);
    every other class's are GARBAGE_DELTA."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(NUM_PROPOSALS, NUM_CLASSES + 1, generator=g)
    gt_class_deltas = 0.1 * torch.randn(NUM_PROPOSALS, 4, generator=g)
    if near_gt:
        coder = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
        gt_class_deltas = coder.get_deltas(ALL_PROPOSAL_BOXES, ALL_GT_BOXES) + 0.05 * gt_class_deltas
    if class_agnostic:
        return scores, gt_class_deltas
    deltas = torch.full((NUM_PROPOSALS, NUM_CLASSES, 4), GARBAGE_DELTA)
    fg = FOREGROUND.nonzero()[:, 0]
    deltas[fg, ALL_GT_CLASSES[fg]] = gt_class_deltas[fg]
    return scores, deltas.view(NUM_PROPOSALS, 4 * NUM_CLASSES)


def _gt_class_deltas(deltas):
    """(R, 4 K) -> the foreground proposals' (F, 4) deltas of their GT class, by hand: class c's
    deltas are columns 4c ... 4c + 3 (Detectron2's layout)."""
    classes = ALL_GT_CLASSES.tolist()
    return torch.stack([deltas[i, 4 * c : 4 * c + 4] for i, c in enumerate(classes) if c < NUM_CLASSES])


def _decoded_ious(deltas_fg, cfg):
    """IoU (torchvision) of the foreground proposals' decoded boxes (Detectron2's Box2BoxTransform
    with MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS, shipped 10, 10, 5, 5) with their GT."""
    coder = Box2BoxTransform(weights=cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS)
    boxes = coder.apply_deltas(deltas_fg, ALL_PROPOSAL_BOXES[FOREGROUND])
    return box_iou(boxes, ALL_GT_BOXES[FOREGROUND]).diagonal(), boxes


def _losses(predictor, predictions):
    with EventStorage():
        return predictor.losses(predictions, PROPOSALS)


def test_shipped_configs_regress_class_specific_deltas(repo_root):
    # Detectron2's default (config/defaults.py): one set of 4 deltas per foreground class.
    for name in ("Shapes/faster_rcnn_slim_R_FPN_focal_iou", "COCO-Detection/faster_rcnn_R_50_FPN_1x_focal_iou"):
        cfg = get_config(f"{name}.yaml")
        assert cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG is False, name
        assert cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE == "focal_iou", name
    assert _predictor(_cfg(repo_root)).bbox_pred.out_features == 4 * NUM_CLASSES


def test_class_specific_focal_iou_loss_reads_only_the_gt_class_deltas(repo_root):
    # loss_box_reg = weight * sum_fg (1 - 0.5 IoU)^2 (1 - IoU) / R (iou_losses.py's focal_iou with
    # MODEL.BOX_IOU_LOSS defaults, IoU of the GT class's decoded box); the other classes' deltas
    # are garbage and must not count.
    cfg = _cfg(repo_root, **{"MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": 3.7})
    scores, deltas = _predictions()
    iou, _ = _decoded_ious(_gt_class_deltas(deltas), cfg)
    assert 0.3 < iou.min() and iou.max() < 0.95  # the GT class's boxes are fair, not perfect
    expected = 3.7 * ((1 - 0.5 * iou) ** 2 * (1 - iou)).sum() / NUM_PROPOSALS
    got = _losses(_predictor(cfg), (scores, deltas))
    torch.testing.assert_close(got["loss_box_reg"], expected, rtol=1e-5, atol=0)


def test_box_loss_is_normalized_by_all_proposals_and_ignores_background_deltas(repo_root):
    # Doubling the background proposals (R 6 -> 8, foreground unchanged) scales the loss by 6 / 8
    # (Detectron2's FastRCNNOutputLayers.box_reg_loss normalization), whatever their deltas.
    cfg = _cfg(repo_root)
    predictor = _predictor(cfg)
    scores, deltas = _predictions()
    base = _losses(predictor, (scores, deltas))["loss_box_reg"]
    extra = _proposals([[1.0, 1.0, 9.0, 9.0], [50.0, 0.0, 60.0, 12.0]], [[0.0, 0.0, 1.0, 1.0]] * 2, [3, 3])
    more_scores = torch.cat([scores, torch.zeros(2, NUM_CLASSES + 1)])
    more_deltas = torch.cat([deltas, torch.full((2, 4 * NUM_CLASSES), GARBAGE_DELTA)])
    with EventStorage():
        more = predictor.losses((more_scores, more_deltas), PROPOSALS + [extra])["loss_box_reg"]
    torch.testing.assert_close(more, base * NUM_PROPOSALS / (NUM_PROPOSALS + 2), rtol=1e-6, atol=0)


def test_box_loss_weight_is_the_config_value_and_loss_cls_is_unweighted(repo_root):
    # MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT multiplies loss_box_reg only; loss_cls is
    # F.cross_entropy (mean over R) as in Detectron2.
    predictions = _predictions()
    unit = _losses(_predictor(_cfg(repo_root, **{"MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": 1.0})), predictions)
    weighted = _losses(_predictor(_cfg(repo_root, **{"MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": 3.7})), predictions)
    torch.testing.assert_close(weighted["loss_box_reg"], 3.7 * unit["loss_box_reg"], rtol=1e-6, atol=0)
    cross_entropy = F.cross_entropy(predictions[0], ALL_GT_CLASSES)
    torch.testing.assert_close(weighted["loss_cls"], cross_entropy, rtol=1e-6, atol=0)
    torch.testing.assert_close(unit["loss_cls"], cross_entropy, rtol=1e-6, atol=0)


def test_focal_coefficients_are_the_config_values(repo_root):
    # MODEL.BOX_IOU_LOSS.FOCAL_IOU_COEF 0.3, FOCAL_GAMMA 1.5: per box (1 - 0.3 IoU)^1.5 (1 - IoU).
    cfg = _cfg(
        repo_root,
        **{
            "MODEL.BOX_IOU_LOSS.FOCAL_IOU_COEF": 0.3,
            "MODEL.BOX_IOU_LOSS.FOCAL_GAMMA": 1.5,
            "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": 1.0,
        },
    )
    scores, deltas = _predictions()
    iou, _ = _decoded_ious(_gt_class_deltas(deltas), cfg)
    expected = ((1 - 0.3 * iou) ** 1.5 * (1 - iou)).sum() / NUM_PROPOSALS
    torch.testing.assert_close(_losses(_predictor(cfg), (scores, deltas))["loss_box_reg"], expected, rtol=1e-5, atol=0)


def test_class_agnostic_iou_loss_reads_the_single_delta_set(repo_root):
    # CLS_AGNOSTIC_BBOX_REG True: deltas (R, 4), one set per proposal.
    cfg = _cfg(
        repo_root,
        **{"MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": True, "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": 1.0},
    )
    scores, deltas = _predictions(class_agnostic=True)
    iou, _ = _decoded_ious(deltas[FOREGROUND], cfg)
    expected = ((1 - 0.5 * iou) ** 2 * (1 - iou)).sum() / NUM_PROPOSALS
    torch.testing.assert_close(_losses(_predictor(cfg), (scores, deltas))["loss_box_reg"], expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("class_agnostic", [False, True], ids=["class_specific", "class_agnostic"])
def test_smooth_l1_setting_equals_detectron2_fast_rcnn_losses(repo_root, class_agnostic):
    # Reference: Detectron2's FastRCNNOutputLayers.losses, same config (beta 0.25, weight 2.0).
    cfg = _cfg(
        repo_root,
        **{
            "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE": "smooth_l1",
            "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": 0.25,
            "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": 2.0,
            "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": class_agnostic,
        },
    )
    predictions = _predictions(class_agnostic=class_agnostic, near_gt=True)
    stock = FastRCNNOutputLayers(cfg, ShapeSpec(channels=256))
    expected = _losses(stock, predictions)
    got = _losses(_predictor(cfg), predictions)
    assert set(got) == set(expected) == {"loss_cls", "loss_box_reg"}
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=0, msg=name)
    stock.smooth_l1_beta = 0.0  # the beta matters on these deltas: the check above pins it
    assert abs(_losses(stock, predictions)["loss_box_reg"] - expected["loss_box_reg"]) > 1e-3


def test_giou_setting_equals_detectron2_and_torchvision_giou_loss(repo_root):
    # References: Detectron2's FastRCNNOutputLayers with "giou" (fvcore's giou_loss) and
    # torchvision's generalized_box_iou_loss on the GT class's decoded boxes, summed, / R.
    cfg = _cfg(
        repo_root, **{"MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE": "giou", "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT": 1.0}
    )
    predictions = _predictions()
    got = _losses(_predictor(cfg), predictions)["loss_box_reg"]
    stock = _losses(FastRCNNOutputLayers(cfg, ShapeSpec(channels=256)), predictions)["loss_box_reg"]
    _, boxes = _decoded_ious(_gt_class_deltas(predictions[1]), cfg)
    by_hand = generalized_box_iou_loss(boxes, ALL_GT_BOXES[FOREGROUND], reduction="sum") / NUM_PROPOSALS
    torch.testing.assert_close(got, stock, rtol=1e-5, atol=0)
    torch.testing.assert_close(got, by_hand, rtol=1e-5, atol=0)


def test_one_proposal_is_normalized_by_one_as_detectron2(repo_root):
    # Reference: Detectron2's FastRCNNOutputLayers.box_reg_loss divides by max(R, 1); with R = 1 the
    # loss is the proposal's own smooth L1 (a normalizer of 2 would halve it).
    cfg = _cfg(
        repo_root, **{"MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE": "smooth_l1", "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA": 0.25}
    )
    stock = FastRCNNOutputLayers(cfg, ShapeSpec(channels=256))
    ours = _predictor(cfg)
    proposal, gt = ALL_PROPOSAL_BOXES[:1], ALL_GT_BOXES[:1]
    deltas = torch.tensor([[0.3, -0.2, 0.1, 0.25] * NUM_CLASSES])
    classes = ALL_GT_CLASSES[:1]
    expected = stock.box_reg_loss(proposal, gt, deltas, classes)
    assert expected.item() > 0
    torch.testing.assert_close(ours.box_reg_loss(proposal, gt, deltas, classes), expected, rtol=1e-6, atol=0)


def test_rotated_boxes_are_refused_by_name(repo_root):
    predictor = _predictor(_cfg(repo_root))
    with pytest.raises(ValueError, match="IoULossFastRCNNOutputLayers supports axis-aligned boxes only"):
        predictor.box_reg_loss(
            torch.zeros(1, 5), torch.zeros(1, 5), torch.zeros(1, 5), torch.zeros(1, dtype=torch.int64)
        )
