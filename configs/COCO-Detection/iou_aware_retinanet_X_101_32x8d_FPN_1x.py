"""IoU-aware RetinaNet, ResNeXt-101 32x8d FPN, 1x (FAIR's ImageNet weights, RGB input): the
LazyConfig of iou_aware_retinanet_X_101_32x8d_FPN_1x.yaml."""

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import BottleneckBlock, ResNet

from .iou_aware_retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train


def resnext_stages(depth=101, num_groups=32, width_per_group=8, norm="FrozenBN"):
    """res2-res5 as build_resnet_backbone makes them for MODEL.RESNETS.NUM_GROUPS and
    WIDTH_PER_GROUP (``ResNet.make_default_stages`` has a fixed bottleneck width)."""
    blocks_per_stage = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}[depth]
    bottleneck_channels, in_channels, out_channels = num_groups * width_per_group, 64, 256
    stages = []
    for index, num_blocks in enumerate(blocks_per_stage):
        stages.append(
            L(ResNet.make_stage)(
                block_class=BottleneckBlock,
                num_blocks=num_blocks,
                stride_per_block=[1 if index == 0 else 2] + [1] * (num_blocks - 1),
                in_channels=in_channels,
                bottleneck_channels=bottleneck_channels,
                out_channels=out_channels,
                num_groups=num_groups,
                stride_in_1x1=False,
                dilation=1,
                norm=norm,
            )
        )
        in_channels, out_channels, bottleneck_channels = out_channels, out_channels * 2, bottleneck_channels * 2
    return stages


model.backbone.bottom_up.stages = resnext_stages(depth=101, num_groups=32, width_per_group=8)
model.update(pixel_std=[57.375, 57.120, 58.395], input_format="RGB")
dataloader.train.mapper.image_format = "RGB"
train.update(
    init_checkpoint="detectron2://ImageNetPretrained/FAIR/X-101-32x8d.pkl",
    output_dir="./output/coco/iou_aware_retinanet_X_101_32x8d_FPN_1x",
)
