"""LSNet for instance masks (contour landmarks) and pose (keypoint landmarks): the same head and loss
switched by MODEL.LSNET.TASK; targets, losses, decoding to masks and keypoints."""

import math

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import detection_utils
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.events import EventStorage

from iou_aware.config import add_iou_aware_config
from iou_aware.data import LandmarkDatasetMapper, contour_landmarks, flip_contour
from iou_aware.data.stickmen import KEYPOINT_FLIP_MAP, KEYPOINT_NAMES
from iou_aware.layers import landmarks_to_boxes, offsets_to_crosses
from iou_aware.modeling import LSNet
from iou_aware.modeling.postprocessing import rasterize_polygons

CONTOUR_CONFIG = "configs/Shapes/lsnet_contour_slim_R_FPN.yaml"
KEYPOINT_CONFIG = "configs/Stickmen/lsnet_keypoint_slim_R_FPN.yaml"


def _cfg(repo_root, config, *opts):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(f"{repo_root}/{config}")
    cfg.merge_from_list(list(opts))
    return cfg


def _square_contours(boxes):
    """Contour landmarks of the rectangles ``boxes`` (G, 4)."""
    polygons = [[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in boxes.tolist()]
    return torch.as_tensor(np.stack([contour_landmarks(p) for p in polygons]))


def _inputs(task, size=128, num_images=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    boxes = torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 64.0, 120.0, 110.0], [70.0, 8.0, 84.0, 20.0]])
    inputs = []
    for _ in range(num_images):
        instances = Instances((size, size), gt_boxes=Boxes(boxes.clone()))
        if task == "contour":
            instances.gt_classes = torch.tensor([0, 3, 1])
            instances.gt_contour_landmarks = _square_contours(boxes)
        else:
            instances.gt_classes = torch.zeros(3, dtype=torch.int64)
            x0, y0, x1, y1 = boxes.unbind(1)
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            mid = [(cx, y0), (x0, cy), (cx, y1), (x1, cy), (cx, cy)]
            instances.gt_box_landmarks = torch.stack([torch.stack(p, 1) for p in mid], 1)
            xy = boxes[:, None, :2] + torch.rand(3, 17, 2, generator=generator) * (
                boxes[:, None, 2:] - boxes[:, None, :2]
            )
            instances.gt_keypoint_landmarks = torch.cat([xy, torch.stack([cx, cy], 1)[:, None]], 1)
            visible = torch.rand(3, 18, generator=generator) > 0.3
            visible[:, -1] = True
            instances.gt_keypoint_visible = visible
        image = torch.randint(0, 256, (3, size, size), generator=generator).float()
        inputs.append({"image": image, "instances": instances, "height": size, "width": size})
    return inputs


@pytest.mark.parametrize(
    "config, sets",
    [(CONTOUR_CONFIG, {"contour": 37}), (KEYPOINT_CONFIG, {"box": 5, "keypoint": 18})],
)
def test_head_outputs_per_task(repo_root, config, sets):
    model = build_model(_cfg(repo_root, config))
    assert type(model) is LSNet
    assert {k: s.num_landmarks for k, s in model.head.landmark_sets.items()} == sets
    features = [torch.randn(1, 64, s, s) for s in (16, 8, 4, 2, 1)]
    outputs = model.head(features)
    assert len(outputs) == 1 + 2 * len(sets)
    num_classes = model.num_classes
    for level, size in enumerate((16, 8, 4, 2, 1)):
        assert outputs[0][level].shape == (1, num_classes, size, size)
        for i, num_landmarks in enumerate(sets.values()):
            for stage in (1 + 2 * i, 2 + 2 * i):
                assert outputs[stage][level].shape == (1, 4 * num_landmarks, size, size)


