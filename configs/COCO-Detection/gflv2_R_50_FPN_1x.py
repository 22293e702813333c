"""GFL V2 (DGQP), R-50-FPN, 1x: the LazyConfig of gflv2_R_50_FPN_1x.yaml."""

from iou_aware.modeling import GFLV2

from ..common.coco_schedule import multi_step_lr
from ..common.data.coco import dataloader
from ..common.models.gfl import model
from ..common.optim import SGD as optimizer
from ..common.train import train

model._target_ = GFLV2
model.head.use_dgqp = True
optimizer.lr = 0.01
lr_multiplier = multi_step_lr(steps=(60000, 80000), max_iter=90000, warmup_iters=500, warmup_factor=0.001)
train.update(
    max_iter=90000,
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    output_dir="./output/coco/gflv2_R_50_FPN_1x",
)
