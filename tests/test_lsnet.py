"""LSNet (boxes): landmark head, centre-point assignment, decoding, mapper targets, losses, inference."""

import math

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.events import EventStorage

from iou_aware.config import add_iou_aware_config
from iou_aware.data import LandmarkDatasetMapper, flip_extreme_points
from iou_aware.engine import build_train_mapper
from iou_aware.layers import crosses_to_offsets, landmarks_to_boxes, offsets_to_crosses
from iou_aware.modeling import CentrePointAssigner, LSNet


def _cfg(repo_root, *opts):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(f"{repo_root}/configs/Shapes/lsnet_slim_R_FPN.yaml")
    cfg.merge_from_list(list(opts))
    return cfg


def _landmarks_of_boxes(boxes):
    """[top, left, bottom, right, centre] border midpoints of XYXY boxes, by hand."""
    x0, y0, x1, y1 = boxes.unbind(1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return torch.stack([torch.stack(p, dim=1) for p in ((cx, y0), (x0, cy), (cx, y1), (x1, cy), (cx, cy))], dim=1)


def _inputs(with_gt=True, size=128, num_images=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(num_images):
        instances = Instances((size, size))
        boxes = [[10.0, 12.0, 50.0, 60.0], [60.0, 64.0, 120.0, 110.0], [70.0, 8.0, 84.0, 20.0]] if with_gt else []
        instances.gt_boxes = Boxes(torch.tensor(boxes).reshape(-1, 4))
        instances.gt_classes = torch.tensor([0, 3, 1] if with_gt else [], dtype=torch.int64)
        instances.gt_box_landmarks = _landmarks_of_boxes(instances.gt_boxes.tensor)
        image = torch.randint(0, 256, (3, size, size), generator=generator).float()
        inputs.append({"image": image, "instances": instances, "height": size, "width": size})
    return inputs


def test_head_outputs_per_level(repo_root):
    model = build_model(_cfg(repo_root))
    assert type(model) is LSNet
    features = [torch.randn(2, 64, s, s) for s in (16, 8, 4, 2, 1)]
    logits, init, refine = model.head(features)  # one landmark set: box
    for level, feature in enumerate(features):
        size = feature.shape[-1]
        assert logits[level].shape == (2, 4, size, size)  # 4 shape classes
        assert init[level].shape == refine[level].shape == (2, 5 * 4, size, size)  # 5 landmarks x cross
        assert (init[level] >= 0).all() and (refine[level] >= 0).all()  # softplus


def test_refined_crosses_are_softplus_of_raw_plus_detached_initial(repo_root):
    """The refinement loss reaches the initial prediction only through the sampling points, scaled
    by GRADIENT_MUL: with 0 it does not reach it at all."""
    features = [torch.randn(1, 64, s, s) for s in (16, 8, 4, 2, 1)]
    for gradient_mul, reaches in ((0.0, False), (0.1, True)):
        torch.manual_seed(0)
        model = build_model(_cfg(repo_root, "MODEL.LSNET.GRADIENT_MUL", gradient_mul))
        _, _, refine = model.head(features)
        sum(r.sum() for r in refine).backward()
        grad = model.head.branches["box"].init_pred.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == reaches


@pytest.mark.parametrize("init, expected_std", [("normal", 0.01), ("kaiming", math.sqrt(2 / (64 * 9)))])
def test_initial_conv_init_draws_from_the_reference_or_he_normal(repo_root, init, expected_std):
    """The 3x3 conv before the initial landmarks: std 0.01 ("normal", the reference's normal_init)
    or He normal over the fan-out ("kaiming", mmcv's kaiming_init): sqrt(2 / (64 channels x 9 taps))
    = 0.0589 for the slim FPN's 64 channels; zero-mean, zero bias, for every landmark branch. The
    other convs of the branch keep the reference's std 0.01."""
    torch.manual_seed(0)
    model = build_model(
        _cfg(
            repo_root, "MODEL.LSNET.TASK", "keypoint", "MODEL.KEYPOINT_ON", True, "MODEL.LSNET.INITIAL_CONV_INIT", init
        )
    )
    for branch in model.head.branches.values():
        weight = branch.init_conv.weight  # (64, 64, 3, 3): 36864 draws, the std within ~1%
        assert weight.std().item() == pytest.approx(expected_std, rel=0.03)
        assert abs(weight.mean().item()) < 3 * expected_std / math.sqrt(weight.numel())
        assert (branch.init_conv.bias == 0).all()
        assert branch.init_pred.weight.std().item() == pytest.approx(0.01, rel=0.1)


def test_centre_point_assigner_by_hand():
    strides = [8, 16, 32]
    anchors = []
    for s, n in zip(strides, (16, 8, 4)):  # a 128 x 128 image
        ys, xs = torch.meshgrid(torch.arange(n) * s, torch.arange(n) * s, indexing="ij")
        points = torch.stack([xs.flatten(), ys.flatten()], dim=1).float()
        anchors.append(torch.cat([points - 2, points + 2], dim=1))
    gt = torch.tensor(
        [
            [81.0, 79.0, 121.0, 119.0],  # 40 x 40: floor(log2(40 / 4)) = 3 -> stride 8; centre (101, 99)
            [0.0, 0.0, 130.0, 128.0],  # ~129 px: floor(log2(32.2)) = 5 -> stride 32; centre (65, 64)
            [2.0, 2.0, 6.0, 6.0],  # 4 px: log2(1) = 0 -> clamped to stride 8; centre (4, 4)
        ]
    )
    matched = CentrePointAssigner(strides, scale=4, pos_num=1)(anchors, gt)
    # GT 0: nearest P3 point to (101, 99) is (104, 96): row 12, column 13.
    # GT 1: nearest P5 point to (65, 64) is (64, 64): P5 row 2, column 2.
    # GT 2: nearest P3 point to (4, 4): (0, 0), (8, 0), (0, 8), (8, 8) tie; topk picks one.
    expected = {12 * 16 + 13: 0, 256 + 64 + 2 * 4 + 2: 1}
    positives = {i: int(m) for i, m in enumerate(matched) if m >= 0}
    gt2 = [i for i, m in positives.items() if m == 2]
    assert len(gt2) == 1 and gt2[0] in (0, 1, 16, 17)
    del positives[gt2[0]]
    assert positives == expected


def test_centre_point_assigner_conflict_goes_to_the_nearest_gt():
    anchors = [torch.tensor([[0.0, 0.0, 0.0, 0.0], [8.0, 0.0, 8.0, 0.0]]), torch.zeros(0, 4), torch.zeros(0, 4)]
    # Both 40 px wide (level 0); point (8, 0) is at 0.1 widths from GT 0's centre, 0.2 from GT 1's.
    gt = torch.tensor([[-16.0, -20.0, 24.0, 20.0], [-20.0, -20.0, 20.0, 20.0]])
    matched = CentrePointAssigner([8, 16, 32], pos_num=2)(anchors, gt)
    assert matched.tolist() == [1, 0]
    assert (CentrePointAssigner([8, 16, 32])(anchors, torch.zeros(0, 4)) == -1).all()


def _grid_anchors(strides=(8, 16, 32), size=128):
    """Per level, the points (x, y) = (column * stride, row * stride) of a size x size batch,
    row-major, as 4 x 4 px XYXY squares; and those points concatenated (R, 2)."""
    anchors = []
    for s in strides:
        ys, xs = torch.meshgrid(torch.arange(size // s) * s, torch.arange(size // s) * s, indexing="ij")
        points = torch.stack([xs.flatten(), ys.flatten()], dim=1).float()
        anchors.append(torch.cat([points - 2, points + 2], dim=1))
    return anchors, torch.cat([(a[:, :2] + a[:, 2:]) / 2 for a in anchors])


def _positives(matched):
    """{point index: GT index} of the positives of an (R,) assignment."""
    return {i: int(matched[i]) for i in (matched >= 0).nonzero()[:, 0].tolist()}


def test_centre_point_assigner_takes_the_nearest_valid_point_by_hand():
    anchors, points = _grid_anchors()
    valid = (points < 96).all(dim=1)  # a 96 x 96 image in a 128 x 128 batch
    gt = torch.tensor(
        [
            # 4 x 4 px: clamped to stride 8; centre (94, 94). In units of 4 px, (96, 96) (row 12,
            # column 12) is 0.71 away but padding, as (88, 96) and (96, 88); next: (88, 88), 2.12.
            [92.0, 92.0, 96.0, 96.0],
            # 40 x 36: floor(log2(37.9 / 4)) = 3 -> stride 8; centre (40, 42) -> (40, 40), inside.
            [20.0, 24.0, 60.0, 60.0],
        ]
    )
    assigner = CentrePointAssigner([8, 16, 32], scale=4, pos_num=1)
    assert _positives(assigner(anchors, gt)) == {12 * 16 + 12: 0, 5 * 16 + 5: 1}
    assert _positives(assigner(anchors, gt, valid=valid)) == {11 * 16 + 11: 0, 5 * 16 + 5: 1}


def test_centre_point_assigner_with_a_valid_mask_is_the_assigner_on_the_valid_points_alone():
    anchors, points = _grid_anchors()
    level_of = torch.cat([torch.full((len(a),), i) for i, a in enumerate(anchors)])
    g = torch.Generator().manual_seed(0)
    assigner = CentrePointAssigner([8, 16, 32], scale=4, pos_num=3)
    for _ in range(4):
        valid = torch.rand(len(points), generator=g) > 0.5
        xy = torch.rand(6, 2, generator=g) * 100
        gt = torch.cat([xy, xy + 4 + torch.rand(6, 2, generator=g) * 150], dim=1)
        alone = assigner([a[valid[level_of == i]] for i, a in enumerate(anchors)], gt)
        expected = torch.full((len(points),), -1, dtype=torch.int64)
        expected[valid] = alone
        assert (expected >= 0).sum() >= 6
        assert torch.equal(assigner(anchors, gt, valid=valid), expected)


def test_a_gt_whose_nearest_point_is_padding_is_assigned_the_nearest_point_inside_its_image(repo_root):
    """A 96 x 96 image in a 128 x 128 batch: its points with x or y >= 96 are padding. Its 4 x 4 px
    GT at (92, 92, 96, 96) goes to P3 (stride 8), where the point nearest its centre (94, 94) is
    (96, 96), padding: its initial positive is the nearest point inside the image, (88, 88) (see
    test_centre_point_assigner_takes_the_nearest_valid_point_by_hand). The refinement assigner
    sees the same points inside the image."""
    model = build_model(_cfg(repo_root))
    inputs = _inputs(size=128)
    boxes = torch.tensor([[92.0, 92.0, 96.0, 96.0], [20.0, 24.0, 60.0, 60.0]])
    instances = Instances((96, 96), gt_boxes=Boxes(boxes), gt_classes=torch.tensor([1, 2]))
    instances.gt_box_landmarks = _landmarks_of_boxes(boxes)
    inputs[1] = {"image": inputs[1]["image"][:, :96, :96], "instances": instances, "height": 96, "width": 96}
    refine_valid = []
    refine_assigner = model.refine_assigner

    def recording(anchors, gt_boxes, valid=None):
        refine_valid.append(valid)
        return refine_assigner(anchors, gt_boxes, valid=valid)

    model.refine_assigner = recording
    with torch.no_grad():
        images = model.preprocess_image(inputs)
        assert images.tensor.shape[-2:] == (128, 128)
        features = model.backbone(images.tensor)
        features = [features[f] for f in model.head_in_features]
        targets = model.assign(images, features, model.head(features), [x["instances"] for x in inputs])
    init = targets.init_matched[1]
    # P3 is a 16 x 16 grid: (88, 88) is row 11, column 11; the second GT's (40, 40) row 5, column 5.
    assert _positives(init) == {11 * 16 + 11: 0, 5 * 16 + 5: 1}
    assert targets.points[11 * 16 + 11].tolist() == [88.0, 88.0] and targets.strides[11 * 16 + 11] == 8
    assert targets.valid[1].tolist() == (targets.points < 96).all(dim=1).tolist() and targets.valid[0].all()
    assert [v.tolist() for v in refine_valid] == [v.tolist() for v in targets.valid]
    assert not (targets.refine_matched[1][~targets.valid[1]] >= 0).any()


def test_decoding_crosses_to_landmarks_and_boxes_by_hand(repo_root):
    model = build_model(_cfg(repo_root))
    # Anchor point (16, 8), stride 8. Landmark vectors in strides: top (0.5, -2), left (-1.5, 0.25),
    # bottom (0, 3), right (2, 1), centre (0.25, 0.5).
    offsets = torch.tensor([[[0.5, -2.0], [-1.5, 0.25], [0.0, 3.0], [2.0, 1.0], [0.25, 0.5]]])
    crosses = offsets_to_crosses(offsets, alpha=0.2)
    assert crosses[0, 0].tolist() == pytest.approx([2.0, 0.4, 0.1, 0.5])  # [y-, y+, x-, x+]
    landmarks = model.decode_landmarks(crosses, torch.tensor([[16.0, 8.0]]), torch.tensor([8.0]))
    expected = [[20.0, -8.0], [4.0, 10.0], [16.0, 32.0], [32.0, 16.0], [18.0, 12.0]]
    torch.testing.assert_close(landmarks[0], torch.tensor(expected))
    # Box: x of left, y of top, x of right, y of bottom.
    assert landmarks_to_boxes(landmarks, "box")[0].tolist() == pytest.approx([4.0, -8.0, 32.0, 32.0])
    assert torch.allclose(crosses_to_offsets(crosses), offsets)


def test_inference_decodes_the_refined_landmarks_of_the_best_point(repo_root):
    """Head outputs set by hand: one confident location, whose refined crosses decode to a known
    box; everything else below the threshold."""
    model = build_model(_cfg(repo_root)).eval()
    sizes = (16, 8, 4, 2, 1)
    logits = [torch.full((1, 4, s, s), -10.0) for s in sizes]
    crosses = [torch.zeros(1, 20, s, s) for s in sizes]
    logits[1][0, 2, 3, 5] = 3.0  # P4 (stride 16), class 2, point (x, y) = (80, 48)
    offsets = torch.tensor([[[0.0, -1.0], [-1.5, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 0.0]]])  # strides
    crosses[1][0, :, 3, 5] = offsets_to_crosses(offsets)[0].flatten()
    images = type("Images", (), {"image_sizes": [(128, 128)]})()
    features = [torch.zeros(1, 1, s, s) for s in sizes]
    (result,) = model.forward_inference(images, features, (logits, crosses, crosses))
    assert len(result) == 1
    assert result.pred_classes.tolist() == [2]
    assert result.scores.tolist() == pytest.approx([1 / (1 + math.exp(-3.0))])
    assert result.pred_boxes.tensor.tolist() == [[80 - 24.0, 48 - 16.0, 80 + 16.0, 48 + 32.0]]


def test_training_losses_are_finite_and_reach_every_branch(repo_root):
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root))
    model.train()
    with EventStorage():
        losses = model(_inputs())
    assert set(losses) == {"loss_cls", "loss_box_init", "loss_box_refine"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    head, box = model.head, model.head.branches["box"]
    for name, param in [
        ("init_pred", box.init_pred.weight),
        ("refine", box.refine.predict.weight),
        ("refine_sampling", box.refine.sample.weight),
        ("cls", head.cls_branch.predict.weight),
        ("cls_sampling", head.cls_branch.sample.weight),
        ("tower", box.tower[0][0].weight),
    ]:
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_images_without_objects_give_finite_losses(repo_root):
    model = build_model(_cfg(repo_root))
    model.train()
    with EventStorage():
        losses = model(_inputs(with_gt=False))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_box_init"] == 0 and losses["loss_box_refine"] == 0
    sum(losses.values()).backward()


def test_steps_on_one_batch_lower_every_loss(repo_root):
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root))
    model.train()
    inputs = _inputs(num_images=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    with EventStorage():
        for _ in range(20):
            losses = model(inputs)
            history.append({k: v.item() for k, v in losses.items()})
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    for key in history[0]:
        assert all(math.isfinite(h[key]) for h in history), key
        # Averages of 3 steps: the refinement stage's assignment moves with the initial boxes,
        # so a single step's loss can jump.
        first, last = (sum(h[key] for h in part) / 3 for part in (history[:3], history[-3:]))
        assert last < 0.9 * first, (key, first, last)


def test_without_landmark_targets_the_model_derives_them_from_the_standard_fields(repo_root):
    """A user's own mapper gives gt_boxes / gt_masks only: the losses equal those of the targets
    LandmarkDatasetMapper writes (here border midpoints of the boxes, and extreme points of masks)."""
    from detectron2.structures import PolygonMasks

    from iou_aware.structures.landmarks import extreme_points

    model = build_model(_cfg(repo_root))
    inputs = _inputs()
    for x in inputs:
        boxes = x["instances"].gt_boxes.tensor.tolist()
        x["instances"].gt_masks = PolygonMasks([[[x0, y0, x1, y0, (x0 + x1) / 2, y1]] for x0, y0, x1, y1 in boxes])
    explicit = [dict(x) for x in inputs]
    for x in explicit:
        instances = x["instances"]
        polygons = instances.gt_masks.polygons
        targets = [extreme_points(p, b) for p, b in zip(polygons, instances.gt_boxes.tensor.numpy())]
        x["instances"] = Instances(instances.image_size, gt_boxes=instances.gt_boxes, gt_classes=instances.gt_classes)
        x["instances"].gt_box_landmarks = torch.as_tensor(np.stack(targets))
    for x in inputs:
        x["instances"].remove("gt_box_landmarks")
    with EventStorage():
        torch.manual_seed(0)
        derived = model(inputs)
        torch.manual_seed(0)
        reference = model(explicit)
    assert {k: v.item() for k, v in derived.items()} == pytest.approx({k: v.item() for k, v in reference.items()})


def test_training_without_any_target_names_the_mapper(repo_root):
    model = build_model(_cfg(repo_root, "MODEL.LSNET.TASK", "contour", "MODEL.MASK_ON", True))
    inputs = _inputs()
    for x in inputs:
        x["instances"].remove("gt_box_landmarks")  # no contour landmarks, no masks either
    with EventStorage(), pytest.raises(ValueError, match="gt_masks.*LandmarkDatasetMapper"):
        model(inputs)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("MODEL.LSNET.TASK", "polygon", "MODEL.LSNET.TASK"),
        ("MODEL.LSNET.DEFORM_CONV_IMPL", "cuda", "MODEL.LSNET.DEFORM_CONV_IMPL"),
        ("MODEL.LSNET.NUM_KERNEL_POINTS", 5, "MODEL.LSNET.NUM_KERNEL_POINTS"),
        ("MODEL.LSNET.IN_FEATURES", ["p3", "p9"], "MODEL.LSNET.IN_FEATURES"),
        ("MODEL.LSNET.CLASS_LOSS", "softmax", "MODEL.LSNET.CLASS_LOSS"),
        ("MODEL.LSNET.REFINE_ASSIGN_ON", "gt", "MODEL.LSNET.REFINE_ASSIGN_ON"),
        ("MODEL.LSNET.REFINE_ANCHOR_SCALE", 0.0, "MODEL.LSNET.REFINE_ANCHOR_SCALE"),
        ("MODEL.LSNET.REFINE_LOSS_WEIGHTING", "iou", "MODEL.LSNET.REFINE_LOSS_WEIGHTING"),
        ("MODEL.LSNET.INITIAL_CONV_INIT", "xavier", "MODEL.LSNET.INITIAL_CONV_INIT"),
    ],
)
def test_bad_config_values_are_named(repo_root, key, value, message):
    with pytest.raises(ValueError, match=message):
        build_model(_cfg(repo_root, key, value))


