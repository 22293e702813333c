"""LSNet boxes, R-50-FPN, 2x with multi-scale training (shorter side uniformly in 480-960, longer
side <= 1333): the LazyConfig of lsnet_R_50_FPN_ms_2x.yaml."""

from ..common.coco_schedule import multi_step_lr
from .lsnet_R_50_FPN_1x import dataloader, model, optimizer, train

dataloader.train.mapper.augmentations[0].update(short_edge_length=(480, 960), max_size=1333, sample_style="range")
lr_multiplier = multi_step_lr(steps=(120000, 160000), max_iter=180000, warmup_iters=500, warmup_factor=0.001)
train.update(max_iter=180000, output_dir="./output/coco/lsnet_R_50_FPN_ms_2x")
