"""GFL V1 / V2 meta-architectures: head outputs, DGQP, box decoding, losses, V1 -> V2 weights."""

import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from torch import nn

from iou_aware.config import add_iou_aware_config
from iou_aware.modeling import GFL, GFLV2
from iou_aware.modeling.box_regression import boxes_to_distances, distances_to_boxes
from iou_aware.modeling.meta_arch.gfl import DistributionGuidedQualityPredictor


def _cfg(repo_root, name="gfl_slim_R_FPN"):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(f"{repo_root}/configs/Shapes/{name}.yaml")
    return cfg


def _inputs(with_gt=True, size=128):
    generator = torch.Generator().manual_seed(0)
    inputs = []
    for _ in range(2):
        instances = Instances((size, size))
        boxes = [[10.0, 12.0, 50.0, 60.0], [60.0, 64.0, 120.0, 110.0]] if with_gt else []
        instances.gt_boxes = Boxes(torch.tensor(boxes).reshape(-1, 4))
        instances.gt_classes = torch.tensor([0, 3] if with_gt else [], dtype=torch.int64)
        image = torch.randint(0, 256, (3, size, size), generator=generator).float()
        inputs.append({"image": image, "instances": instances, "height": size, "width": size})
    return inputs


@pytest.mark.parametrize("name, meta_arch", [("gfl_slim_R_FPN", GFL), ("gflv2_slim_R_FPN", GFLV2)])
def test_head_outputs_per_level(repo_root, name, meta_arch):
    model = build_model(_cfg(repo_root, name))
    assert type(model) is meta_arch
    features = [torch.zeros(2, 64, s, s) for s in (16, 8, 4, 2, 1)]
    outputs = model.head(features)
    assert len(outputs) == (3 if meta_arch is GFLV2 else 2)
    for level, feature in enumerate(features):
        size = feature.shape[-1]
        assert outputs[0][level].shape == (2, 4, size, size)  # 4 shape classes
        assert outputs[1][level].shape == (2, 4 * 17, size, size)  # 4 sides x bins 0..16
        if meta_arch is GFLV2:
            quality = outputs[2][level]
            assert quality.shape == (2, 1, size, size) and ((quality > 0) & (quality < 1)).all()


def test_box_decoding_by_hand():
    points = torch.tensor([[16.0, 24.0]])
    distances = torch.tensor([[4.0, 8.0, 12.0, 2.0]])  # l, t, r, b in px
    boxes = distances_to_boxes(points, distances)
    assert boxes.tolist() == [[12.0, 16.0, 28.0, 26.0]]
    assert torch.equal(boxes_to_distances(points, boxes), distances)


def test_dgqp_reads_the_top_probability_of_each_side():
    dgqp = DistributionGuidedQualityPredictor(reg_max=16, topk=4, hidden_dim=2)
    with torch.no_grad():
        dgqp.fc1.weight.zero_()
        dgqp.fc1.bias.zero_()
        dgqp.fc1.weight[0, 0] = 1.0  # hidden 0 = top-1 probability of side 0
        dgqp.fc1.weight[1, 4] = 1.0  # hidden 1 = mean of side 0's top-4
        dgqp.fc2.weight.zero_()
        dgqp.fc2.weight[0, 0] = 1.0
        dgqp.fc2.weight[0, 1] = 1.0
        dgqp.fc2.bias.zero_()
    logits = torch.zeros(1, 4 * 17, 1, 1)  # uniform: every probability 1/17
    expected = 1 / (1 + math.exp(-(1 / 17 + 1 / 17)))
    assert dgqp([logits])[0].item() == pytest.approx(expected)
    logits[0, 3] = 100.0  # side 0 concentrated on bin 3: top-1 = 1, mean of top-4 = 1/4
    quality = dgqp([logits, torch.zeros(1, 4 * 17, 2, 3)])  # levels are batched together
    assert quality[0].item() == pytest.approx(1 / (1 + math.exp(-1.25)), rel=1e-5)
    assert quality[1].shape == (1, 1, 2, 3) and torch.allclose(quality[1], torch.tensor(expected))


@pytest.mark.parametrize("detach_input", [False, True])
def test_dgqp_detach_input_stops_the_gradient_at_the_distributions_only(detach_input):
    torch.manual_seed(0)
    dgqp = DistributionGuidedQualityPredictor(reg_max=16, topk=4, hidden_dim=8, detach_input=detach_input)
    nn.init.normal_(dgqp.fc1.weight)
    nn.init.normal_(dgqp.fc2.weight)
    logits = torch.randn(2, 4 * 17, 3, 3, requires_grad=True)
    dgqp([logits])[0].sum().backward()
    assert dgqp.fc1.weight.grad.abs().sum() > 0  # the predictor trains either way
    assert (logits.grad is None) == detach_input  # the distributions only without detaching
    if not detach_input:
        assert logits.grad.abs().sum() > 0


def test_dgqp_detach_input_is_a_config_key(repo_root):
    cfg = _cfg(repo_root, "gflv2_slim_R_FPN")
    assert cfg.MODEL.GFL.DGQP_DETACH_INPUT is False  # the reference's behaviour
    cfg.MODEL.GFL.DGQP_DETACH_INPUT = True
    assert build_model(cfg).head.dgqp.detach_input is True


