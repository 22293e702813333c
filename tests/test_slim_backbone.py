"""The slim ResNet + FPN backbone gives Detectron2's P3-P7 pyramid."""

import torch
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from iou_aware.config import add_iou_aware_config


def _cfg(repo_root):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_file(f"{repo_root}/configs/Shapes/retinanet_slim_R_FPN.yaml")
    return cfg


def test_feature_pyramid_strides_and_channels(repo_root):
    cfg = _cfg(repo_root)
    backbone = build_backbone(cfg, ShapeSpec(channels=3))
    features = backbone(torch.zeros(2, 3, 128, 192))
    assert list(features) == ["p3", "p4", "p5", "p6", "p7"]
    for level, (name, feature) in enumerate(features.items(), start=3):
        stride = 2**level
        assert backbone.output_shape()[name].stride == stride
        assert feature.shape == (2, 64, -(-128 // stride), -(-192 // stride))


def test_blocks_per_stage_sets_the_depth(repo_root):
    cfg = _cfg(repo_root)
    cfg.MODEL.SLIM_RESNET.BLOCKS_PER_STAGE = [2, 1, 3, 1]
    resnet = build_backbone(cfg, ShapeSpec(channels=3)).bottom_up
    assert [len(stage) for stage in resnet.stages] == [2, 1, 3, 1]
