"""LSNet's training losses pinned by value: what ``LSNet.forward`` returns in training mode is, loss by
loss, recomputed here from hand-set head outputs and hand-built ground truth.

The specification (``iou_aware.modeling.meta_arch.lsnet``):

* the initial stage is assigned one point per GT: the point nearest to its centre on the level of its
  size (``CentrePointAssigner``); the refinement stage and the classes by ATSS on the boxes of the
  *initial* landmarks (``ATSSAssigner``); both choose among the points inside each image only (those in
  the padding of a batch are never candidates, so never positive);
* ``loss_<set>_init`` / ``loss_<set>_refine`` = the set's (initial, refined) loss weight x the summed
  :func:`iou_aware.layers.cross_iou_loss` of that stage's crosses at that stage's positives against
  their GT's landmarks, both as vectors in units of ``POINT_BASE_SCALE * stride``, divided by the
  stage's positives (at least 1 per image);
* ``loss_cls`` = the focal loss (``FOCAL_LOSS_ALPHA``, ``FOCAL_LOSS_GAMMA``) summed over the points
  inside their image against the refinement stage's classes, divided by the refinement positives.

The references use the already verified layers (``cross_iou_loss``, tests/test_cross_iou.py;
torchvision's ``sigmoid_focal_loss``, while the model calls fvcore's) and assigners
(tests/test_lsnet.py, tests/test_atss_assigner.py); points, unit conversions, decoding, matching,
weights and normalizers are written out here. Every loss key the configs read is set to an unusual
value (:data:`LOSS_OPTS`), so that a dropped or swapped one changes a value. One case (one GT) is
small enough to derive its positives by hand. A last test runs the one path no other test does: the
deformable (DCNv2) towers, the COCO setting.
"""

import math
from contextlib import contextmanager

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from torchvision.ops import sigmoid_focal_loss

import iou_aware.modeling.meta_arch.lsnet as lsnet_module
from iou_aware.layers import cross_iou_loss, crosses_to_offsets, offsets_to_crosses
from iou_aware.model_zoo import get_config
from iou_aware.modeling import ATSSAssigner, CentrePointAssigner

BOX_CONFIG = "Shapes/lsnet_slim_R_FPN.yaml"
CONTOUR_CONFIG = "Shapes/lsnet_contour_slim_R_FPN.yaml"
KEYPOINT_CONFIG = "Stickmen/lsnet_keypoint_slim_R_FPN.yaml"

# Unusual values of every MODEL.LSNET key the losses read (defaults in iou_aware/config.py: 1.0, 2.0,
# 0.1, 0.2, 0.25, 2.0, 0.2, 4, 9).
LOSS_OPTS = [
    "MODEL.LSNET.INIT_LOSS_WEIGHT",
    0.7,
    "MODEL.LSNET.REFINE_LOSS_WEIGHT",
    1.9,
    "MODEL.LSNET.BOX_BRANCH_INIT_LOSS_WEIGHT",
    0.15,
    "MODEL.LSNET.BOX_BRANCH_REFINE_LOSS_WEIGHT",
    0.45,
    "MODEL.LSNET.FOCAL_LOSS_ALPHA",
    0.35,
    "MODEL.LSNET.FOCAL_LOSS_GAMMA",
    1.5,
    "MODEL.LSNET.CROSS_IOU_ALPHA",
    0.3,
    "MODEL.LSNET.POINT_BASE_SCALE",
    3,
    "MODEL.LSNET.CONTOUR_GROUPS",
    4,
]
POINT_BASE_SCALE = 3.0
# (initial, refined) weight of each landmark set, by task: the task's own set takes INIT / REFINE_LOSS_WEIGHT,
# pose's box set BOX_BRANCH_*.
LOSS_WEIGHTS = {
    "box": {"box": (0.7, 1.9)},
    "contour": {"contour": (0.7, 1.9)},
    "keypoint": {"box": (0.15, 0.45), "keypoint": (0.7, 1.9)},
}
NUM_LANDMARKS = {"box": 5, "contour": 37, "keypoint": 18}  # each set's name is also its cross_iou_loss mode
STRIDES = (8, 16, 32, 64, 128)  # P3-P7
FEATURE_SIZES = ((8, 8), (4, 4), (2, 2), (1, 1), (1, 1))  # (H, W) of each level for a 64 x 64 batch

# The one-GT case (box task): a 50 x 50 box centred on (32, 32). Level: floor(log2(50 / 3)) = 4 -> stride 16
# (P4), where (32, 32) is row 2, column 2: point 64 (the P3 points) + 2 * 4 + 2 = 74.
ONE_GT_BOX = [7.0, 7.0, 57.0, 57.0]
ONE_GT_LANDMARKS = [
    [30.0, 7.0],
    [7.0, 40.0],
    [36.0, 57.0],
    [57.0, 20.0],
    [32.0, 32.0],
]  # top, left, bottom, right, centre
ONE_GT_POINT = 74


