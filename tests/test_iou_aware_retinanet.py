"""IoU-aware RetinaNet: head shapes, L_IoU, gradient paths, the confidence S, and stock parity."""

import math

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from torchvision.ops import box_iou

from iou_aware.config import add_iou_aware_config
from iou_aware.modeling import IoUAwareRetinaNet, detection_confidence, iou_prediction_loss


def _cfg(repo_root, meta_arch="IoUAwareRetinaNet", **overrides):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(f"{repo_root}/configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml")
    cfg.MODEL.META_ARCHITECTURE = meta_arch
    for key, value in overrides.items():
        node = cfg
        *path, leaf = key.split(".")
        for part in path:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return cfg


def _inputs(num_images=2, size=96, with_gt=True):
    generator = torch.Generator().manual_seed(0)
    inputs = []
    for i in range(num_images):
        instances = Instances((size, size))
        if with_gt:
            instances.gt_boxes = Boxes(torch.tensor([[8.0, 10.0, 40.0, 50.0], [50.0, 30.0, 90.0, 94.0]]))
            instances.gt_classes = torch.tensor([0, 2])
        else:
            instances.gt_boxes = Boxes(torch.zeros(0, 4))
            instances.gt_classes = torch.zeros(0, dtype=torch.int64)
        image = torch.randint(0, 256, (3, size, size), generator=generator).float()
        inputs.append({"image": image, "instances": instances, "height": size, "width": size})
    return inputs


def test_head_outputs_one_iou_map_per_anchor_and_level(repo_root):
    model = build_model(_cfg(repo_root))
    features = [torch.zeros(2, 64, s, s) for s in (16, 8, 4, 2, 1)]
    logits, deltas, ious = model.head(features)
    num_anchors = model.anchor_generator.num_cell_anchors[0]
    assert num_anchors == 9  # 3 sizes x 3 aspect ratios per level (configs/Base-Shapes.yaml)
    for feature, lg, dl, io in zip(features, logits, deltas, ious):
        size = feature.shape[-1]
        assert lg.shape == (2, num_anchors * 4, size, size)
        assert dl.shape == (2, num_anchors * 4, size, size)
        assert io.shape == (2, num_anchors, size, size)


def test_iou_loss_is_the_bce_against_the_box_iou():
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    gt = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 0.0, 15.0, 10.0]])  # IoU 1/2 and 1/3
    logits = torch.tensor([0.0, 1.0])
    # By hand: BCE(sigmoid(0), 1/2) = ln 2; BCE(sigmoid(1), 1/3) = -(ln s(1) / 3 + 2 ln(1 - s(1)) / 3).
    s1 = 1 / (1 + math.exp(-1))
    expected = math.log(2) - (math.log(s1) / 3 + 2 * math.log(1 - s1) / 3)
    assert iou_prediction_loss(logits, pred, gt).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.673076, abs=1e-6)


@pytest.mark.parametrize("detach", [False, True])
def test_iou_loss_trains_box_regression_unless_detached(repo_root, detach):
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root, **{"MODEL.IOU_AWARE.DETACH_TARGET": detach}))
    with EventStorage():
        losses = model(_inputs())
    losses["loss_iou"].backward()
    grad = model.head.bbox_pred.weight.grad
    reaches_box_output = grad is not None and bool(grad.abs().sum() > 0)
    assert reaches_box_output is (not detach)
    assert model.head.iou_pred.conv.weight.grad.abs().sum() > 0


def test_detection_confidence_matches_hand_computed_values():
    p = torch.tensor([[0.64, 0.25]])
    iou = torch.tensor([0.81])
    assert detection_confidence(p, iou, 0.5).tolist()[0] == pytest.approx([0.72, 0.45])  # sqrt(p * IoU)
    assert detection_confidence(p, iou, 1.0).tolist()[0] == pytest.approx([0.64, 0.25])
    assert detection_confidence(p, iou, 0.0).tolist()[0] == pytest.approx([0.81, 0.81])
    assert detection_confidence(p, iou, 0.5, mode="product").tolist()[0] == pytest.approx([0.5184, 0.2025])


