"""IoU-aware RetinaNet, R-50-FPN, 1x: the LazyConfig of iou_aware_retinanet_R_50_FPN_1x.yaml."""

from ..common.coco_schedule import multi_step_lr
from ..common.data.coco import dataloader
from ..common.models.iou_aware_retinanet import model
from ..common.optim import SGD as optimizer
from ..common.train import train

optimizer.lr = 0.01
lr_multiplier = multi_step_lr(steps=(60000, 80000), max_iter=90000, warmup_iters=500, warmup_factor=1 / 3)
train.update(
    max_iter=90000,
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    output_dir="./output/coco/iou_aware_retinanet_R_50_FPN_1x",
)
train.clip_grad.update(enabled=True, max_norm=35.0, norm_type=2.0)