def _cfg(repo_root, config, *opts):
    cfg = get_config(config)
    cfg.merge_from_list(list(opts))
    return cfg


@pytest.fixture(scope="module")
def models(repo_root):
    """One model per task, with :data:`LOSS_OPTS`; their weights never matter (head outputs are set)."""
    torch.manual_seed(0)
    configs = {"box": BOX_CONFIG, "contour": CONTOUR_CONFIG, "keypoint": KEYPOINT_CONFIG}
    return {task: build_model(_cfg(repo_root, config, *LOSS_OPTS)).train() for task, config in configs.items()}


# ---------------------------------------------------------------------------------------------------------
# Ground truth and head outputs


def _box_landmarks(boxes, generator):
    """Extreme points on the borders of XYXY boxes (top, left, bottom, right), then the centre."""
    x0, y0, x1, y1 = boxes.unbind(1)
    f = torch.rand(4, len(boxes), generator=generator) * 0.8 + 0.1
    points = [
        (x0 + f[0] * (x1 - x0), y0),
        (x0, y0 + f[1] * (y1 - y0)),
        (x0 + f[2] * (x1 - x0), y1),
        (x1, y0 + f[3] * (y1 - y0)),
        ((x0 + x1) / 2, (y0 + y1) / 2),
    ]
    return torch.stack([torch.stack(p, dim=1) for p in points], dim=1)


def _contour_landmarks(boxes, generator):
    """36 points of a wobbly ellipse inside each box, then the centre of their extent (which is not the box:
    the contour task assigns on the extent)."""
    angles = torch.arange(36) * (2 * math.pi / 36)
    contours = []
    for x0, y0, x1, y1 in boxes.tolist():
        radius = 0.7 + 0.3 * torch.rand(36, generator=generator)
        xy = torch.stack(
            [
                (x0 + x1) / 2 + radius * (x1 - x0) / 2 * angles.sin(),
                (y0 + y1) / 2 - radius * (y1 - y0) / 2 * angles.cos(),
            ],
            dim=1,
        )
        contours.append(torch.cat([xy, ((xy.amin(0) + xy.amax(0)) / 2)[None]]))
    return torch.stack(contours)


# Image (height, width), XYXY boxes, classes; the second image is padded to 64 x 64 (rows y >= 48). Each box's
# centre is nearer to one point of its level than to any other (see the test of its initial positives).
IMAGES = [
    ((64, 64), [[4.0, 6.0, 30.0, 32.0], [14.0, 10.0, 62.0, 60.0], [40.0, 4.0, 52.0, 14.0]], [2, 0, 3]),
    ((48, 64), [[2.0, 2.0, 62.0, 44.0], [30.0, 20.0, 46.0, 40.0]], [1, 2]),
]


def _inputs(task, images, generator):
    inputs = []
    for (height, width), boxes, classes in images:
        boxes = torch.tensor(boxes).reshape(-1, 4)
        instances = Instances((height, width), gt_boxes=Boxes(boxes))
        instances.gt_classes = torch.tensor(classes if task != "keypoint" else [0] * len(classes), dtype=torch.int64)
        if task in ("box", "keypoint"):
            instances.gt_box_landmarks = _box_landmarks(boxes, generator)
        if task == "contour":
            instances.gt_contour_landmarks = _contour_landmarks(boxes, generator)
        if task == "keypoint":
            low, size = boxes[:, None, :2], boxes[:, None, 2:] - boxes[:, None, :2]
            keypoints = low + torch.rand(len(boxes), 17, 2, generator=generator) * size
            instances.gt_keypoint_landmarks = torch.cat([keypoints, instances.gt_box_landmarks[:, -1:]], dim=1)
            visible = torch.rand(len(boxes), 18, generator=generator) > 0.3
            visible[:, -1] = True
            instances.gt_keypoint_visible = visible
        image = torch.randint(0, 256, (3, height, width), generator=generator).float()
        inputs.append({"image": image, "instances": instances, "height": height, "width": width})
    return inputs


