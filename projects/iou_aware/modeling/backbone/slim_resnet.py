"""A narrow BasicBlock ResNet + FPN for the synthetic datasets (Detectron2 has nothing below R-18).

It is Detectron2's own ResNet (``BasicStem`` + ``BasicBlock`` stages) with free widths and block
counts, so that a detector trains in minutes on 2 CPU cores. COCO configs use the stock ResNets.
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, ResNet
from detectron2.modeling.backbone.fpn import LastLevelMaxPool, LastLevelP6P7
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem

__all__ = ["build_slim_resnet_backbone", "build_slim_resnet_fpn_backbone"]


def build_slim_resnet_backbone(cfg, input_shape: ShapeSpec) -> ResNet:
    """ResNet with BasicBlocks; widths STEM_OUT_CHANNELS, then RES2_OUT_CHANNELS doubling per stage.

    Reads MODEL.RESNETS.{STEM_OUT_CHANNELS, RES2_OUT_CHANNELS, NORM, OUT_FEATURES, FREEZE_AT} and
    MODEL.SLIM_RESNET.BLOCKS_PER_STAGE (res2..res5).
    """
    norm = cfg.MODEL.RESNETS.NORM
    stem = BasicStem(in_channels=input_shape.channels, out_channels=cfg.MODEL.RESNETS.STEM_OUT_CHANNELS, norm=norm)
    blocks_per_stage = cfg.MODEL.SLIM_RESNET.BLOCKS_PER_STAGE
    if len(blocks_per_stage) != 4 or min(blocks_per_stage) < 1:
        raise ValueError(f"MODEL.SLIM_RESNET.BLOCKS_PER_STAGE must be 4 positive block counts, got {blocks_per_stage}")
    out_features = cfg.MODEL.RESNETS.OUT_FEATURES
    max_stage = max(int(name[-1]) for name in out_features)
    in_channels = cfg.MODEL.RESNETS.STEM_OUT_CHANNELS
    out_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS
    stages = []
    for stage_index, num_blocks in zip(range(2, max_stage + 1), blocks_per_stage):
        first_stride = 1 if stage_index == 2 else 2
        stages.append(
            ResNet.make_stage(
                BasicBlock,
                num_blocks,
                in_channels=in_channels,
                out_channels=out_channels,
                stride_per_block=[first_stride] + [1] * (num_blocks - 1),
                norm=norm,
            )
        )
        in_channels, out_channels = out_channels, out_channels * 2
    return ResNet(stem, stages, out_features=out_features).freeze(cfg.MODEL.BACKBONE.FREEZE_AT)


@BACKBONE_REGISTRY.register()
def build_slim_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """Slim ResNet + FPN; MODEL.SLIM_RESNET.FPN_TOP_BLOCK picks P6/P7 convs from P5 ("p6p7", the
    P3-P7 pyramid of RetinaNet-style heads) or a max-pooled P6 ("maxpool", R-CNN style)."""
    bottom_up = build_slim_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    if cfg.MODEL.SLIM_RESNET.FPN_TOP_BLOCK == "p6p7":
        top_block = LastLevelP6P7(out_channels, out_channels, in_feature="p5")
    elif cfg.MODEL.SLIM_RESNET.FPN_TOP_BLOCK == "maxpool":
        top_block = LastLevelMaxPool()
    else:
        raise ValueError(
            f"MODEL.SLIM_RESNET.FPN_TOP_BLOCK must be 'p6p7' or 'maxpool', got {cfg.MODEL.SLIM_RESNET.FPN_TOP_BLOCK!r}"
        )
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
