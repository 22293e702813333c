"""GFL V1, R-50-FPN, 1x: the LazyConfig of gfl_R_50_FPN_1x.yaml (biases at twice the learning
rate and without weight decay, warmup from 1/3 of the rate, as implus/GFocal's gfl_r50_1x)."""

from ..common.coco_schedule import multi_step_lr
from ..common.data.coco import dataloader
from ..common.models.gfl import model
from ..common.optim import SGD as optimizer
from ..common.train import train

optimizer.lr = 0.01
optimizer.params.update(bias_lr_factor=2.0, weight_decay_bias=0.0)
lr_multiplier = multi_step_lr(steps=(60000, 80000), max_iter=90000, warmup_iters=500, warmup_factor=1 / 3)
train.update(
    max_iter=90000,
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    output_dir="./output/coco/gfl_R_50_FPN_1x",
)