def _predictions(task, num_classes, num_images, generator):
    """Head outputs (see LandmarkHead.forward), per level (N, C, H, W): logits, then (initial, refined)
    crosses of each landmark set. The initial box set describes a box around its point (top above, left
    of, ...; 0.5 to 2.5 strides), the other sets random vectors; refined crosses are random and unrelated."""

    def per_level(make):
        return [make(h, w) for h, w in FEATURE_SIZES]

    def rand(*shape, low=0.0, high=1.0):
        return low + (high - low) * torch.rand(*shape, generator=generator)

    def initial(name, h, w):
        count = num_images * h * w
        if name == "box":
            reach = rand(count, 4, low=0.5, high=2.5)
            slide = rand(count, 5, 2, low=-0.3, high=0.3)
            offsets = slide.clone()
            offsets[:, 0, 1], offsets[:, 1, 0] = -reach[:, 0], -reach[:, 1]
            offsets[:, 2, 1], offsets[:, 3, 0] = reach[:, 2], reach[:, 3]
        else:
            offsets = rand(count, NUM_LANDMARKS[name], 2, low=-2.0, high=2.0)
        crosses = offsets_to_crosses(offsets, alpha=0.2) + rand(count, NUM_LANDMARKS[name], 4, high=0.05)
        return crosses.reshape(num_images, h, w, -1).permute(0, 3, 1, 2).contiguous()

    predictions = [per_level(lambda h, w: torch.randn(num_images, num_classes, h, w, generator=generator) * 1.5 - 1.0)]
    for name in LOSS_WEIGHTS[task]:
        predictions.append(per_level(lambda h, w: initial(name, h, w)))
        predictions.append(per_level(lambda h, w: rand(num_images, 4 * NUM_LANDMARKS[name], h, w, high=2.5)))
    return predictions


def _one_gt_case():
    """Box task, one 64 x 64 image, one GT (:data:`ONE_GT_BOX`); initial crosses 0 everywhere (each initial
    box is its point), refined crosses random."""
    generator = torch.Generator().manual_seed(1)
    instances = Instances((64, 64), gt_boxes=Boxes(torch.tensor([ONE_GT_BOX])), gt_classes=torch.tensor([2]))
    instances.gt_box_landmarks = torch.tensor([ONE_GT_LANDMARKS])
    inputs = [{"image": torch.zeros(3, 64, 64), "instances": instances, "height": 64, "width": 64}]
    predictions = _predictions("box", 4, 1, generator)
    predictions[1] = [torch.zeros_like(x) for x in predictions[1]]
    return inputs, predictions


# ---------------------------------------------------------------------------------------------------------
# The model's side


@contextmanager
def _head_outputs(model, predictions):
    """The model's head returns ``predictions``, whatever its input."""
    model.head.forward = lambda features: predictions
    try:
        yield
    finally:
        del model.head.forward


def _training_losses(model, inputs, predictions):
    with _head_outputs(model, predictions), EventStorage(), torch.no_grad():
        return model(inputs)


def _model_assignment(model, inputs, predictions):
    """``LSNet.assign`` on the batch: (init_matched, refine_matched, valid)."""
    with torch.no_grad():
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        features = [features[f] for f in model.head_in_features]
        gt_instances = [x["instances"] for x in inputs]
        targets = model.assign(images, features, predictions, gt_instances)
    return torch.stack(targets.init_matched), torch.stack(targets.refine_matched), targets.valid


# ---------------------------------------------------------------------------------------------------------
# The references


def _points_and_strides():
    """(R, 2) anchor points (x, y) = (column * stride, row * stride), level by level, row-major; (R,) strides."""
    points, strides = [], []
    for (h, w), s in zip(FEATURE_SIZES, STRIDES):
        ys, xs = torch.meshgrid(torch.arange(h) * s, torch.arange(w) * s, indexing="ij")
        points.append(torch.stack([xs.flatten(), ys.flatten()], dim=1).float())
        strides.append(torch.full((h * w,), float(s)))
    return torch.cat(points), torch.cat(strides)


def _per_point(per_level, crosses=False):
    """Per level (N, C, H, W) -> (N, R, C), or (N, R, L, 4) crosses (channel 4 l + c of landmark l)."""
    flat = torch.cat([x.flatten(2).transpose(1, 2) for x in per_level], dim=1)
    return flat.unflatten(-1, (-1, 4)) if crosses else flat


def _assignment_boxes(task, instances):
    """The boxes a GT is assigned and box-penalized on: its box, or for contours the extent of the contour."""
    if task == "contour":
        contour = instances.gt_contour_landmarks[:, :-1]
        return torch.cat([contour.amin(1), contour.amax(1)], dim=1)
    return instances.gt_boxes.tensor


def _landmark_boxes(landmarks, mode):
    """XYXY boxes of (..., L, 2) landmarks: x of left, y of top, x of right, y of bottom for "box",
    else the extent of all landmarks but the centre."""
    if mode == "box":
        return torch.stack([landmarks[..., 1, 0], landmarks[..., 0, 1], landmarks[..., 3, 0], landmarks[..., 2, 1]], -1)
    return torch.cat([landmarks[..., :-1, :].amin(-2), landmarks[..., :-1, :].amax(-2)], -1)


