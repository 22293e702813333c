"""Every shipped config loads with add_iou_aware_config; the Shapes ones build a model."""

import glob
import os

import pytest
from detectron2.config import get_cfg
from detectron2.modeling import META_ARCH_REGISTRY, build_model

from iou_aware.config import add_iou_aware_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
    p
    for p in glob.glob(f"{REPO_ROOT}/configs/**/*.yaml", recursive=True)
    if not os.path.basename(p).startswith("Base-")
)


def _load(path):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(path)
    return cfg


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_config_loads_with_a_registered_meta_architecture(path):
    cfg = _load(path)
    assert META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)


@pytest.mark.parametrize("path", [p for p in CONFIGS if "/Shapes/" in p], ids=os.path.basename)
def test_shapes_config_builds_its_model_on_cpu(path):
    cfg = _load(path)
    assert cfg.MODEL.DEVICE == "cpu" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    build_model(cfg)


def test_add_iou_aware_config_is_idempotent():
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.MODEL.IOU_AWARE.SCORE_ALPHA = 0.3
    add_iou_aware_config(cfg)
    assert cfg.MODEL.IOU_AWARE.SCORE_ALPHA == 0.3


def test_unknown_config_key_fails_naming_the_key():
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    with pytest.raises((KeyError, AssertionError), match="MODEL.IOU_AWARE.ALPHA"):  # yacs raises either
        cfg.merge_from_list(["MODEL.IOU_AWARE.ALPHA", "0.5"])


@pytest.mark.parametrize(
    "path",
    [p for p in CONFIGS if "lsnet" in os.path.basename(p) and "/COCO-" in p],
    ids=lambda p: os.path.relpath(p, REPO_ROOT),
)
def test_lsnet_coco_configs_train_as_the_reference(path):
    """mmdetection's schedule of the reference: 500 linear warmup iterations, the norm of all
    gradients together clipped at 35 (not Detectron2's per-parameter "norm")."""
    cfg = _load(path)
    assert cfg.SOLVER.WARMUP_ITERS == 500 and cfg.SOLVER.WARMUP_METHOD == "linear"
    clip = cfg.SOLVER.CLIP_GRADIENTS
    assert clip.ENABLED and clip.CLIP_TYPE == "full_model" and clip.CLIP_VALUE == 35.0 and clip.NORM_TYPE == 2.0


@pytest.mark.parametrize(
    "path", ["configs/Stickmen/lsnet_keypoint_slim_R_FPN.yaml", "configs/COCO-Keypoints/lsnet_R_50_FPN_1x.yaml"]
)
def test_lsnet_pose_configs_use_the_measured_remedies_and_the_defaults_stay_the_reference(path):
    """The pose configs pool the keypoint cross-IoU per person and start the conv before the initial
    landmarks from He normal (docs/models/lsnet.md, "Beyond the paper"); the package defaults, which
    every other LSNet config keeps, are the reference's."""
    node = _load(f"{REPO_ROOT}/{path}").MODEL.LSNET
    assert node.KEYPOINT_OVERLAP == "object" and node.INITIAL_CONV_INIT == "kaiming"
    defaults = get_cfg()
    add_iou_aware_config(defaults)
    assert defaults.MODEL.LSNET.KEYPOINT_OVERLAP == "axis" and defaults.MODEL.LSNET.INITIAL_CONV_INIT == "normal"


def _coco(name):
    return _load(f"{REPO_ROOT}/configs/COCO-Detection/{name}")


