"""IoU-aware RetinaNet, R-101-FPN, 1x: the LazyConfig of iou_aware_retinanet_R_101_FPN_1x.yaml."""

from .iou_aware_retinanet_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
train.update(
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-101.pkl",
    output_dir="./output/coco/iou_aware_retinanet_R_101_FPN_1x",
)