def test_fused_deformable_convs_without_the_kernel_are_refused_at_build(repo_root, monkeypatch):
    from iou_aware.layers import deformable

    monkeypatch.setattr(deformable, "_cpu_kernels", None)  # as on a machine that could not build it
    with pytest.raises(ValueError, match="DEFORM_CONV_IMPL = 'fused' needs iou_aware._C"):
        build_model(_cfg(repo_root, "MODEL.LSNET.DEFORM_CONV_IMPL", "fused"))
    build_model(_cfg(repo_root, "MODEL.LSNET.DEFORM_CONV_IMPL", "auto"))  # auto falls back to grid_sample


def _kite_record(width=100, height=80):
    """An instance whose extreme points are unique vertices: top (40, 10), left (10, 30),
    bottom (50, 70), right (90, 40)."""
    polygon = [40.0, 10.0, 10.0, 30.0, 50.0, 70.0, 90.0, 40.0]
    return {
        "file_name": "unused.png",
        "image_id": 0,
        "height": height,
        "width": width,
        "annotations": [
            {
                "bbox": [10.0, 10.0, 90.0, 70.0],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": 1,
                "segmentation": [polygon],
                "iscrowd": 0,
            }
        ],
    }


def test_mapper_landmarks_are_extreme_points_and_mirror_under_flip(monkeypatch):
    from detectron2.data import detection_utils

    monkeypatch.setattr(detection_utils, "read_image", lambda *a, **k: np.zeros((80, 100, 3), dtype=np.uint8))
    plain = LandmarkDatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    flipped = LandmarkDatasetMapper(is_train=True, augmentations=[T.HFlipTransform(100)], image_format="BGR")
    landmarks = plain(_kite_record())["instances"].gt_box_landmarks
    expected = [[40, 10], [10, 30], [50, 70], [90, 40], [50, 40]]  # top, left, bottom, right, centre
    assert landmarks[0].tolist() == expected
    mirrored = flipped(_kite_record())["instances"]
    assert mirrored.gt_box_landmarks[0].tolist() == flip_extreme_points(np.array(expected, np.float32), 100).tolist()
    assert mirrored.gt_box_landmarks[0].tolist() == [[60, 10], [10, 40], [50, 70], [90, 30], [50, 40]]
    assert not mirrored.has("gt_masks")  # polygons are read for the landmarks only