def test_feat_channels_widens_every_tower_and_prediction_conv(repo_root):
    model = build_model(_cfg(repo_root, KEYPOINT_CONFIG, "MODEL.LSNET.FEAT_CHANNELS", 96))
    head = model.head
    for tower in [head.cls_tower] + [branch.tower for branch in head.branches.values()]:
        assert tower[0][0].in_channels == 64  # the FPN's channels
        assert all(block[0].out_channels == 96 for block in tower)
    assert head.cls_branch.predict.in_channels == 96
    assert all(branch.refine.fuse.in_channels == 3 * 96 for branch in head.branches.values())
    outputs = head([torch.randn(1, 64, s, s) for s in (16, 8, 4, 2, 1)])
    assert outputs[0][0].shape == (1, 1, 16, 16) and outputs[-1][0].shape == (1, 4 * 18, 16, 16)
    default = build_model(_cfg(repo_root, KEYPOINT_CONFIG)).head
    assert default.cls_tower[0][0].out_channels == 64
    with pytest.raises(ValueError, match="FEAT_CHANNELS"):
        build_model(_cfg(repo_root, KEYPOINT_CONFIG, "MODEL.LSNET.FEAT_CHANNELS", -1))


@pytest.mark.parametrize("config, task", [(CONTOUR_CONFIG, "contour"), (KEYPOINT_CONFIG, "keypoint")])
def test_training_losses_are_finite_and_decrease(repo_root, config, task):
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root, config))
    model.train()
    inputs = _inputs(task)
    # Pose trains its box set with weight 0.1, so the boxes the refinement stage's ATSS sees stay
    # untrained longer; a gentler rate keeps 12 steps on one batch out of assignment jumps.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01 if task == "contour" else 0.003, momentum=0.9)
    history = []
    with EventStorage():
        for _ in range(12):
            losses = model(inputs)
            history.append({k: v.item() for k, v in losses.items()})
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    expected = {"loss_cls", f"loss_{task}_init", f"loss_{task}_refine"}
    if task == "keypoint":
        expected |= {"loss_box_init", "loss_box_refine"}
    assert set(history[0]) == expected
    for key in expected:
        assert all(math.isfinite(h[key]) for h in history), key
        first, last = (sum(h[key] for h in part) / 3 for part in (history[:3], history[-3:]))
        if task == "keypoint" and key == "loss_box_init":
            # The pose's auxiliary box set trains at weight 0.1: its initial stage moves by under 1%
            # in 12 steps at this rate, less than what the shared features' changes move it (the
            # box task above checks that this loss decreases at weight 1.0).
            assert abs(last - first) < 0.02 * first, (key, first, last)
            continue
        assert last < first, (key, first, last)


def test_pose_box_set_is_weighted_as_the_reference(repo_root):
    """Box set of pose: 0.1 / 0.2 of its cross-IoU; the keypoints 1.0 / 2.0."""
    model = build_model(_cfg(repo_root, KEYPOINT_CONFIG))
    assert model.loss_weights["box"] == (0.1, 0.2) and model.loss_weights["keypoint"] == (1.0, 2.0)
    box_model = build_model(_cfg(repo_root, "configs/Shapes/lsnet_slim_R_FPN.yaml"))
    assert box_model.loss_weights["box"] == (1.0, 2.0)


def test_invisible_keypoints_change_nothing(repo_root):
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root, KEYPOINT_CONFIG))
    model.train()
    inputs = _inputs("keypoint")
    moved = _inputs("keypoint")
    for x in moved:
        instances = x["instances"]
        invisible = ~instances.gt_keypoint_visible
        assert invisible.any()
        instances.gt_keypoint_landmarks[invisible] = torch.tensor([1e4, -1e4])
    with EventStorage():
        a = model(inputs)
        b = model(moved)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _run_inference_with(model, logits, sets_crosses, image_size=(128, 128)):
    images = type("Images", (), {"image_sizes": [image_size]})()
    features = [torch.zeros(1, 1, s, s) for s in (16, 8, 4, 2, 1)]
    predictions = [logits]
    for crosses in sets_crosses:
        predictions += [crosses, crosses]  # initial = refined: inference reads the refined ones
    (result,) = model.forward_inference(images, features, predictions)
    return result


