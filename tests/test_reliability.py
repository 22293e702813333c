"""Reliability of every meta-architecture: extreme data, extreme predictions, autocast, bad
configs, missing weights, checkpoints of another architecture, unreadable images."""

import copy
import dataclasses
import math

import benchmark
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import detection_utils
from detectron2.engine import default_argument_parser
from detectron2.modeling import build_model
from detectron2.structures import Boxes, BoxMode, Instances
from detectron2.utils.events import EventStorage

import train_net
from iou_aware.config import add_iou_aware_config
from iou_aware.data import ValidatingMapper
from iou_aware.engine import IncompatibleCheckpointError, build_train_mapper

# Every meta-architecture (and task) of the package, plus Detectron2's RetinaNet.
CONFIGS = [
    "Shapes/retinanet_slim_R_FPN.yaml",
    "Shapes/iou_aware_retinanet_slim_R_FPN.yaml",
    "Shapes/faster_rcnn_slim_R_FPN_focal_iou.yaml",
    "Shapes/gfl_slim_R_FPN.yaml",
    "Shapes/gflv2_slim_R_FPN.yaml",
    "Shapes/lsnet_slim_R_FPN.yaml",
    "Shapes/lsnet_contour_slim_R_FPN.yaml",
    "Stickmen/lsnet_keypoint_slim_R_FPN.yaml",
]
SIZE = 128


def _cfg(repo_root, config, *opts):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(f"{repo_root}/configs/{config}")
    cfg.merge_from_list(list(opts))
    return cfg


def _hard_inputs(seed=0):
    """Image 0: 150 objects, from 1 px to the whole image (the first is image-sized, then 1-4 px
    ones), keypoints all invisible. Image 1: no objects at all."""
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(150, 2, generator=generator) * (SIZE - 8)
    wh = 1 + torch.rand(150, 2, generator=generator) * 60
    wh[1:40] = 1 + torch.rand(39, 2, generator=generator) * 3  # tiny: 1-4 px
    boxes = torch.cat([xy, (xy + wh).clamp(max=SIZE)], dim=1)
    boxes[0] = torch.tensor([0.0, 0.0, SIZE, SIZE])
    inputs = []
    for num in (150, 0):
        instances = Instances((SIZE, SIZE), gt_boxes=Boxes(boxes[:num].clone()))
        instances.gt_classes = torch.randint(0, 1, (num,), generator=generator)
        benchmark.add_box_shaped_targets(instances, generator)
        instances.gt_keypoints.tensor[..., 2] = 0  # all invisible
        instances.gt_keypoint_visible[:, :-1] = False
        image = torch.randint(0, 256, (3, SIZE, SIZE), generator=generator).float()
        inputs.append({"image": image, "instances": instances, "height": SIZE, "width": SIZE})
    return inputs


def _losses_and_grads_are_finite(model, inputs):
    model.train()
    with EventStorage():
        losses = model(inputs)
    total = sum(losses.values())
    assert all(torch.isfinite(v) for v in losses.values()), {k: v.item() for k, v in losses.items()}
    model.zero_grad()
    total.backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    return losses


@pytest.mark.parametrize("config", CONFIGS)
def test_extreme_data_gives_finite_losses_and_gradients(repo_root, config):
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root, config))
    _losses_and_grads_are_finite(model, _hard_inputs())


@pytest.mark.parametrize("config", CONFIGS)
def test_huge_predictions_give_finite_losses(repo_root, config):
    """Head weights x 1000: logits and box / landmark outputs in the thousands."""
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root, config))
    heads = [m for name, m in model.named_children() if name in ("head", "roi_heads", "proposal_generator")]
    with torch.no_grad():
        for head in heads:
            for p in head.parameters():
                p.mul_(1000.0)
    _losses_and_grads_are_finite(model, _hard_inputs(seed=1))