@pytest.mark.parametrize("name", ["gfl_R_50_FPN_1x.yaml", "gflv2_R_50_FPN_1x.yaml", "gflv2_R_101_FPN_ms_2x.yaml"])
def test_gfl_coco_configs_follow_their_references(name):
    """implus/GFocal and GFocalV2: P6 from P5 ('on_output'), 500 warmup iterations, no clipping;
    V1 alone trains biases at 2x the rate without decay and warms up from 1/3."""
    cfg = _coco(name)
    assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_p6p7_from_p5_backbone"
    assert cfg.SOLVER.WARMUP_ITERS == 500 and not cfg.SOLVER.CLIP_GRADIENTS.ENABLED
    v1 = name.startswith("gfl_")
    bias_decay = cfg.SOLVER.WEIGHT_DECAY_BIAS
    bias_decay = cfg.SOLVER.WEIGHT_DECAY if bias_decay is None else bias_decay  # Detectron2: None = WEIGHT_DECAY
    assert (cfg.SOLVER.BIAS_LR_FACTOR, bias_decay) == ((2.0, 0.0) if v1 else (1.0, cfg.SOLVER.WEIGHT_DECAY))
    assert cfg.SOLVER.WARMUP_FACTOR == pytest.approx(1 / 3 if v1 else 0.001)


def test_p6_is_computed_from_p5():
    """The P6 conv of the GFL backbone reads the 256-channel P5, not the 2048-channel C5."""
    cfg = _coco("gfl_R_50_FPN_1x.yaml")
    cfg.MODEL.DEVICE = "cpu"
    from detectron2.modeling import build_backbone

    backbone = build_backbone(cfg)
    assert backbone.top_block.in_feature == "p5" and backbone.top_block.p6.in_channels == 256
    assert list(backbone.output_shape()) == ["p3", "p4", "p5", "p6", "p7"]


@pytest.mark.parametrize("name", ["iou_aware_retinanet_R_50_FPN_1x.yaml", "iou_aware_retinanet_R_101_FPN_1x.yaml"])
def test_iou_aware_coco_configs_clip_the_global_norm_as_the_reference(name):
    cfg = _coco(name)
    clip = cfg.SOLVER.CLIP_GRADIENTS
    assert clip.ENABLED and clip.CLIP_TYPE == "full_model" and clip.CLIP_VALUE == 35.0
    assert cfg.SOLVER.WARMUP_ITERS == 500 and cfg.SOLVER.WARMUP_FACTOR == pytest.approx(1 / 3)


# The task of each COCO folder and the output field its models must produce.
_COCO_OUTPUT_FIELDS = {
    "COCO-Detection": {"pred_boxes", "scores", "pred_classes"},
    "COCO-InstanceSegmentation": {"pred_boxes", "scores", "pred_classes", "pred_masks"},
    "COCO-Keypoints": {"pred_boxes", "scores", "pred_classes", "pred_keypoints"},
}


@pytest.mark.parametrize("path", [p for p in CONFIGS if "/COCO-" in p], ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_coco_config_builds_without_weights_and_runs_one_inference(path):
    """Every COCO config (R-50, R-101, X-101) constructs its model and detects on a small image,
    with the fields its task promises; score threshold 0 so that every head's decoding runs."""
    import torch

    cfg = _load(path)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    for node in ("RETINANET", "GFL", "LSNET", "ROI_HEADS"):
        if node == "ROI_HEADS":
            cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
        else:
            getattr(cfg.MODEL, node).SCORE_THRESH_TEST = 0.0
    cfg.TEST.DETECTIONS_PER_IMAGE = 5
    # The pose config keeps only boxes over 32 x 32 px, which an untrained model's need not be on
    # a 96 x 128 image (the filter has its own test in test_lsnet_tasks.py).
    cfg.MODEL.LSNET.MIN_BOX_AREA_TEST = 0.0
    model = build_model(cfg).eval()
    # Without weights, FrozenBN's unit statistics let the residual branches' variance compound over
    # the blocks until every box decodes to nothing; zeroing each bottleneck's last norm (the
    # zero-init-residual start) keeps the features finite while every conv still runs.
    with torch.no_grad():
        for name, module in model.backbone.named_modules():
            if name.endswith("conv3.norm"):
                module.weight.zero_()
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8).float()
    with torch.no_grad():
        (output,) = model([{"image": image, "height": 96, "width": 128}])
    instances = output["instances"]
    assert 0 < len(instances) <= 5
    assert _COCO_OUTPUT_FIELDS[os.path.basename(os.path.dirname(path))] <= set(instances.get_fields())
    assert torch.isfinite(instances.pred_boxes.tensor).all()