def test_mapper_without_polygons_uses_border_midpoints(monkeypatch):
    from detectron2.data import detection_utils

    monkeypatch.setattr(detection_utils, "read_image", lambda *a, **k: np.zeros((80, 100, 3), dtype=np.uint8))
    record = _kite_record()
    del record["annotations"][0]["segmentation"]
    mapper = LandmarkDatasetMapper(is_train=True, augmentations=[], image_format="BGR")
    landmarks = mapper(record)["instances"].gt_box_landmarks
    assert landmarks[0].tolist() == [[50, 10], [10, 40], [50, 70], [90, 40], [50, 40]]


def test_train_mapper_follows_the_meta_architecture(repo_root):
    assert isinstance(build_train_mapper(_cfg(repo_root)), LandmarkDatasetMapper)
    cfg = _cfg(repo_root, "MODEL.META_ARCHITECTURE", "RetinaNet")
    assert not isinstance(build_train_mapper(cfg), LandmarkDatasetMapper)


def test_box_loss_penalizes_against_the_annotation_box_not_the_landmarks_box(repo_root):
    """Landmarks whose box (0, 0, 32, 24) is not the annotation box (0, 0, 32, 32), predicted
    exactly: the cross-IoU is 1, so the loss is the CIoU-style penalty against the annotation box."""
    model = build_model(_cfg(repo_root))
    points = torch.tensor([[16.0, 16.0], [32.0, 16.0]])
    strides = torch.tensor([8.0, 8.0])
    instances = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[0.0, 0.0, 32.0, 32.0]])))
    landmarks = torch.tensor([[[16.0, 0.0], [0.0, 12.0], [16.0, 24.0], [32.0, 12.0], [16.0, 12.0]]])
    instances.gt_box_landmarks = landmarks
    unit = model.point_base_scale * 8  # the loss's unit: point_base_scale x stride
    crosses = torch.zeros(1, 2, 5, 4)
    crosses[0, 0] = offsets_to_crosses((landmarks[0] - points[0]) / unit) * model.point_base_scale
    matched = [torch.tensor([0, -1])]
    loss = model._landmark_loss("box", [crosses], matched, points, strides, [instances])
    # In units of 32 px around the point (16, 16): predicted box (-0.5, -0.5, 0.5, 0.25), GT box
    # (-0.5, -0.5, 0.5, 0.5): rho^2 = 0.125^2, c^2 = 2, v = 4 / pi^2 (atan(1) - atan(1 / 0.75))^2.
    eps = 1e-6
    v = 4 / math.pi**2 * (math.atan(1 / (1 + eps)) - math.atan(1 / (0.75 + eps))) ** 2
    expected = 0.125**2 / (2 + eps) + v**2 / (v + eps)
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    assert expected > 0.01


