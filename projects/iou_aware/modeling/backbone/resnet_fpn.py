"""Detectron2's ResNet + FPN with P6 / P7 computed from P5, the pyramid of FCOS, ATSS and GFL
(mmdetection's ``add_extra_convs='on_output'``); Detectron2's RetinaNet builds them from C5."""

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7

__all__ = ["build_resnet_fpn_p6p7_from_p5_backbone"]


@BACKBONE_REGISTRY.register()
def build_resnet_fpn_p6p7_from_p5_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """``build_retinanet_resnet_fpn_backbone`` whose P6 is a stride-2 3x3 conv of P5 (not C5) and
    P7 one of ReLU(P6); the MODEL.RESNETS / MODEL.FPN keys as there."""
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=build_resnet_backbone(cfg, input_shape),
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(out_channels, out_channels, in_feature="p5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
