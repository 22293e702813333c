"""GFL V2, R-101-FPN, 2x with multi-scale training (shorter side 480-960): the LazyConfig of
gflv2_R_101_FPN_ms_2x.yaml."""

from ..common.coco_schedule import multi_step_lr
from .gflv2_R_50_FPN_1x import dataloader, model, optimizer, train

model.backbone.bottom_up.stages.depth = 101
dataloader.train.mapper.augmentations[0].update(
    short_edge_length=tuple(range(480, 961, 32)), max_size=1600, sample_style="choice"
)
lr_multiplier = multi_step_lr(steps=(120000, 160000), max_iter=180000, warmup_iters=500, warmup_factor=0.001)
train.update(
    max_iter=180000,
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-101.pkl",
    output_dir="./output/coco/gflv2_R_101_FPN_ms_2x",
)
