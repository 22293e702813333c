"""LSNet instance segmentation (36 contour points + centre, grouped cross-IoU with 9 groups),
R-50-FPN, 1x: the LazyConfig of lsnet_R_50_FPN_1x.yaml. Masks are the filled 36-point polygons;
boxes their extent."""

from iou_aware.data import LandmarkDatasetMapper

from ..common.coco_schedule import multi_step_lr
from ..common.data.coco import dataloader
from ..common.models.lsnet import model
from ..common.optim import SGD as optimizer
from ..common.train import train

model.head.task = "contour"
model.loss_weights.box = (0.1, 0.2)  # unused by the contour task; as the yaml config builds it
dataloader.train.mapper.update(
    _target_=LandmarkDatasetMapper,
    landmark_task="${model.head.task}",
    num_contour_points="${model.head.num_contour_points}",
)
dataloader.evaluator.tasks = ("bbox", "segm")
optimizer.lr = 0.01
lr_multiplier = multi_step_lr(steps=(60000, 80000), max_iter=90000, warmup_iters=500, warmup_factor=0.001)
train.update(
    max_iter=90000,
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    output_dir="./output/coco/lsnet_contour_R_50_FPN_1x",
)
train.clip_grad.update(enabled=True, max_norm=35.0, norm_type=2.0)