@pytest.mark.parametrize("config", CONFIGS)
def test_losses_under_cpu_autocast_match_float32(repo_root, config):
    """bfloat16 autocast on CPU (Detectron2's AMPTrainer needs CUDA; the losses are the same code)
    gives the float32 losses of the same model on the same inputs (LSNet: the same positives) within
    5% (bfloat16 keeps 8 mantissa bits; measured: at most 1.3%, except LSNet pose's box set at its
    config's He-normal init, 2.3% / 3.4% initial / refined: the untrained crosses of a point are
    near-equal, so its box centre, a difference of two of them, keeps few bits), and every loss is
    float32-finite."""
    torch.manual_seed(0)
    model = build_model(_cfg(repo_root, config))
    model.train()
    inputs = _hard_inputs(seed=2)
    # A copy for the second pass: RetinaNet's moving loss normalizer is state the first would change.
    twin = copy.deepcopy(model)
    if hasattr(model, "assign"):
        _share_lsnet_assignment(model, twin)
    torch.manual_seed(1)  # the same proposal / ROI sampling in both passes
    with EventStorage():
        reference = model(inputs)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16), EventStorage():
        low_precision = twin(inputs)
    assert set(low_precision) == set(reference)
    for name, value in low_precision.items():
        assert torch.isfinite(value.float()), name
        assert value.float().item() == pytest.approx(reference[name].item(), rel=5e-2), name


def _share_lsnet_assignment(model, twin):
    """Make ``twin``'s LSNet assignment take the positives that ``model``'s float32 pass chose,
    everything else computed in its own precision. The refinement stage's ATSS ranks the untrained
    initial boxes, many of them near-equal: bfloat16's rounding flips some of those ties (17 of 48
    refinement positives on these inputs with the pose config), which changes which points are
    trained, not the precision of the losses this test measures."""
    chosen = []

    def float32_assign(*args, **kwargs):
        out = type(model).assign(model, *args, **kwargs)
        chosen.append(out)
        return out

    def autocast_assign(*args, **kwargs):
        out = type(twin).assign(twin, *args, **kwargs)
        return dataclasses.replace(out, init_matched=chosen[0].init_matched, refine_matched=chosen[0].refine_matched)

    model.assign = float32_assign
    twin.assign = autocast_assign


def _record(tmp_path, annotations, name="a.png"):
    return {
        "file_name": str(tmp_path / name),
        "image_id": 0,
        "height": SIZE,
        "width": SIZE,
        "annotations": [{"bbox_mode": BoxMode.XYXY_ABS, "category_id": 0, "iscrowd": 0, **a} for a in annotations],
    }


@pytest.mark.parametrize("config", ["Shapes/retinanet_slim_R_FPN.yaml", "Shapes/lsnet_slim_R_FPN.yaml"])
def test_crowd_and_zero_area_annotations_are_dropped_by_the_train_mapper(repo_root, config, tmp_path, monkeypatch):
    monkeypatch.setattr(detection_utils, "read_image", lambda *a, **k: np.zeros((SIZE, SIZE, 3), dtype=np.uint8))
    cfg = _cfg(
        repo_root, config, "INPUT.MIN_SIZE_TRAIN", (SIZE,), "INPUT.MAX_SIZE_TRAIN", SIZE, "INPUT.RANDOM_FLIP", "none"
    )
    square = [10.0, 10.0, 40.0, 10.0, 40.0, 40.0, 10.0, 40.0]
    record = _record(
        tmp_path,
        [
            {"id": 1, "bbox": [10.0, 10.0, 40.0, 40.0], "segmentation": [square]},
            {"id": 2, "bbox": [50.0, 50.0, 90.0, 90.0], "segmentation": [square], "iscrowd": 1},
            {"id": 3, "bbox": [60.0, 60.0, 60.0, 80.0], "segmentation": [square]},  # zero width
        ],
    )
    instances = ValidatingMapper(build_train_mapper(cfg))(record)["instances"]
    assert instances.gt_boxes.tensor.tolist() == [[10.0, 10.0, 40.0, 40.0]]
    if "lsnet" in config:
        assert instances.gt_box_landmarks.shape == (1, 5, 2)


@pytest.mark.parametrize("content, error", [(None, "No such file"), (b"not an image", "cannot identify image file")])
def test_a_missing_or_corrupt_image_is_named(repo_root, tmp_path, content, error):
    if content is not None:
        (tmp_path / "a.png").write_bytes(content)
    cfg = _cfg(repo_root, "Shapes/lsnet_slim_R_FPN.yaml")
    record = _record(tmp_path, [{"id": 1, "bbox": [10.0, 10.0, 40.0, 40.0]}])
    with pytest.raises(Exception, match=error) as info:
        ValidatingMapper(build_train_mapper(cfg))(record)
    assert "a.png" in str(info.value)