def _reference_assignment(task, inputs, predictions):
    """(init_matched, refine_matched, valid), each (N, R): the centre-point assignment on the anchor points
    (as squares of side POINT_BASE_SCALE * stride), ATSS (9 candidates per level) on the boxes of the
    initial landmarks of the box set (the task's own set for contours), both among the points inside the
    image only."""
    points, strides = _points_and_strides()
    sizes = [h * w for h, w in FEATURE_SIZES]
    half_side = POINT_BASE_SCALE * strides[:, None] / 2
    anchors = torch.cat([points - half_side, points + half_side], dim=1)
    box_source = "contour" if task == "contour" else "box"
    set_index = list(LOSS_WEIGHTS[task]).index(box_source)
    init_crosses = _per_point(predictions[1 + 2 * set_index], crosses=True)
    init_landmarks = points[:, None, :] + crosses_to_offsets(init_crosses) * strides[:, None, None]
    init_boxes = _landmark_boxes(init_landmarks, box_source)  # (N, R, 4)
    valid = torch.stack(
        [(points[:, 0] < x["instances"].image_size[1]) & (points[:, 1] < x["instances"].image_size[0]) for x in inputs]
    )
    init_matched, refine_matched = [], []
    for x, boxes, valid_i in zip(inputs, init_boxes, valid):
        gt_boxes = _assignment_boxes(task, x["instances"])
        centre_point = CentrePointAssigner(STRIDES, scale=POINT_BASE_SCALE, pos_num=1)  # INIT_POS_NUM 1
        init_matched.append(centre_point(list(anchors.split(sizes)), gt_boxes, valid=valid_i))
        refine_matched.append(ATSSAssigner(topk=9)(list(boxes.split(sizes)), gt_boxes, valid=valid_i))
    return torch.stack(init_matched), torch.stack(refine_matched), valid


def _normalizer(matched):
    """Positives of a stage, at least 1 per image (one worker: no averaging)."""
    return float(sum(max(int((m >= 0).sum()), 1) for m in matched))


def _reference_landmark_loss(task, name, stage, inputs, predictions, matched, point_weights=None):
    """Summed cross_iou_loss of one set and stage (0 initial, 1 refined) over the stage's positives, without
    weight or normalizer: predicted crosses (in strides) / POINT_BASE_SCALE against (GT landmark - point) /
    (POINT_BASE_SCALE * stride); the penalty's target box likewise. ``point_weights`` (N, R): each
    positive's loss times its point's weight."""
    points, strides = _points_and_strides()
    set_index = list(LOSS_WEIGHTS[task]).index(name)
    crosses = _per_point(predictions[1 + 2 * set_index + stage], crosses=True)
    total = torch.zeros(())
    for i, (crosses_i, matched_i, x) in enumerate(zip(crosses, matched, inputs)):
        instances = x["instances"]
        positive = matched_i >= 0
        gt = matched_i[positive]
        unit = POINT_BASE_SCALE * strides[positive]
        target = (instances.get(f"gt_{name}_landmarks")[gt] - points[positive][:, None, :]) / unit[:, None, None]
        target_boxes = (_assignment_boxes(task, instances)[gt] - points[positive].repeat(1, 2)) / unit[:, None]
        per_positive = cross_iou_loss(
            crosses_i[positive] / POINT_BASE_SCALE,
            target,
            mode=name,
            alpha=0.3,  # CROSS_IOU_ALPHA
            visible=instances.gt_keypoint_visible[gt] if name == "keypoint" else None,
            reduction="none",
            num_groups=4,  # CONTOUR_GROUPS
            target_boxes=None if name == "keypoint" else target_boxes,
            keypoint_overlap="object",  # lsnet_keypoint_slim_R_FPN.yaml's KEYPOINT_OVERLAP
        )
        if point_weights is not None:
            per_positive = per_positive * point_weights[i][positive]
        total = total + per_positive.sum()
    return total


def _reference_class_loss(inputs, predictions, refine_matched, valid):
    """torchvision's focal loss (alpha 0.35, gamma 1.5), summed over the valid points, one-hot targets of the
    refinement positives' GT classes; divided by the refinement positives."""
    logits = _per_point(predictions[0])
    targets = torch.zeros_like(logits)
    for i, (matched, x) in enumerate(zip(refine_matched, inputs)):
        positive = matched >= 0
        targets[i, positive.nonzero()[:, 0], x["instances"].gt_classes[matched[positive]]] = 1.0
    loss = sigmoid_focal_loss(logits[valid], targets[valid], alpha=0.35, gamma=1.5, reduction="sum")
    return loss / _normalizer(refine_matched)


# ---------------------------------------------------------------------------------------------------------
# The cases


CASES = ["box_one_gt", "box", "box_with_an_empty_image", "contour", "keypoint"]


