"""Every shipped config loads with add_iou_aware_config; the Shapes ones build a model."""
import glob
import os

import pytest
from detectron2.config import get_cfg
from detectron2.modeling import META_ARCH_REGISTRY, build_model

from iou_aware.config import add_iou_aware_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
    p for p in glob.glob(f"{REPO_ROOT}/configs/**/*.yaml", recursive=True) if not os.path.basename(p).startswith("Base-")
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


@pytest.mark.parametrize("path", [p for p in CONFIGS if "lsnet" in os.path.basename(p) and "/COCO-" in p], ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_lsnet_coco_configs_train_as_the_reference(path):
    """mmdetection's schedule of the reference: 500 linear warmup iterations, the norm of all
    gradients together clipped at 35 (not Detectron2's per-parameter "norm")."""
    cfg = _load(path)
    assert cfg.SOLVER.WARMUP_ITERS == 500 and cfg.SOLVER.WARMUP_METHOD == "linear"
    clip = cfg.SOLVER.CLIP_GRADIENTS
    assert clip.ENABLED and clip.CLIP_TYPE == "full_model" and clip.CLIP_VALUE == 35.0 and clip.NORM_TYPE == 2.0
