"""IoU-aware RetinaNet pinned by exact values (iou_aware.modeling.meta_arch.iou_aware_retinanet,
iou_aware.modeling.iou_branch).

Each test states one behaviour and checks it against a reference computed independently of the
package: Detectron2's stock RetinaNet on the same weights and inputs, or torch / torchvision by
hand on hand-built head outputs. Specification (the paper, Wu, Li, Wang, and the module docs):

* loss_cls and loss_box_reg are stock RetinaNet's (focal loss, smooth L1 with
  MODEL.RETINANET.SMOOTH_L1_LOSS_BETA), divided by stock's EMA normalizer;
* loss_iou = MODEL.IOU_AWARE.LOSS_WEIGHT * sum over positives of
  BCE(iou_logit, IoU(decoded box, matched GT)) / the same normalizer; the target carries gradient
  into the box regression unless MODEL.IOU_AWARE.DETACH_TARGET;
* the IoU logits come from a conv on the box tower;
* inference ranks by S = p^alpha * IoU^(1 - alpha): the score threshold, the per-level top-k,
  class-wise NMS and the per-image cap all use S, and the output ``scores`` are S.

The slim Shapes config (configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml) on 64 px images keeps
every test fast: FPN levels P3-P7 are then 8, 4, 2, 1 and 1 cells wide, 9 anchors per cell.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import build_model
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.meta_arch.retinanet import RetinaNet
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import EventStorage
from torchvision.ops import box_iou

from iou_aware.model_zoo import get_config

IMAGE_SIZE = 64
LEVEL_SIZES = (8, 4, 2, 1, 1)  # P3-P7 of a 64 px image (strides 8, 16, 32; P6, P7 one cell)
NUM_CLASSES = 4  # configs/Shapes/retinanet_slim_R_FPN.yaml
NUM_ANCHORS = 9  # 3 sizes x 3 aspect ratios (configs/Base-Shapes.yaml)
CHANNELS = 64  # MODEL.FPN.OUT_CHANNELS of configs/Base-Shapes.yaml


def _first_step_normalizer(num_pos):
    """The normalizer of a model's first training step: Detectron2's DenseDetector._ema_update(
    "loss_normalizer", max(num_pos, 1), initial_value=100, momentum=0.9)."""
    return 0.9 * 100 + 0.1 * max(num_pos, 1)


def _cfg(repo_root, meta_arch="IoUAwareRetinaNet", **overrides):
    cfg = get_config("Shapes/iou_aware_retinanet_slim_R_FPN.yaml")
    cfg.MODEL.META_ARCHITECTURE = meta_arch
    cfg.merge_from_list([item for key, value in overrides.items() for item in (key, value)])
    return cfg


def _model(repo_root, **overrides):
    torch.manual_seed(0)
    return build_model(_cfg(repo_root, **overrides))


def _gt(boxes, classes):
    instances = Instances((IMAGE_SIZE, IMAGE_SIZE))
    instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    instances.gt_classes = torch.tensor(classes)
    return instances


# Two images, each with a small and a large object: positives on P3 and on P4 / P5.
GT_INSTANCES = [
    _gt([[4.0, 6.0, 30.0, 28.0], [24.0, 18.0, 62.0, 60.0]], [0, 3]),
    _gt([[10.0, 12.0, 26.0, 44.0], [34.0, 2.0, 60.0, 30.0]], [2, 1]),
]


def _images():
    generator = torch.Generator().manual_seed(0)
    return [
        {"image": torch.randint(0, 256, (3, IMAGE_SIZE, IMAGE_SIZE), generator=generator).float(), "instances": gt}
        for gt in GT_INSTANCES
    ]


def _features(num_images):
    """Zero FPN features: the anchor generator reads only their shapes."""
    return [torch.zeros(num_images, CHANNELS, s, s) for s in LEVEL_SIZES]


def _random_head_outputs(num_images, seed=0):
    """Hand-built head outputs in the head's layout: per level (N, A*K, H, W) class logits,
    (N, A*4, H, W) deltas and (N, A, H, W) IoU logits."""
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randn(num_images, NUM_ANCHORS * NUM_CLASSES, s, s, generator=g) for s in LEVEL_SIZES]
    deltas = [0.2 * torch.randn(num_images, NUM_ANCHORS * 4, s, s, generator=g) for s in LEVEL_SIZES]
    iou_logits = [torch.randn(num_images, NUM_ANCHORS, s, s, generator=g) for s in LEVEL_SIZES]
    return logits, deltas, iou_logits


def _flatten(levels, k):
    """(N, A*k, H, W) per level -> (N, sum H*W*A, k): Detectron2's permute_to_N_HWA_K order
    (cell-major, then anchor), concatenated over the levels."""
    flat = []
    for x in levels:
        n, _, h, w = x.shape
        flat.append(x.view(n, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k))
    return torch.cat(flat, dim=1)


def _reference_iou_loss(model, cfg, deltas, iou_logits, detach_target):
    """sum over positives of BCE(iou_logit, IoU(decoded box, matched GT)) and the positive count.

    Positives and their GT from Detectron2's own RetinaNet.label_anchors (Matcher 0.4 / 0.5 with
    low-quality matches); boxes decoded by Detectron2's Box2BoxTransform with the config's
    weights; IoU by torchvision; BCE written out as -(t log s(x) + (1 - t) log s(-x)).
    """
    features = _features(len(GT_INSTANCES))
    anchors = model.anchor_generator(features)
    labels, matched_gt = RetinaNet.label_anchors(model, anchors, GT_INSTANCES)
    labels, matched_gt = torch.stack(labels), torch.stack(matched_gt)
    positive = (labels >= 0) & (labels < NUM_CLASSES)
    all_anchors = Boxes.cat(anchors).tensor[None].expand(len(GT_INSTANCES), -1, -1)
    coder = Box2BoxTransform(weights=cfg.MODEL.RETINANET.BBOX_REG_WEIGHTS)
    boxes = coder.apply_deltas(_flatten(deltas, 4)[positive], all_anchors[positive])
    target = box_iou(boxes, matched_gt[positive]).diagonal()
    if detach_target:
        target = target.detach()
    x = _flatten(iou_logits, 1)[positive][:, 0]
    bce = -(target * F.logsigmoid(x) + (1 - target) * F.logsigmoid(-x))
    return bce.sum(), int(positive.sum())


# ---------------------------------------------------------------------------------------------
# Training losses
# ---------------------------------------------------------------------------------------------


def _stock_and_ours_losses(repo_root, **overrides):
    """Losses of one training step of IoU-aware RetinaNet and of Detectron2's RetinaNet with the
    same backbone and head weights (all but the IoU conv), on the same images and GT."""
    ours = _model(repo_root, **overrides)
    with torch.no_grad():  # spread the head outputs so that every loss term is far from its init
        ours.head.cls_score.weight.normal_(0, 0.05)
        ours.head.bbox_pred.weight.normal_(0, 0.05)
    stock = build_model(_cfg(repo_root, meta_arch="RetinaNet", **overrides))
    unexpected = stock.load_state_dict(ours.state_dict(), strict=False).unexpected_keys
    assert sorted(unexpected) == ["head.iou_pred.conv.bias", "head.iou_pred.conv.weight"]
    ours.train(), stock.train()
    with EventStorage():
        return stock(_images()), ours(_images())


def test_loss_cls_and_loss_box_reg_equal_stock_retinanet(repo_root):
    # Reference: detectron2/modeling/meta_arch/retinanet.py RetinaNet.losses on the same weights.
    stock, ours = _stock_and_ours_losses(repo_root)
    assert ours["loss_box_reg"] > 0
    for name in ("loss_cls", "loss_box_reg"):
        torch.testing.assert_close(ours[name], stock[name], rtol=1e-6, atol=0, msg=name)


def test_an_image_without_objects_has_stock_retinanet_losses(repo_root):
    # No positives: stock normalizes by 0.9 * 100 + 0.1 * max(0, 1) = 90.1; the box and IoU losses are 0.
    ours = _model(repo_root)
    stock = build_model(_cfg(repo_root, meta_arch="RetinaNet"))
    stock.load_state_dict(ours.state_dict(), strict=False)
    ours.train(), stock.train()
    no_objects = _gt(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    empty = [{"image": x["image"], "instances": no_objects} for x in _images()]  # 2 images: BatchNorm
    with EventStorage():
        stock_losses, our_losses = stock(empty), ours(empty)
    assert stock.loss_normalizer == pytest.approx(_first_step_normalizer(0))
    assert ours.loss_normalizer == pytest.approx(_first_step_normalizer(0))
    torch.testing.assert_close(our_losses["loss_cls"], stock_losses["loss_cls"], rtol=1e-6, atol=0)
    assert our_losses["loss_box_reg"].item() == 0 and our_losses["loss_iou"].item() == 0


def test_smooth_l1_beta_is_the_config_value(repo_root):
    # Reference: stock RetinaNet with the same MODEL.RETINANET.SMOOTH_L1_LOSS_BETA (shipped: 0.1).
    beta = {"MODEL.RETINANET.SMOOTH_L1_LOSS_BETA": 0.37}
    stock, ours = _stock_and_ours_losses(repo_root, **beta)
    torch.testing.assert_close(ours["loss_box_reg"], stock["loss_box_reg"], rtol=1e-6, atol=0)
    stock_l1, _ = _stock_and_ours_losses(repo_root, **{"MODEL.RETINANET.SMOOTH_L1_LOSS_BETA": 0.0})
    assert abs(stock_l1["loss_box_reg"] - stock["loss_box_reg"]) > 1e-3  # beta matters on this input


def test_loss_iou_is_weighted_bce_against_decoded_box_iou_over_ema_normalizer(repo_root):
    # loss_iou = LOSS_WEIGHT * sum_pos BCE(iou_logit, IoU(decoded box, GT)) / normalizer, where the
    # normalizer is stock's EMA of the positive count (IoUAwareRetinaNet.losses' docstring).
    cfg = _cfg(repo_root, **{"MODEL.IOU_AWARE.LOSS_WEIGHT": 2.7})
    model = build_model(cfg)
    logits, deltas, iou_logits = _random_head_outputs(len(GT_INSTANCES))
    with EventStorage():
        losses = model.forward_training(None, _features(len(GT_INSTANCES)), (logits, deltas, iou_logits), GT_INSTANCES)
    bce_sum, num_pos = _reference_iou_loss(model, cfg, deltas, iou_logits, detach_target=True)
    assert num_pos >= len(GT_INSTANCES) * 2  # every GT has its positives
    expected = 2.7 * bce_sum / _first_step_normalizer(num_pos)
    torch.testing.assert_close(losses["loss_iou"], expected, rtol=1e-5, atol=0)


def test_loss_iou_normalizer_is_the_ema_shared_with_the_other_losses(repo_root):
    # Second step: normalizer = 0.9 * (first-step EMA) + 0.1 * num_pos (DenseDetector._ema_update),
    # the same one as loss_cls, so loss_iou / loss_cls does not depend on it.
    cfg = _cfg(repo_root)
    model = build_model(cfg)
    outputs = _random_head_outputs(len(GT_INSTANCES))
    with EventStorage():
        model.forward_training(None, _features(len(GT_INSTANCES)), outputs, GT_INSTANCES)
        losses = model.forward_training(None, _features(len(GT_INSTANCES)), outputs, GT_INSTANCES)
    bce_sum, num_pos = _reference_iou_loss(model, cfg, outputs[1], outputs[2], detach_target=True)
    normalizer = 0.9 * _first_step_normalizer(num_pos) + 0.1 * num_pos
    torch.testing.assert_close(losses["loss_iou"], bce_sum / normalizer, rtol=1e-5, atol=0)


@pytest.mark.parametrize("detach", [False, True])
def test_loss_iou_gradient_reaches_the_deltas_through_the_target_unless_detached(repo_root, detach):
    # Reference: autograd of the hand-written loss, target detached exactly when DETACH_TARGET
    # (the shipped False follows the reference code: L_IoU also trains the box regression).
    cfg = _cfg(repo_root, **{"MODEL.IOU_AWARE.DETACH_TARGET": detach})
    model = build_model(cfg)
    logits, deltas, iou_logits = _random_head_outputs(len(GT_INSTANCES))
    deltas = [d.requires_grad_() for d in deltas]
    iou_logits = [x.requires_grad_() for x in iou_logits]
    with EventStorage():
        loss = model.forward_training(None, _features(len(GT_INSTANCES)), (logits, deltas, iou_logits), GT_INSTANCES)
    got = torch.autograd.grad(loss["loss_iou"], deltas + iou_logits, materialize_grads=True)
    bce_sum, num_pos = _reference_iou_loss(model, cfg, deltas, iou_logits, detach_target=detach)
    expected = torch.autograd.grad(
        bce_sum / _first_step_normalizer(num_pos), deltas + iou_logits, materialize_grads=True
    )
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-9)
    reaches_deltas = any(bool(g.abs().sum() > 0) for g in got[: len(deltas)])
    assert reaches_deltas is (not detach)


def test_iou_logits_come_from_a_conv_on_the_box_tower(repo_root):
    # Reference: head.iou_pred.conv applied by hand to head.bbox_subnet (not the class tower).
    model = _model(repo_root).eval()
    with torch.no_grad():
        for module in (model.head.bbox_subnet, model.head.cls_subnet, model.head.iou_pred.conv):
            for p in module.parameters():
                p.normal_(0, 0.1)
        g = torch.Generator().manual_seed(1)
        features = [torch.randn(1, CHANNELS, s, s, generator=g) for s in LEVEL_SIZES]
        _, _, iou_logits = model.head(features)
        for feature, got in zip(features, iou_logits):
            conv = model.head.iou_pred.conv
            expected = F.conv2d(model.head.bbox_subnet(feature), conv.weight, conv.bias, padding=1)
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Inference: two hand-set anchors where p and S disagree
# ---------------------------------------------------------------------------------------------

# Anchor A: p = 0.9, IoU = 0.05; anchor B: p = 0.5, IoU = 0.95 (both class 2). p ranks A first;
# S = sqrt(p * IoU) (alpha 0.5, the shipped value) ranks B first: S_A = 0.2121, S_B = 0.6892.
P_A, IOU_A, P_B, IOU_B = 0.9, 0.05, 0.5, 0.95
CLASS = 2
BACKGROUND_LOGIT = -30.0  # p and IoU ~ 1e-13 for every other anchor: S far below any threshold
# (y, x, anchor) on P3 (stride 8, anchors centred at 8 * (x, y)); anchor 4 is the 20x20 square,
# anchor 1 the 16x16 square (sizes 16, 20, 25 x aspect ratios 0.5, 1, 2).
APART = {"A": (2, 2, 4), "B": (5, 5, 4)}  # boxes [6, 6, 26, 26] and [30, 30, 50, 50]: disjoint
OVERLAPPING = {"A": (3, 3, 4), "B": (3, 3, 1)}  # [14, 14, 34, 34] and [16, 16, 32, 32]: IoU 0.64
B_DELTAS = (0.1, -0.05, 0.2, 0.1)  # dx, dy, dw, dh (BBOX_REG_WEIGHTS 1, 1, 1, 1)


def _logit(p):
    return math.log(p / (1 - p))


def _s(p, iou, alpha=0.5):
    return p**alpha * iou ** (1 - alpha)


def _two_anchor_outputs(cells, b_deltas=(0.0, 0.0, 0.0, 0.0)):
    logits = [torch.full((1, NUM_ANCHORS * NUM_CLASSES, s, s), BACKGROUND_LOGIT) for s in LEVEL_SIZES]
    deltas = [torch.zeros(1, NUM_ANCHORS * 4, s, s) for s in LEVEL_SIZES]
    iou_logits = [torch.full((1, NUM_ANCHORS, s, s), BACKGROUND_LOGIT) for s in LEVEL_SIZES]
    for name, p, iou in (("A", P_A, IOU_A), ("B", P_B, IOU_B)):
        y, x, a = cells[name]
        logits[0][0, a * NUM_CLASSES + CLASS, y, x] = _logit(p)
        iou_logits[0][0, a, y, x] = _logit(iou)
    y, x, a = cells["B"]
    deltas[0][0, a * 4 : a * 4 + 4, y, x] = torch.tensor(b_deltas)
    return logits, deltas, iou_logits


def _detect(repo_root, cells, b_deltas=(0.0, 0.0, 0.0, 0.0), **overrides):
    model = _model(repo_root, **overrides).eval()
    images = ImageList(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE), [(IMAGE_SIZE, IMAGE_SIZE)])
    with torch.no_grad():
        return model.forward_inference(images, _features(1), _two_anchor_outputs(cells, b_deltas))[0]


def _box(cx, cy, w, h):
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


BOX_A_APART = _box(16, 16, 20, 20)
# B decoded by hand: centre (40 + 0.1 * 20, 40 - 0.05 * 20), size (20 e^0.2, 20 e^0.1).
BOX_B_APART = _box(42.0, 39.0, 20 * math.exp(0.2), 20 * math.exp(0.1))


@pytest.mark.parametrize(
    "alpha, mode, s_b, s_a",
    [
        (0.5, "power", _s(P_B, IOU_B), _s(P_A, IOU_A)),
        (0.3, "power", _s(P_B, IOU_B, 0.3), _s(P_A, IOU_A, 0.3)),
        (0.5, "product", P_B * IOU_B, P_A * IOU_A),
    ],
    ids=["power-alpha0.5", "power-alpha0.3", "product"],
)
def test_detection_scores_are_s_with_the_configured_alpha_and_mode(repo_root, alpha, mode, s_b, s_a):
    # S = p^alpha * IoU^(1 - alpha) ("power") or p * IoU ("product"); p and IoU kept beside it.
    detections = _detect(
        repo_root,
        APART,
        B_DELTAS,
        **{
            "MODEL.IOU_AWARE.SCORE_ALPHA": alpha,
            "MODEL.IOU_AWARE.SCORE_MODE": mode,
            "MODEL.RETINANET.SCORE_THRESH_TEST": 0.01,
        },
    )
    assert len(detections) == 2
    torch.testing.assert_close(detections.scores, torch.tensor([s_b, s_a]), rtol=1e-6, atol=0)
    torch.testing.assert_close(detections.cls_scores, torch.tensor([P_B, P_A]), rtol=1e-6, atol=0)
    torch.testing.assert_close(detections.pred_ious, torch.tensor([IOU_B, IOU_A]), rtol=1e-6, atol=0)
    torch.testing.assert_close(detections.pred_boxes.tensor, torch.tensor([BOX_B_APART, BOX_A_APART]))
    assert detections.pred_classes.tolist() == [CLASS, CLASS]


def test_score_threshold_applies_to_s(repo_root):
    # Threshold 0.6: S_A = 0.21 < 0.6 < S_B = 0.69, while on p A (0.9) would pass and B (0.5) not.
    detections = _detect(repo_root, APART, **{"MODEL.RETINANET.SCORE_THRESH_TEST": 0.6})
    assert len(detections) == 1
    torch.testing.assert_close(detections.scores, torch.tensor([_s(P_B, IOU_B)]), rtol=1e-6, atol=0)
    torch.testing.assert_close(detections.pred_boxes.tensor, torch.tensor([_box(40, 40, 20, 20)]))


def test_per_level_top_k_keeps_the_highest_s(repo_root):
    # Top-1 candidate of P3 (both anchors are there) is B by S; by p it would be A.
    detections = _detect(repo_root, APART, **{"MODEL.RETINANET.TOPK_CANDIDATES_TEST": 1})
    assert len(detections) == 1
    torch.testing.assert_close(detections.scores, torch.tensor([_s(P_B, IOU_B)]), rtol=1e-6, atol=0)
    torch.testing.assert_close(detections.cls_scores, torch.tensor([P_B]), rtol=1e-6, atol=0)


def test_nms_keeps_the_box_with_the_higher_s(repo_root):
    # A [14, 14, 34, 34] and B [16, 16, 32, 32] overlap with IoU 256 / 400 = 0.64 > NMS 0.5
    # (MODEL.RETINANET.NMS_THRESH_TEST): one survives, B by S (A by p).
    detections = _detect(repo_root, OVERLAPPING)
    assert len(detections) == 1
    torch.testing.assert_close(detections.scores, torch.tensor([_s(P_B, IOU_B)]), rtol=1e-6, atol=0)
    torch.testing.assert_close(detections.pred_boxes.tensor, torch.tensor([[16.0, 16.0, 32.0, 32.0]]))


def test_nms_threshold_is_the_config_value(repo_root):
    # NMS_THRESH_TEST 0.7 > IoU 0.64: both overlapping boxes are kept, in decreasing S.
    detections = _detect(repo_root, OVERLAPPING, **{"MODEL.RETINANET.NMS_THRESH_TEST": 0.7})
    torch.testing.assert_close(detections.scores, torch.tensor([_s(P_B, IOU_B), _s(P_A, IOU_A)]), rtol=1e-6, atol=0)


def test_detections_per_image_cap_keeps_the_highest_s(repo_root):
    # TEST.DETECTIONS_PER_IMAGE 1 over two disjoint detections: B (S 0.69), not A (p 0.9).
    detections = _detect(repo_root, APART, **{"TEST.DETECTIONS_PER_IMAGE": 1})
    assert len(detections) == 1
    torch.testing.assert_close(detections.scores, torch.tensor([_s(P_B, IOU_B)]), rtol=1e-6, atol=0)
    torch.testing.assert_close(detections.pred_boxes.tensor, torch.tensor([_box(40, 40, 20, 20)]))


def test_an_unknown_score_mode_is_named():
    from iou_aware.modeling.iou_branch import detection_confidence

    with pytest.raises(ValueError, match=r"score mode = 'sum'; use one of \('power', 'product'\)"):
        detection_confidence(torch.ones(2, 3), torch.ones(2), 0.5, mode="sum")


def test_inference_without_iou_estimates_is_refused_by_name(repo_root):
    # Detectron2's RetinaNet.inference_single_image signature, called as stock code would: no IoU.
    model = _model(repo_root)
    with pytest.raises(ValueError, match="IoUAwareRetinaNet.inference_single_image needs iou_probs"):
        model.inference_single_image([], [], [], (IMAGE_SIZE, IMAGE_SIZE))