def _one_confident_location(num_classes, num_landmarks_per_set, offsets_per_set):
    """Logits and crosses with one confident location: P4 (stride 16), point (x, y) = (80, 48)."""
    sizes = (16, 8, 4, 2, 1)
    logits = [torch.full((1, num_classes, s, s), -10.0) for s in sizes]
    logits[1][0, 0, 3, 5] = 2.0
    sets = []
    for num_landmarks, offsets in zip(num_landmarks_per_set, offsets_per_set):
        crosses = [torch.zeros(1, 4 * num_landmarks, s, s) for s in sizes]
        crosses[1][0, :, 3, 5] = offsets_to_crosses(offsets[None])[0].flatten()
        sets.append(crosses)
    return logits, sets


def test_contour_inference_gives_polygon_masks_and_extent_boxes(repo_root):
    model = build_model(_cfg(repo_root, CONTOUR_CONFIG)).eval()
    angles = torch.arange(36) * (2 * math.pi / 36)
    contour = torch.stack([2.0 * torch.sin(angles), 1.5 * torch.cos(angles)], 1)  # strides, an ellipse
    offsets = torch.cat([contour, torch.zeros(1, 2)])
    logits, sets = _one_confident_location(4, [37], [offsets])
    result = _run_inference_with(model, logits, sets)
    assert len(result) == 1
    polygon = torch.tensor([80.0, 48.0]) + 16 * contour
    torch.testing.assert_close(result.pred_polygons[0], polygon)
    expected_box = torch.cat([polygon.min(0).values, polygon.max(0).values])
    torch.testing.assert_close(result.pred_boxes.tensor[0], expected_box)


def test_keypoint_inference_scores_keypoints_with_the_detection(repo_root):
    model = build_model(_cfg(repo_root, KEYPOINT_CONFIG)).eval()
    box_offsets = torch.tensor([[0.0, -2.0], [-1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 0.0]])
    keypoint_offsets = torch.linspace(-1, 1, 36).reshape(18, 2)
    logits, sets = _one_confident_location(1, [5, 18], [box_offsets, keypoint_offsets])
    result = _run_inference_with(model, logits, sets)
    assert len(result) == 1
    score = 1 / (1 + math.exp(-2.0))
    assert result.scores.tolist() == pytest.approx([score])
    assert result.pred_boxes.tensor.tolist() == [[80 - 16.0, 48 - 32.0, 80 + 16.0, 48 + 32.0]]
    keypoints = result.pred_keypoints[0]
    assert keypoints.shape == (17, 3)
    torch.testing.assert_close(keypoints[:, :2], torch.tensor([80.0, 48.0]) + 16 * keypoint_offsets[:17])
    assert keypoints[:, 2].tolist() == pytest.approx([score] * 17)


def test_keypoints_are_clamped_to_the_output_image(repo_root):
    """One detection at (80, 48) (stride 16) of a 128 x 128 input shown at 256 x 256, with keypoints
    left of, right of, above and below the image: at the output resolution x is clamped to
    [0, 256] and y to [0, 256] (the output image's width and height, as the reference)."""
    model = build_model(_cfg(repo_root, KEYPOINT_CONFIG)).eval()
    box_offsets = torch.tensor([[0.0, -2.0], [-1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 0.0]])
    keypoint_offsets = torch.zeros(18, 2)
    keypoint_offsets[:5] = torch.tensor([[-6.0, 0.0], [4.0, 0.0], [0.0, -4.0], [0.0, 6.0], [2.5, 4.0]])  # strides
    logits, sets = _one_confident_location(1, [5, 18], [box_offsets, keypoint_offsets])
    predictions = [logits] + [crosses for set_crosses in sets for crosses in (set_crosses, set_crosses)]
    model.head.forward = lambda features: predictions
    with torch.no_grad():
        (output,) = model([{"image": torch.zeros(3, 128, 128), "height": 256, "width": 256}])
    keypoints = output["instances"].pred_keypoints
    assert keypoints.shape == (1, 17, 3)
    # Input x, y: (-16, 48), (144, 48), (80, -16), (80, 144), (120, 112), then (80, 48); x 2 at the output.
    expected = [[0.0, 96.0], [256.0, 96.0], [160.0, 0.0], [160.0, 256.0], [240.0, 224.0]] + [[160.0, 96.0]] * 12
    torch.testing.assert_close(keypoints[0, :, :2], torch.tensor(expected))
    assert keypoints[0, :, 2].tolist() == pytest.approx([1 / (1 + math.exp(-2.0))] * 17)