def test_alpha_one_reproduces_stock_retinanet_detections(repo_root, monkeypatch):
    """Alpha 1 ranks by p alone. Every dense head here decodes through one path that clips the
    boxes to the image before NMS; stock RetinaNet clips only after NMS, so the reference is stock
    RetinaNet with its NMS run on clipped boxes (96 x 96 px images)."""
    from detectron2.layers import batched_nms
    from detectron2.modeling.meta_arch import retinanet

    def nms_on_clipped_boxes(boxes, scores, idxs, threshold):
        clipped = Boxes(boxes.clone())
        clipped.clip((96, 96))
        return batched_nms(clipped.tensor, scores, idxs, threshold)

    monkeypatch.setattr(retinanet, "batched_nms", nms_on_clipped_boxes)
    overrides = {"MODEL.RETINANET.SCORE_THRESH_TEST": 0.02, "MODEL.IOU_AWARE.SCORE_ALPHA": 1.0}
    torch.manual_seed(0)
    stock = build_model(_cfg(repo_root, meta_arch="RetinaNet", **overrides)).eval()
    with torch.no_grad():  # spread the class scores so that there is something to rank
        stock.head.cls_score.bias.normal_(-3.0, 1.0)
        stock.head.cls_score.weight.normal_(0, 0.05)
    ours = build_model(_cfg(repo_root, **overrides)).eval()
    missing = ours.load_state_dict(stock.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["head.iou_pred.conv.bias", "head.iou_pred.conv.weight"]
    inputs = _inputs(with_gt=False)
    with torch.no_grad():
        expected, got = stock(inputs), ours(inputs)
    for e, g in zip(expected, got):
        e, g = e["instances"], g["instances"]
        assert len(e) > 10
        assert (e.pred_boxes.tensor == 0).any()  # some boxes were clipped
        assert torch.equal(e.pred_boxes.tensor, g.pred_boxes.tensor)
        assert torch.equal(e.scores, g.scores)
        assert torch.equal(e.pred_classes, g.pred_classes)


def test_stock_checkpoint_loads_with_only_the_iou_conv_new(repo_root, tmp_path):
    stock = build_model(_cfg(repo_root, meta_arch="RetinaNet"))
    DetectionCheckpointer(stock, save_dir=str(tmp_path)).save("stock")
    ours = build_model(_cfg(repo_root))
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    DetectionCheckpointer(ours).load(str(tmp_path / "stock.pth"))  # the public API, as --eval-only / MODEL.WEIGHTS
    stock_state, loaded = stock.state_dict(), ours.state_dict()
    assert sorted(set(loaded) - set(stock_state)) == ["head.iou_pred.conv.bias", "head.iou_pred.conv.weight"]
    assert set(stock_state) <= set(loaded)
    for name, value in loaded.items():
        expected = stock_state[name] if name in stock_state else before[name]  # the IoU conv keeps its init
        torch.testing.assert_close(value, expected, msg=name)


def test_images_without_ground_truth_train_with_finite_losses(repo_root):
    model = build_model(_cfg(repo_root))
    with EventStorage():
        losses = model(_inputs(with_gt=False))
    total = sum(losses.values())
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_iou"].item() == 0 and losses["loss_box_reg"].item() == 0
    total.backward()


def test_upper_bound_analysis_ranks_by_the_true_iou_with_the_best_gt(repo_root):
    from iou_aware.evaluation import GroundTruthIoUModel

    cfg = _cfg(repo_root, **{"MODEL.RETINANET.SCORE_THRESH_TEST": 0.0})
    model = build_model(cfg).eval()
    inputs = _inputs(num_images=1)
    with torch.no_grad():
        predicted = model(inputs)[0]["instances"]
        detections = GroundTruthIoUModel(model)(inputs)[0]["instances"]
    assert not model.training and not torch.allclose(predicted.pred_ious[:5], detections.pred_ious[:5])
    gt = inputs[0]["instances"].gt_boxes.tensor
    true_iou = box_iou(detections.pred_boxes.tensor, gt).max(dim=1).values
    assert len(detections) > 0
    assert torch.allclose(detections.pred_ious, true_iou, atol=1e-5)
    expected = (detections.cls_scores * detections.pred_ious).sqrt()
    assert torch.allclose(detections.scores, expected, atol=1e-6)
    with pytest.raises(TypeError, match="needs an IoUAwareRetinaNet"):
        GroundTruthIoUModel(build_model(_cfg(repo_root, meta_arch="RetinaNet")))
    with pytest.raises(ValueError, match="build_annotated_test_mapper"):
        GroundTruthIoUModel(model)([{"image": inputs[0]["image"]}])


def test_bad_settings_fail_naming_the_config_key(repo_root):
    with pytest.raises(ValueError, match="MODEL.IOU_AWARE.SCORE_ALPHA"):
        build_model(_cfg(repo_root, **{"MODEL.IOU_AWARE.SCORE_ALPHA": 1.5}))
    with pytest.raises(ValueError, match="MODEL.RETINANET.BBOX_REG_LOSS_TYPE"):
        build_model(_cfg(repo_root, **{"MODEL.RETINANET.BBOX_REG_LOSS_TYPE": "l2"}))


def test_is_registered_and_exported():
    from detectron2.modeling import META_ARCH_REGISTRY

    assert META_ARCH_REGISTRY.get("IoUAwareRetinaNet") is IoUAwareRetinaNet