@pytest.fixture(scope="module", params=CASES)
def case(request, models):
    """A batch, head outputs, the model's losses and assignment, and the reference assignment."""
    if request.param == "box_one_gt":
        task = "box"
        inputs, predictions = _one_gt_case()
    else:
        task = request.param.split("_")[0]
        # An image without objects counts 1 in each normalizer.
        images = IMAGES + [((64, 64), [], [])] if request.param == "box_with_an_empty_image" else IMAGES
        generator = torch.Generator().manual_seed(CASES.index(request.param))
        inputs = _inputs(task, images, generator)
        predictions = _predictions(task, models[task].num_classes, len(inputs), generator)
    model = models[task]
    init_matched, refine_matched, valid = _reference_assignment(task, inputs, predictions)
    # Preconditions of a discriminating case: each image with objects has positives in both stages; the
    # stages differ in their positives and in their number; the batch has padding when it has two images.
    has_objects = torch.tensor([len(x["instances"]) > 0 for x in inputs])
    assert ((init_matched >= 0).any(1) == has_objects).all() and ((refine_matched >= 0).any(1) == has_objects).all()
    assert _normalizer(init_matched) != _normalizer(refine_matched)
    assert len(inputs) == 1 or not valid.all()
    return {
        "task": task,
        "inputs": inputs,
        "predictions": predictions,
        "losses": _training_losses(model, inputs, predictions),
        "model_assignment": _model_assignment(model, inputs, predictions),
        "reference": (init_matched, refine_matched, valid),
    }