def _train_args(repo_root, tmp_path, *opts, config="Shapes/retinanet_slim_R_FPN.yaml", flags=()):
    return default_argument_parser().parse_args(
        ["--config-file", f"{repo_root}/configs/{config}", *flags, "OUTPUT_DIR", str(tmp_path / "out"), *opts]
    )


def test_an_unknown_or_mistyped_config_key_fails_at_start_up_naming_it(repo_root, tmp_path):
    with pytest.raises(KeyError, match="MODEL.LSNET.NO_SUCH_KEY"):
        train_net.setup(_train_args(repo_root, tmp_path, "MODEL.LSNET.NO_SUCH_KEY", "1"))
    with pytest.raises(ValueError, match="MODEL.LSNET.NUM_CONVS"):
        train_net.setup(_train_args(repo_root, tmp_path, "MODEL.LSNET.NUM_CONVS", "three"))


def test_a_missing_weights_file_fails_before_training(repo_root, tmp_path):
    args = _train_args(repo_root, tmp_path, "MODEL.WEIGHTS", str(tmp_path / "nope.pth"), "SOLVER.MAX_ITER", "1")
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS file not found: .*nope.pth"):
        train_net.main(args)
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_eval_only_with_a_checkpoint_of_another_meta_architecture_is_an_error(repo_root, tmp_path):
    gfl = build_model(_cfg(repo_root, "Shapes/gfl_slim_R_FPN.yaml"))
    DetectionCheckpointer(gfl, save_dir=str(tmp_path)).save("gfl")
    args = _train_args(
        repo_root, tmp_path, "MODEL.WEIGHTS", str(tmp_path / "gfl.pth"), "DATASETS.TEST", "('shapes_tiny_val',)",
        flags=("--eval-only",),
    )  # fmt: skip
    with pytest.raises(IncompatibleCheckpointError, match="RetinaNet.*another MODEL.META_ARCHITECTURE"):
        train_net.main(args)


def test_eval_only_with_a_checkpoint_of_another_class_count_names_the_key_and_each_shape_once(repo_root, tmp_path):
    cfg = _cfg(repo_root, "Shapes/gfl_slim_R_FPN.yaml")
    cfg.MODEL.GFL.NUM_CLASSES = 2
    DetectionCheckpointer(build_model(cfg), save_dir=str(tmp_path)).save("two_classes")
    args = _train_args(
        repo_root, tmp_path, "MODEL.WEIGHTS", str(tmp_path / "two_classes.pth"), "DATASETS.TEST", "('shapes_tiny_val',)",
        flags=("--eval-only",), config="Shapes/gfl_slim_R_FPN.yaml",
    )  # fmt: skip
    with pytest.raises(IncompatibleCheckpointError) as error:
        train_net.main(args)
    message = str(error.value)
    # Only the class logits' conv depends on the class count (4 in the config, 2 in the checkpoint):
    # its weight and bias have another shape, and nothing is reported missing besides them.
    assert "2 have another shape (head.cls_score.weight: (2, " in message and "(4, " in message
    assert "missing" not in message and "another class count (MODEL.GFL.NUM_CLASSES)" in message


def test_eval_only_accepts_a_checkpoint_of_the_same_architecture(repo_root, tmp_path, monkeypatch):
    torch.manual_seed(5)  # weights that no fresh build of the model gives
    model = build_model(_cfg(repo_root, "Shapes/lsnet_slim_R_FPN.yaml"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("lsnet")
    evaluated = []
    build = train_net.Trainer.build_model

    def build_and_keep(cls, cfg):
        evaluated.append(build(cfg))
        return evaluated[-1]

    monkeypatch.setattr(train_net.Trainer, "build_model", classmethod(build_and_keep))
    args = _train_args(
        repo_root, tmp_path, "MODEL.WEIGHTS", str(tmp_path / "lsnet.pth"), "DATASETS.TEST", "('shapes_tiny_val',)",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
        config="Shapes/lsnet_slim_R_FPN.yaml", flags=("--eval-only",),
    )  # fmt: skip
    results = train_net.main(args)
    assert "bbox" in results and (math.isnan(results["bbox"]["AP"]) or results["bbox"]["AP"] >= 0)
    # The evaluated model holds exactly the checkpoint's weights (and buffers).
    (evaluated_model,) = evaluated
    saved = model.state_dict()
    loaded = evaluated_model.state_dict()
    assert set(loaded) == set(saved)
    for name, value in saved.items():
        assert torch.equal(loaded[name], value), name