def _uniform_predictions(features, num_classes, offsets_per_set):
    """Head outputs with logit 2 for every class and the crosses of ``offsets_per_set`` (per landmark
    set, (L, 2) in strides) at every location, from the features with tensor ops: a trace follows
    the features' sizes."""
    logits, sets = [], [[] for _ in offsets_per_set]
    for feature in features:
        zero = feature[:, :1] * 0  # (N, 1, H, W)
        logits.append(zero.expand(-1, num_classes, -1, -1) + 2.0)
        for crosses, offsets in zip(sets, offsets_per_set):
            crosses.append(zero + offsets_to_crosses(offsets[None])[0].flatten()[None, :, None, None])
    return [logits] + [crosses for set_crosses in sets for crosses in (set_crosses, set_crosses)]


def test_traced_keypoints_are_clamped_to_the_image_of_each_call(repo_root):
    """Traced (as tools/export.py) on a 128 x 128 image and run on a 64 (h) x 96 (w) one: the
    clamping bounds follow the image, they are not the traced size's."""
    from detectron2.export import TracingAdapter

    model = build_model(_cfg(repo_root, KEYPOINT_CONFIG)).eval()
    box_offsets = torch.tensor([[0.0, -1.0], [-1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    keypoint_offsets = torch.zeros(18, 2)
    keypoint_offsets[0], keypoint_offsets[1] = torch.tensor([-20.0, -20.0]), torch.tensor([20.0, 20.0])  # >= 160 px
    model.head.forward = lambda features: _uniform_predictions(features, 1, [box_offsets, keypoint_offsets])
    adapter = TracingAdapter(model, [{"image": torch.zeros(3, 128, 128)}], lambda m, x: [r["instances"] for r in m(x)])
    with torch.no_grad():
        traced = torch.jit.trace(adapter.eval(), (torch.zeros(3, 128, 128),), check_trace=False)
        for height, width in ((128, 128), (64, 96)):
            image = torch.zeros(3, height, width)
            (instances,) = adapter.outputs_schema(traced(image))
            (eager,) = model([{"image": image}])
            keypoints = instances.pred_keypoints
            assert len(instances) > 0 and keypoints.shape[1:] == (17, 3)
            assert (keypoints[:, 0, :2] == 0).all()
            assert (keypoints[:, 1, :2] == torch.tensor([float(width), float(height)])).all()
            torch.testing.assert_close(keypoints, eager["instances"].pred_keypoints)


@pytest.mark.parametrize("min_area, kept", [(4000.0, 1), (8192.0, 0)])
def test_min_box_area_is_measured_on_the_output_image(repo_root, min_area, kept):
    """One 32 x 64 px detection on a 128 x 128 input shown at 256 x 256: 8192 px^2 there (2048 on the
    network input); dropped when its area is at most MIN_BOX_AREA_TEST, after NMS, as the reference."""
    model = build_model(_cfg(repo_root, KEYPOINT_CONFIG, "MODEL.LSNET.MIN_BOX_AREA_TEST", min_area)).eval()
    box_offsets = torch.tensor(
        [[0.0, -2.0], [-1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 0.0]]
    )  # 32 x 64 px at stride 16
    logits, sets = _one_confident_location(1, [5, 18], [box_offsets, torch.zeros(18, 2)])
    predictions = [logits] + [crosses for set_crosses in sets for crosses in (set_crosses, set_crosses)]
    model.head.forward = lambda features: predictions
    with torch.no_grad():
        (output,) = model([{"image": torch.zeros(3, 128, 128), "height": 256, "width": 256}])
    assert len(output["instances"]) == kept
    if kept:
        assert output["instances"].pred_boxes.area().item() == pytest.approx(8192.0)


def test_forward_scales_polygons_and_fills_masks_at_the_output_resolution(repo_root):
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root, CONTOUR_CONFIG, "MODEL.LSNET.SCORE_THRESH_TEST", 0.0)).eval()
    image = torch.randint(0, 256, (3, 96, 128)).float()
    with torch.no_grad():
        (output,) = model([{"image": image, "height": 48, "width": 64}])
    instances = output["instances"]
    assert len(instances) > 0
    assert instances.pred_masks.shape == (len(instances), 48, 64) and instances.pred_masks.dtype == torch.bool
    torch.testing.assert_close(instances.pred_masks, rasterize_polygons(instances.pred_polygons, 48, 64))
    # Boxes (scaled by Detectron2's postprocessing) are the extent of the scaled polygons, up to
    # the clipping of the boxes to the image.
    extent = torch.cat([instances.pred_polygons.amin(1), instances.pred_polygons.amax(1)], 1)
    extent[:, 0::2] = extent[:, 0::2].clamp(0, 64)
    extent[:, 1::2] = extent[:, 1::2].clamp(0, 48)
    torch.testing.assert_close(instances.pred_boxes.tensor, extent, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "config, key",
    [
        ("configs/Shapes/lsnet_contour_slim_R_FPN.yaml", "MODEL.MASK_ON"),
        ("configs/Stickmen/lsnet_keypoint_slim_R_FPN.yaml", "MODEL.KEYPOINT_ON"),
    ],
)
def test_a_task_without_its_output_switch_is_named(repo_root, config, key):
    with pytest.raises(ValueError, match=key):
        build_model(_cfg(repo_root, config, key, False))


def _record_with(annotation, width=100, height=80):
    annotation = {"bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0, **annotation}
    return {"file_name": "unused.png", "image_id": 0, "height": height, "width": width, "annotations": [annotation]}


@pytest.fixture
def blank_images(monkeypatch):
    monkeypatch.setattr(detection_utils, "read_image", lambda *a, **k: np.zeros((80, 100, 3), dtype=np.uint8))


def test_mapper_contours_follow_a_flip_keeping_orientation_and_start(blank_images):
    polygon = [40.0, 10.0, 10.0, 30.0, 30.0, 70.0, 90.0, 60.0, 70.0, 25.0]
    record = _record_with({"bbox": [10.0, 10.0, 90.0, 70.0], "segmentation": [polygon]})
    kwargs = dict(is_train=True, landmark_task="contour", image_format="BGR")
    plain = LandmarkDatasetMapper(augmentations=[], **kwargs)(dict(record))["instances"]
    flipped = LandmarkDatasetMapper(augmentations=[T.HFlipTransform(100)], **kwargs)(dict(record))["instances"]
    expected = contour_landmarks([polygon])
    np.testing.assert_allclose(plain.gt_contour_landmarks[0].numpy(), expected, atol=1e-4)
    mirrored = flipped.gt_contour_landmarks[0].numpy()
    np.testing.assert_allclose(mirrored[:36], flip_contour(expected[:36], 100), atol=1e-3)
    np.testing.assert_allclose(mirrored[36], [100 - expected[36, 0], expected[36, 1]], atol=1e-4)
    assert not flipped.has("gt_masks") and not flipped.has("gt_box_landmarks")


def test_mapper_keypoints_follow_the_flip_map(blank_images):
    metadata_flip = {n: i for i, n in enumerate(KEYPOINT_NAMES)}
    flip_indices = np.arange(17)
    for a, b in KEYPOINT_FLIP_MAP:
        flip_indices[metadata_flip[a]], flip_indices[metadata_flip[b]] = metadata_flip[b], metadata_flip[a]
    keypoints = np.zeros((17, 3))
    keypoints[:, 0] = 20 + 3 * np.arange(17)
    keypoints[:, 1] = 15 + 2 * np.arange(17)
    keypoints[:, 2] = 2
    keypoints[4] = [0, 0, 0]  # right ear not labelled
    record = _record_with({"bbox": [10.0, 10.0, 90.0, 70.0], "keypoints": keypoints.flatten().tolist()})
    kwargs = dict(
        is_train=True,
        landmark_task="keypoint",
        image_format="BGR",
        use_keypoint=True,
        keypoint_hflip_indices=flip_indices,
    )
    plain = LandmarkDatasetMapper(augmentations=[], **kwargs)(dict(record))["instances"]
    flipped = LandmarkDatasetMapper(augmentations=[T.HFlipTransform(100)], **kwargs)(dict(record))["instances"]
    np.testing.assert_allclose(plain.gt_keypoint_landmarks[0, :17].numpy(), keypoints[:, :2])
    np.testing.assert_allclose(plain.gt_keypoint_landmarks[0, 17].numpy(), [50, 40])
    assert plain.gt_keypoint_visible[0].tolist() == [i != 4 for i in range(17)] + [True]
    mirrored = flipped.gt_keypoint_landmarks[0, :17].numpy()
    labelled = keypoints[:, 2] > 0  # Detectron2 zeroes the coordinates of unlabelled keypoints
    np.testing.assert_allclose(mirrored[flip_indices][labelled, 0], 100 - keypoints[labelled, 0])
    np.testing.assert_allclose(mirrored[flip_indices][labelled, 1], keypoints[labelled, 1])
    # Left ear (3) is now where the unlabelled right ear (4) was: invisible.
    assert flipped.gt_keypoint_visible[0, 3].item() is False
    # The box set of pose: border midpoints + centre of the (flipped) box.
    np.testing.assert_allclose(flipped.gt_box_landmarks[0].numpy(), [[50, 10], [10, 40], [50, 70], [90, 40], [50, 40]])


def test_mapper_keypoint_task_needs_keypoints():
    with pytest.raises(ValueError, match="KEYPOINT_ON"):
        LandmarkDatasetMapper(is_train=True, landmark_task="keypoint", augmentations=[], image_format="BGR")


def test_contour_instances_are_assigned_on_the_extent_of_their_contour(repo_root):
    """As the reference: the assignment box (and the box penalty's target) of a contour instance is
    the extent of its sampled contour, not the whole-instance box (an occluded object in pieces)."""
    model = build_model(_cfg(repo_root, CONTOUR_CONFIG))
    inputs = _inputs("contour", num_images=1)
    instances = inputs[0]["instances"]
    instances.gt_boxes = Boxes(instances.gt_boxes.tensor + torch.tensor([-8.0, -8.0, 8.0, 20.0]))
    contour_extent = landmarks_to_boxes(instances.gt_contour_landmarks, "contour")
    torch.testing.assert_close(contour_extent[0], torch.tensor([10.0, 12.0, 50.0, 60.0]))
    torch.testing.assert_close(model.assignment_boxes(instances), contour_extent)
    seen = []
    assign = model.init_assigner

    class Recording:
        def __call__(self, anchors, boxes, valid=None):
            seen.append(boxes)
            return assign(anchors, boxes, valid=valid)

    model.init_assigner = Recording()
    with EventStorage():
        model(inputs)
    torch.testing.assert_close(seen[0], contour_extent)


@pytest.mark.parametrize("config, task", [(KEYPOINT_CONFIG, "keypoint"), (CONTOUR_CONFIG, "contour")])
def test_diagnosis_ceiling_puts_the_gt_landmarks_on_every_refinement_positive(repo_root, config, task):
    """dev/diagnose_lsnet.py's AP ceiling: the refined crosses it writes into the head outputs
    decode, at each positive point, to that point's GT landmarks (and nowhere else change). An
    untrained model has no refinement positives: the initial stage's assignment stands in."""
    import diagnose_lsnet

    torch.manual_seed(0)
    model = build_model(_cfg(repo_root, config))
    inputs = _inputs(task)
    gt_instances = [x["instances"] for x in inputs]
    images = model.preprocess_image(inputs)
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    with torch.no_grad(), EventStorage():
        predictions = model.head(features)
        targets = model.assign(images, features, predictions, gt_instances)
        points, strides, crosses, matched_all = targets.points, targets.strides, targets.crosses, targets.init_matched
        ceiling = diagnose_lsnet._with_ground_truth_landmarks(
            model, predictions, points, strides, matched_all, gt_instances
        )
        _, ceiling_crosses = model._transpose(ceiling)
    for name, (_, refined) in ceiling_crosses.items():
        refined = torch.cat(refined, dim=1)
        original = torch.cat(crosses[name][1], dim=1)
        for image, (matched, instances) in enumerate(zip(matched_all, gt_instances)):
            positive = matched >= 0
            assert positive.sum() == len(instances)
            decoded = model.decode_landmarks(refined[image][positive], points[positive], strides[positive])
            torch.testing.assert_close(
                decoded, instances.get(f"gt_{name}_landmarks")[matched[positive]], atol=1e-4, rtol=1e-5
            )
            torch.testing.assert_close(refined[image][~positive], original[image][~positive])


def _rle_square_with_a_hole(width=100, height=80):
    """RLE of the pixels [20, 60) x [10, 50) minus a hole [30, 40) x [20, 30)."""
    from pycocotools import mask as mask_util

    mask = np.zeros((height, width), dtype=np.uint8)
    mask[10:50, 20:60] = 1
    mask[20:30, 30:40] = 0
    rle = mask_util.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def test_mapper_reads_rle_masks_for_contours_and_extreme_points(blank_images):
    """An RLE mask with a hole: the contour runs on the outer boundary (vertices at pixel centres,
    so within 0.5 px of the pixels' edges) and the extreme points sit on the annotation box."""
    record = _record_with({"bbox": [20.0, 10.0, 60.0, 50.0], "segmentation": _rle_square_with_a_hole()})
    kwargs = dict(is_train=True, augmentations=[], image_format="BGR")
    contour = LandmarkDatasetMapper(landmark_task="contour", **kwargs)(dict(record))["instances"].gt_contour_landmarks[
        0, :36
    ]
    x, y = contour[:, 0], contour[:, 1]
    distance_to_outer_edge = torch.stack([x - 20, 60 - x, y - 10, 50 - y]).abs().amin(dim=0)
    assert distance_to_outer_edge.max() <= 0.5 + 1e-4
    box = LandmarkDatasetMapper(landmark_task="box", **kwargs)(dict(record))["instances"].gt_box_landmarks[0]
    torch.testing.assert_close(
        box, torch.tensor([[40.0, 10.0], [20.0, 30.0], [40.0, 50.0], [60.0, 30.0], [40.0, 30.0]])
    )


def test_mapper_box_task_mixes_polygons_rle_and_box_only_annotations(blank_images):
    record = _record_with({"bbox": [20.0, 10.0, 60.0, 50.0], "segmentation": _rle_square_with_a_hole()})
    record["annotations"].append(
        {"bbox": [70.0, 20.0, 90.0, 60.0], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0}
    )
    mapper = LandmarkDatasetMapper(is_train=True, landmark_task="box", augmentations=[], image_format="BGR")
    landmarks = mapper(record)["instances"].gt_box_landmarks
    # The box-only annotation: border midpoints of (70, 20, 90, 60), as the reference without extreme points.
    torch.testing.assert_close(
        landmarks[1], torch.tensor([[80.0, 20.0], [70.0, 40.0], [80.0, 60.0], [90.0, 40.0], [80.0, 40.0]])
    )


def test_mapper_contour_task_names_annotations_without_a_mask(blank_images):
    record = _record_with({"id": 7, "bbox": [20.0, 10.0, 60.0, 50.0]})
    mapper = LandmarkDatasetMapper(is_train=True, landmark_task="contour", augmentations=[], image_format="BGR")
    with pytest.raises(ValueError, match=r"needs a mask .* unused.png has 1 without one \(annotation ids \[7\]\)"):
        mapper(record)


def test_landmark_schemas_choose_their_kernel_landmarks():
    from iou_aware.modeling import landmark_sets

    coco = landmark_sets(17, 36)
    assert coco["keypoint"].kernel_landmarks == (1, 3, 5, 7, 9, 11, 13, 15, 17)  # the reference's
    assert coco["contour"].kernel_landmarks == (0, 5, 10, 15, 20, 25, 30, 35, 36)  # every 5th
    small = landmark_sets(5, 12)
    assert small["keypoint"].num_landmarks == 6 and small["keypoint"].kernel_landmarks == (1, 3, 0, 2, 4, 5)
    assert small["contour"].num_landmarks == 13 and small["contour"].kernel_landmarks == (0, 2, 4, 6, 8, 10, 12)


@pytest.mark.parametrize("task, config", [("keypoint", KEYPOINT_CONFIG), ("contour", CONTOUR_CONFIG)])
def test_any_landmark_schema_trains(repo_root, task, config):
    """5 keypoints (MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS) or 12 contour points in 4 groups: the
    head predicts them (free sampling points fill the kernel) and every loss is finite."""
    opts = [
        "MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS",
        5,
        "MODEL.LSNET.NUM_CONTOUR_POINTS",
        12,
        "MODEL.LSNET.CONTOUR_GROUPS",
        4,
    ]
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root, config, *opts))
    inputs = _inputs(task)
    for x in inputs:
        instances = x["instances"]
        if task == "keypoint":
            instances.gt_keypoint_landmarks = instances.gt_keypoint_landmarks[:, [0, 1, 2, 3, 4, 17]]
            instances.gt_keypoint_visible = instances.gt_keypoint_visible[:, [0, 1, 2, 3, 4, 17]]
        else:
            boxes = instances.gt_boxes.tensor.tolist()
            polygons = [[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in boxes]
            instances.gt_contour_landmarks = torch.as_tensor(np.stack([contour_landmarks(p, 12) for p in polygons]))
    with EventStorage():
        losses = model(inputs)
    assert all(torch.isfinite(v) for v in losses.values()) and losses[f"loss_{task}_init"] > 0
    sum(losses.values()).backward()
    assert model.head.branches[task].init_pred.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": inputs[0]["image"], "height": 128, "width": 128}])
    if task == "keypoint":
        assert output["instances"].pred_keypoints.shape[1:] == (5, 3)


def test_a_keypoint_count_other_than_the_models_is_named(repo_root):
    model = build_model(_cfg(repo_root, KEYPOINT_CONFIG, "MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS", 5))
    with (
        EventStorage(),
        pytest.raises(ValueError, match=r"\[17\] landmarks .* predicts 5: set MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS"),
    ):
        model(_inputs("keypoint"))


def test_a_contour_point_count_other_than_the_models_is_named(repo_root):
    model = build_model(
        _cfg(repo_root, CONTOUR_CONFIG, "MODEL.LSNET.NUM_CONTOUR_POINTS", 12, "MODEL.LSNET.CONTOUR_GROUPS", 4)
    )
    with (
        EventStorage(),
        pytest.raises(ValueError, match=r"\[36\] landmarks .* predicts 12: set MODEL.LSNET.NUM_CONTOUR_POINTS"),
    ):
        model(_inputs("contour"))


def test_assign_names_a_missing_landmark_field(repo_root):
    model = build_model(_cfg(repo_root, CONTOUR_CONFIG))
    inputs = _inputs("contour")
    images = model.preprocess_image(inputs)
    features = [model.backbone(images.tensor)[f] for f in model.head_in_features]
    instances = [x["instances"] for x in inputs]
    for x in instances:
        x.remove("gt_contour_landmarks")
    with pytest.raises(ValueError, match=r"LSNet.assign needs `gt_contour_landmarks` in each image's instances"):
        model.assign(images, features, model.head(features), instances)