def _assert_value(actual, expected):
    torch.testing.assert_close(actual, expected.to(actual.dtype), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------
# Assignment


def test_one_gt_initial_positive_is_the_point_at_its_centre_on_the_level_of_its_size(models):
    inputs, predictions = _one_gt_case()
    init_matched, _, _ = _model_assignment(models["box"], inputs, predictions)
    assert (init_matched[0] >= 0).nonzero()[:, 0].tolist() == [ONE_GT_POINT]
    points, strides = _points_and_strides()
    assert points[ONE_GT_POINT].tolist() == [32.0, 32.0] and strides[ONE_GT_POINT] == 16  # row 2, column 2 of P4


def test_one_gt_refinement_positives_are_atss_on_the_initial_landmark_boxes(models):
    """Initial crosses 0: every initial box is its point, of IoU 0 with the GT, so the ATSS threshold (mean +
    std of the candidates' IoUs) is 0 and the positives are the candidates (9 nearest to (32, 32) per level)
    whose point lies inside the GT (7, 7, 57, 57): on P3 the 3 x 3 block x, y in {24, 32, 40}; on P4 the
    3 x 3 block x, y in {16, 32, 48}; on P5 (32, 32) of (0 | 32, 0 | 32); on P6, P7 only (0, 0), outside.
    (ATSS on the anchor squares, of side 3 x stride, would pick 5 points of P4 by their IoUs.)"""
    inputs, predictions = _one_gt_case()
    _, refine_matched, _ = _model_assignment(models["box"], inputs, predictions)
    p3 = [row * 8 + col for row in (3, 4, 5) for col in (3, 4, 5)]
    p4 = [64 + row * 4 + col for row in (1, 2, 3) for col in (1, 2, 3)]
    p5 = [64 + 16 + 1 * 2 + 1]
    assert (refine_matched[0] >= 0).nonzero()[:, 0].tolist() == p3 + p4 + p5
    assert (refine_matched[0][p3 + p4 + p5] == 0).all()


def test_initial_positives_of_a_batch_are_the_points_nearest_the_gt_centres(models):
    """By hand, level floor(log2(sqrt(w h) / 3)) clamped to P3..P7, then the point nearest to the centre in
    units of the box's width and height; the second image's GT indices restart at 0."""
    generator = torch.Generator().manual_seed(0)
    inputs = _inputs("box", IMAGES, generator)
    init_matched, _, _ = _model_assignment(models["box"], inputs, _predictions("box", 4, 2, generator))
    expected = [
        # 26 x 26 -> P3, centre (17, 19) -> (16, 16) = 2 * 8 + 2; 48 x 50 -> P4, (38, 35) -> (32, 32) = 64 + 2 * 4 + 2;
        # 12 x 10 -> P3 (level 1, clamped), (46, 9) -> (48, 8) = 1 * 8 + 6.
        {18: 0, 74: 1, 14: 2},
        # 60 x 42 -> P4, (32, 23) -> (32, 16) = 64 + 1 * 4 + 2;
        # 16 x 20 -> P3 (level 2, clamped), (38, 30) -> (40, 32) = 4 * 8 + 5.
        {70: 0, 37: 1},
    ]
    assert [{i: int(m[i]) for i in (m >= 0).nonzero()[:, 0].tolist()} for m in init_matched] == expected


def test_assignment_is_centre_point_then_atss_on_the_initial_boxes_and_skips_padding(case):
    init_matched, refine_matched, valid = case["model_assignment"]
    reference = case["reference"]
    assert torch.equal(valid, reference[2])
    assert torch.equal(init_matched, reference[0])
    assert torch.equal(refine_matched, reference[1])


# ---------------------------------------------------------------------------------------------------------
# Losses


def test_training_returns_the_class_loss_and_both_stages_of_every_landmark_set(case):
    sets = LOSS_WEIGHTS[case["task"]]
    assert set(case["losses"]) == {"loss_cls"} | {
        f"loss_{name}_{stage}" for name in sets for stage in ("init", "refine")
    }


def test_initial_landmark_loss_is_weighted_cross_iou_over_the_initial_positives(case):
    init_matched = case["reference"][0]
    for name, (weight, _) in LOSS_WEIGHTS[case["task"]].items():
        loss = _reference_landmark_loss(case["task"], name, 0, case["inputs"], case["predictions"], init_matched)
        _assert_value(case["losses"][f"loss_{name}_init"], weight * loss / _normalizer(init_matched))


def test_refined_landmark_loss_is_weighted_cross_iou_over_the_refinement_positives(case):
    refine_matched = case["reference"][1]
    for name, (_, weight) in LOSS_WEIGHTS[case["task"]].items():
        loss = _reference_landmark_loss(case["task"], name, 1, case["inputs"], case["predictions"], refine_matched)
        _assert_value(case["losses"][f"loss_{name}_refine"], weight * loss / _normalizer(refine_matched))


def test_class_loss_is_focal_loss_over_the_valid_points_per_refinement_positive(case):
    _, refine_matched, valid = case["reference"]
    expected = _reference_class_loss(case["inputs"], case["predictions"], refine_matched, valid)
    _assert_value(case["losses"]["loss_cls"], expected)


def test_cross_iou_loss_sees_vectors_in_units_of_point_base_scale_times_stride(models, monkeypatch):
    """One GT at point (32, 32) of P4: the initial stage's cross-IoU gets the crosses (in strides) / 3 and
    (landmark - (32, 32)) / (3 x 16); the refinement stage's, per positive point, / (3 x its stride)."""
    calls = []

    def recording(pred, target, **kwargs):
        calls.append((pred, target, kwargs["target_boxes"]))
        return cross_iou_loss(pred, target, **kwargs)

    monkeypatch.setattr(lsnet_module, "cross_iou_loss", recording)
    inputs, predictions = _one_gt_case()
    _training_losses(models["box"], inputs, predictions)
    (init_pred, init_target, init_boxes), (refine_pred, refine_target, refine_boxes) = calls
    landmarks, box = torch.tensor(ONE_GT_LANDMARKS), torch.tensor(ONE_GT_BOX)
    torch.testing.assert_close(init_pred, _per_point(predictions[1], crosses=True)[0, [ONE_GT_POINT]] / 3)
    torch.testing.assert_close(init_target, ((landmarks - torch.tensor([32.0, 32.0])) / 48)[None])
    torch.testing.assert_close(init_boxes, ((box - torch.tensor([32.0, 32.0, 32.0, 32.0])) / 48)[None])
    points, strides = _points_and_strides()
    positive = (_model_assignment(models["box"], inputs, predictions)[1][0] >= 0).nonzero()[:, 0]
    unit = 3 * strides[positive]
    torch.testing.assert_close(refine_pred, _per_point(predictions[2], crosses=True)[0, positive] / 3)
    torch.testing.assert_close(refine_target, (landmarks[None] - points[positive][:, None]) / unit[:, None, None])
    torch.testing.assert_close(refine_boxes, (box[None] - points[positive].repeat(1, 2)) / unit[:, None])


def test_crosses_that_decode_to_the_gt_landmarks_have_zero_landmark_loss(models):
    """At the positives of both stages, crosses (in strides) of the GT landmarks' vectors: the units of
    prediction and target agree, so both cross-IoU losses are 0 (the landmarks' box is the GT box: no
    penalty either)."""
    inputs, predictions = _one_gt_case()
    points, strides = _points_and_strides()
    vectors = (torch.tensor(ONE_GT_LANDMARKS)[None] - points[:, None]) / strides[:, None, None]
    gt_crosses = offsets_to_crosses(vectors, alpha=0.3)  # the target crosses' CROSS_IOU_ALPHA
    start = 0
    for level, (h, w) in enumerate(FEATURE_SIZES):
        here = gt_crosses[start : start + h * w].reshape(1, h, w, 20).permute(0, 3, 1, 2)
        predictions[2][level] = here.clone()
        if start <= ONE_GT_POINT < start + h * w:
            row, col = divmod(ONE_GT_POINT - start, w)
            predictions[1][level][0, :, row, col] = here[0, :, row, col]
        start += h * w
    losses = _training_losses(models["box"], inputs, predictions)
    assert losses["loss_box_init"].item() == pytest.approx(0.0, abs=1e-5)
    assert losses["loss_box_refine"].item() == pytest.approx(0.0, abs=1e-5)
    assert losses["loss_cls"] > 0


# ---------------------------------------------------------------------------------------------------------
# Ablations beyond the reference: QFL classes, ATSS on fixed anchor squares


def _iou_by_hand(a, b):
    """IoU of aligned XYXY boxes (P, 4); an inverted box (x1 < x0 or y1 < y0) has area 0 and overlaps nothing."""
    wh_a, wh_b = (a[:, 2:] - a[:, :2]).clamp(min=0), (b[:, 2:] - b[:, :2]).clamp(min=0)
    inter_wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = inter_wh.prod(1) * (wh_a.prod(1) > 0)
    return inter / (wh_a.prod(1) + wh_b.prod(1) - inter)


@pytest.mark.parametrize("task", ["box", "contour"])
def test_quality_focal_class_loss_targets_the_iou_of_the_refined_box(repo_root, task):
    """MODEL.LSNET.CLASS_LOSS quality_focal: at every valid point BCE(sigmoid(x), y) |y - sigmoid(x)|^1.5
    (FOCAL_LOSS_GAMMA as QFL's beta) summed over the classes, y the IoU of the positive's refined box (x of
    left / right, y of top / bottom landmarks; for contours their extent) with its GT's assignment box on
    the GT's class and 0 elsewhere; divided by the refinement positives. The landmark losses do not change."""
    config = BOX_CONFIG if task == "box" else CONTOUR_CONFIG
    model = build_model(_cfg(repo_root, config, *LOSS_OPTS, "MODEL.LSNET.CLASS_LOSS", "quality_focal")).train()
    generator = torch.Generator().manual_seed(11)
    inputs = _inputs(task, IMAGES, generator)
    predictions = _predictions(task, model.num_classes, len(inputs), generator)
    # Refined crosses that decode near the GT boxes, so that the IoU targets spread over (0, 1).
    points, strides = _points_and_strides()
    _, refine_matched, valid = _reference_assignment(task, inputs, predictions)
    logits = _per_point(predictions[0])
    refined = _per_point(predictions[2], crosses=True)
    targets = torch.zeros_like(logits)
    ious = []
    for i, (matched, x) in enumerate(zip(refine_matched, inputs)):
        positive = matched >= 0
        landmarks = (
            points[positive][:, None, :] + crosses_to_offsets(refined[i, positive]) * strides[positive][:, None, None]
        )
        boxes = _landmark_boxes(landmarks, task)
        iou = _iou_by_hand(boxes, _assignment_boxes(task, x["instances"])[matched[positive]])
        targets[i, positive.nonzero()[:, 0], x["instances"].gt_classes[matched[positive]]] = iou
        ious.append(iou)
    assert (torch.cat(ious) > 0).sum() >= 3  # a discriminating case: several non-trivial targets
    p = logits.sigmoid()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    expected = (bce * (targets - p).abs() ** 1.5)[valid].sum() / _normalizer(refine_matched)
    losses = _training_losses(model, inputs, predictions)
    _assert_value(losses["loss_cls"], expected)
    reference = _training_losses(build_model(_cfg(repo_root, config, *LOSS_OPTS)).train(), inputs, predictions)
    assert {k: v for k, v in losses.items() if k != "loss_cls"} == {
        k: v for k, v in reference.items() if k != "loss_cls"
    }


@pytest.mark.parametrize("task", ["box", "contour", "keypoint"])
def test_score_weighting_weights_each_refined_positive_by_its_best_class_probability(repo_root, task):
    """MODEL.LSNET.REFINE_LOSS_WEIGHTING score (GFL's box-loss weighting): loss_<set>_refine = the set's refined
    weight x sum over the refinement positives of s_p x cross-IoU_p / max(1, sum of s_p), s_p the highest
    sigmoid of the point's class logits; the initial and class losses do not change."""
    config = {"box": BOX_CONFIG, "contour": CONTOUR_CONFIG, "keypoint": KEYPOINT_CONFIG}[task]
    model = build_model(_cfg(repo_root, config, *LOSS_OPTS, "MODEL.LSNET.REFINE_LOSS_WEIGHTING", "score")).train()
    generator = torch.Generator().manual_seed(12)
    inputs = _inputs(task, IMAGES, generator)
    predictions = _predictions(task, model.num_classes, len(inputs), generator)
    _, refine_matched, _ = _reference_assignment(task, inputs, predictions)
    scores = _per_point(predictions[0]).sigmoid().amax(dim=2)  # (N, R)
    weight_sum = sum(s[m >= 0].sum() for s, m in zip(scores, refine_matched))
    assert weight_sum > 1  # the normalizer is the weights' sum, not its floor of 1
    losses = _training_losses(model, inputs, predictions)
    for name, (_, weight) in LOSS_WEIGHTS[task].items():
        loss = _reference_landmark_loss(task, name, 1, inputs, predictions, refine_matched, scores)
        _assert_value(losses[f"loss_{name}_refine"], weight * loss / weight_sum)
    reference = _training_losses(build_model(_cfg(repo_root, config, *LOSS_OPTS)).train(), inputs, predictions)
    assert {k: v for k, v in losses.items() if not k.endswith("_refine")} == {
        k: v for k, v in reference.items() if not k.endswith("_refine")
    }


def test_refinement_on_anchors_is_atss_on_squares_of_the_anchor_scale(repo_root):
    """MODEL.LSNET.REFINE_ASSIGN_ON anchors, REFINE_ANCHOR_SCALE 3, one 50 x 50 GT at (32, 32), initial
    crosses 0 (which the reference's assignment ranks as boxes of IoU 0, see the test of its positives above).
    By hand: the 24 candidates (9 nearest per level; 4 of P5, 1 each of P6, P7) are squares of side 3 stride;
    their IoUs with the GT: P3 9 x 0.2304; P4 centre 0.9216, 4 edges 0.4919, 4 corners 0.2931; P5 0.2713,
    2 x 0.2121, 0.1675; P6 0.0678; P7 0.0170: mean 0.2951 + std 0.1799 = 0.4750, which the P4 centre and
    its 4 edge neighbours pass. The initial stage keeps its centre point."""
    model = build_model(
        _cfg(
            repo_root,
            BOX_CONFIG,
            *LOSS_OPTS,
            "MODEL.LSNET.REFINE_ASSIGN_ON",
            "anchors",
            "MODEL.LSNET.REFINE_ANCHOR_SCALE",
            3.0,
        )
    ).train()
    inputs, predictions = _one_gt_case()
    init_matched, refine_matched, _ = _model_assignment(model, inputs, predictions)
    assert (init_matched[0] >= 0).nonzero()[:, 0].tolist() == [ONE_GT_POINT]
    p4 = [64 + 1 * 4 + 2, 64 + 2 * 4 + 1, 64 + 2 * 4 + 2, 64 + 2 * 4 + 3, 64 + 3 * 4 + 2]
    assert (refine_matched[0] >= 0).nonzero()[:, 0].tolist() == p4


# ---------------------------------------------------------------------------------------------------------
# Deformable towers


def test_deformable_towers_train_one_step_and_infer(repo_root):
    """MODEL.LSNET.DEFORMABLE_TOWERS True (the COCO setting) on the slim shapes config: DCNv2 towers, finite
    losses, a gradient for every tower parameter (offsets and modulation included), one SGD step, and
    detections with boxes, scores and classes."""
    from iou_aware.layers.deformable import ModulatedDeformConv

    torch.manual_seed(0)
    cfg = _cfg(repo_root, BOX_CONFIG, "MODEL.LSNET.DEFORMABLE_TOWERS", True, "MODEL.LSNET.SCORE_THRESH_TEST", 0.0)
    model = build_model(cfg).train()
    towers = {"cls_tower": model.head.cls_tower}
    towers.update({f"branches.{name}.tower": branch.tower for name, branch in model.head.branches.items()})
    assert all(isinstance(block[0], ModulatedDeformConv) for tower in towers.values() for block in tower)
    inputs = _inputs("box", IMAGES, torch.Generator().manual_seed(5))
    with EventStorage():
        losses = model(inputs)
    assert set(losses) == {"loss_cls", "loss_box_init", "loss_box_refine"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values()), losses
    sum(losses.values()).backward()
    for prefix, tower in towers.items():
        for name, param in tower.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, f"{prefix}.{name}"
        for i, block in enumerate(tower):
            # offset_conv's 27 outputs: 9 (dy, dx) tap offsets, then 9 modulations; both learn.
            grad = block[0].offset_conv.weight.grad
            assert grad[:18].abs().sum() > 0 and grad[18:].abs().sum() > 0, f"{prefix}.{i}.offset_conv"
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": inputs[0]["image"], "height": 64, "width": 64}])
    instances = output["instances"]
    assert len(instances) > 0
    assert set(instances.get_fields()) == {"pred_boxes", "scores", "pred_classes"}
    assert instances.image_size == (64, 64) and torch.isfinite(instances.pred_boxes.tensor).all()