def test_points_in_the_padding_of_a_batch_are_neither_positive_nor_negative(repo_root):
    """Images of 128 x 128 and 128 (h) x 64 (w) padded into one batch: the second image's points
    with x >= 64 are padding; raising their logits changes no loss (the reference's valid flags)."""
    points = torch.tensor([[0.0, 0.0], [56.0, 8.0], [64.0, 8.0], [8.0, 127.0], [8.0, 128.0]])
    inside = LSNet.points_inside_images(points, [(128, 128), (128, 64)])
    assert inside.tolist() == [[True, True, True, True, False], [True, True, False, True, False]]

    torch.manual_seed(0)
    model = build_model(_cfg(repo_root))
    inputs = _inputs(size=128)
    inputs[1]["image"] = inputs[1]["image"][:, :, :64]
    inputs[1]["instances"] = inputs[1]["instances"][[0]]  # the box inside x < 64
    head_forward = model.head.forward

    def losses(padding_logit):
        def forward(features):
            logits, *rest = head_forward(features)
            for level, stride in enumerate((8, 16, 32, 64, 128)):
                first_padded = -(-64 // stride)  # columns with x = j * stride >= 64
                logits[level] = logits[level].clone()
                logits[level][1, :, :, first_padded:] += padding_logit
            return [logits, *rest]

        model.head.forward = forward
        torch.manual_seed(0)
        with EventStorage():
            return {k: v.item() for k, v in model(inputs).items()}

    plain, raised = losses(0.0), losses(20.0)
    assert plain == pytest.approx(raised, rel=1e-6)
