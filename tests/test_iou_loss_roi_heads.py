"""Faster R-CNN's box predictor with the package's box losses (IoULossROIHeads)."""

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform

from iou_aware.config import add_iou_aware_config
from iou_aware.modeling import IoULossFastRCNNOutputLayers, IoULossROIHeads


def _predictor(loss_type):
    return IoULossFastRCNNOutputLayers(
        input_shape=ShapeSpec(channels=8),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        num_classes=2,
        cls_agnostic_bbox_reg=True,
        box_reg_loss_type=loss_type,
    )


# Proposal 0 is foreground with IoU 1/2 against its GT, proposal 1 is background (class 2).
PROPOSALS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
GT_BOXES = torch.tensor([[0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 1.0, 1.0]])
GT_CLASSES = torch.tensor([1, 2])


@pytest.mark.parametrize(
    "loss_type, per_box",
    [
        ("focal_iou", (1 - 0.5 * 0.5) ** 2 * (1 - 0.5)),  # (1 - IoU/2)^2 (1 - IoU) = 0.28125
        ("iou", 0.5),
        ("giou", 0.5),  # the enclosing box is the GT box itself
    ],
)
def test_box_loss_on_decoded_boxes_matches_hand_computed_value(loss_type, per_box):
    deltas = torch.zeros(2, 4, requires_grad=True)  # decoded boxes = proposals
    loss = _predictor(loss_type).box_reg_loss(PROPOSALS, GT_BOXES, deltas, GT_CLASSES)
    assert loss.item() == pytest.approx(per_box / 2)  # normalized by all R = 2 proposals, as stock
    loss.backward()
    assert deltas.grad[1].abs().sum() == 0 and deltas.grad[0].abs().sum() > 0


def test_unknown_loss_type_fails_naming_the_config_key():
    with pytest.raises(ValueError, match="MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE"):
        _predictor("l2")


def test_roi_heads_use_it_when_selected_by_config(repo_root):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(f"{repo_root}/configs/Shapes/faster_rcnn_slim_R_FPN_focal_iou.yaml")
    cfg.MODEL.BOX_IOU_LOSS.FOCAL_IOU_COEF = 0.25
    model = build_model(cfg)
    assert isinstance(model.roi_heads, IoULossROIHeads)
    predictor = model.roi_heads.box_predictor
    assert isinstance(predictor, IoULossFastRCNNOutputLayers)
    assert predictor.box_reg_loss_type == "focal_iou" and predictor.iou_loss_options["focal_iou_coef"] == 0.25