@pytest.mark.parametrize("name", ["gfl_slim_R_FPN", "gflv2_slim_R_FPN"])
def test_losses_are_finite_and_train_every_branch(repo_root, name):
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root, name))
    with EventStorage():
        losses = model(_inputs())
    assert set(losses) == {"loss_qfl", "loss_box_reg", "loss_dfl"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert model.head.bbox_pred.weight.grad.abs().sum() > 0
    assert model.head.scales.grad.abs().sum() > 0
    if model.head.dgqp is not None:  # QFL on sigma(cls) * quality trains DGQP, input not detached
        assert model.head.dgqp.fc1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["gfl_slim_R_FPN", "gflv2_slim_R_FPN"])
def test_images_without_ground_truth_train_with_finite_losses(repo_root, name):
    model = build_model(_cfg(repo_root, name))
    with EventStorage():
        losses = model(_inputs(with_gt=False))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_reg"].item() == 0 and losses["loss_dfl"].item() == 0
    sum(losses.values()).backward()


def test_inference_outputs_clipped_boxes_sorted_by_score(repo_root):
    cfg = _cfg(repo_root, "gflv2_slim_R_FPN")
    cfg.MODEL.GFL.SCORE_THRESH_TEST = 0.0
    model = build_model(cfg).eval()
    with torch.no_grad():
        detections = model(_inputs(with_gt=False))[0]["instances"]
    assert 0 < len(detections) <= 100
    boxes = detections.pred_boxes.tensor
    assert (boxes >= 0).all() and (boxes <= 128).all()
    assert torch.equal(detections.scores, detections.scores.sort(descending=True).values)


def test_v1_weights_load_into_v2_with_only_dgqp_new(repo_root):
    v1 = build_model(_cfg(repo_root, "gfl_slim_R_FPN"))
    v2 = build_model(_cfg(repo_root, "gflv2_slim_R_FPN"))
    missing = v2.load_state_dict(v1.state_dict(), strict=False).missing_keys
    assert sorted(missing) == [
        "head.dgqp.fc1.bias",
        "head.dgqp.fc1.weight",
        "head.dgqp.fc2.bias",
        "head.dgqp.fc2.weight",
    ]


def test_non_iou_box_loss_fails_naming_the_key(repo_root):
    cfg = _cfg(repo_root)
    cfg.MODEL.GFL.BOX_LOSS_TYPE = "smooth_l1"
    with pytest.raises(ValueError, match="MODEL.GFL.BOX_LOSS_TYPE"):
        build_model(cfg)


def test_the_focal_iou_coefficients_of_the_config_reach_the_box_loss(repo_root):
    """Focal-IoU = (1 - coef * IoU)^gamma * (1 - IoU): with MODEL.BOX_IOU_LOSS.FOCAL_IOU_COEF 0 it is
    the plain IoU loss, with the default 0.5 it is smaller (every factor 1 - 0.5 IoU < 1)."""

    def box_loss(kind, coef=None):
        cfg = _cfg(repo_root)
        cfg.MODEL.GFL.BOX_LOSS_TYPE = kind
        if coef is not None:
            cfg.MODEL.BOX_IOU_LOSS.FOCAL_IOU_COEF = coef
        torch.manual_seed(0)
        model = build_model(cfg)
        with EventStorage():
            return model(_inputs())["loss_box_reg"].item()

    iou = box_loss("iou")
    assert box_loss("focal_iou", coef=0.0) == pytest.approx(iou, rel=1e-6)
    assert box_loss("focal_iou") < iou


def test_iou_branch_is_enabled_on_gfl_by_one_config_key(repo_root):
    cfg = _cfg(repo_root, "gflv2_slim_R_FPN")
    cfg.MODEL.IOU_AWARE.ENABLED = True
    model = build_model(cfg)
    assert model.head.iou_pred is not None
    with EventStorage():
        losses = model(_inputs())
    assert torch.isfinite(losses["loss_iou"]) and losses["loss_iou"] > 0
    sum(losses.values()).backward()
    assert model.head.iou_pred.conv.weight.grad.abs().sum() > 0


def test_iou_branch_with_alpha_one_keeps_gfl_detections(repo_root):
    plain_cfg = _cfg(repo_root, "gfl_slim_R_FPN")
    plain_cfg.MODEL.GFL.SCORE_THRESH_TEST = 0.0
    torch.manual_seed(0)
    plain = build_model(plain_cfg).eval()
    branch_cfg = plain_cfg.clone()
    branch_cfg.MODEL.IOU_AWARE.ENABLED = True
    branch_cfg.MODEL.IOU_AWARE.SCORE_ALPHA = 1.0
    with_branch = build_model(branch_cfg).eval()
    assert with_branch.load_state_dict(plain.state_dict(), strict=False).missing_keys == [
        "head.iou_pred.conv.weight",
        "head.iou_pred.conv.bias",
    ]
    inputs = _inputs(with_gt=False)
    with torch.no_grad():
        expected, got = plain(inputs)[0]["instances"], with_branch(inputs)[0]["instances"]
    assert len(expected) > 0
    assert torch.equal(expected.pred_boxes.tensor, got.pred_boxes.tensor)
    assert torch.equal(expected.scores, got.scores)


def test_dgqp_bias_init_sets_the_initial_quality():
    """The quality starts at sigmoid(bias): 0.5 with the reference's 0; near 1 for the ablation."""
    import math

    from iou_aware.modeling.meta_arch import DistributionGuidedQualityPredictor

    logits = [torch.randn(2, 4 * 17, 5, 6)]
    for bias, expected in ((0.0, 0.5), (4.6, 1 / (1 + math.exp(-4.6)))):
        quality = DistributionGuidedQualityPredictor(16, bias_init=bias)(logits)[0]
        assert quality.shape == (2, 1, 5, 6)
        torch.testing.assert_close(quality, torch.full_like(quality, expected), atol=2e-3, rtol=0)
