"""LSNet boxes (4 extreme points + centre), R-50-FPN, 1x: the LazyConfig of lsnet_R_50_FPN_1x.yaml.
Trains with LandmarkDatasetMapper, which writes the landmark targets of ``model.head.task``."""

from iou_aware.data import LandmarkDatasetMapper

from ..common.coco_schedule import multi_step_lr
from ..common.data.coco import dataloader
from ..common.models.lsnet import model
from ..common.optim import SGD as optimizer
from ..common.train import train

dataloader.train.mapper.update(
    _target_=LandmarkDatasetMapper,
    landmark_task="${model.head.task}",
    num_contour_points="${model.head.num_contour_points}",
)
optimizer.lr = 0.01
lr_multiplier = multi_step_lr(steps=(60000, 80000), max_iter=90000, warmup_iters=500, warmup_factor=0.001)
train.update(
    max_iter=90000,
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    output_dir="./output/coco/lsnet_R_50_FPN_1x",
)
train.clip_grad.update(enabled=True, max_norm=35.0, norm_type=2.0)
