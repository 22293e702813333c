"""LSNet pose (17 COCO keypoints + centre, beside a box set of border midpoints + centre),
R-50-FPN, 1x: the LazyConfig of lsnet_R_50_FPN_1x.yaml. Cross-IoU weights keypoints 1.0 / 2.0,
box 0.1 / 0.2; at test time the top 100 points per level, 20 detections per image, boxes > 32x32 px
of the original image; the keypoint cross-IoU pools one overlap per person and the conv before the
initial landmarks starts from He normal (why: docs/models/lsnet.md, "Beyond the paper")."""

from iou_aware.data import LandmarkDatasetMapper

from ..common.coco_schedule import multi_step_lr
from ..common.data.coco_keypoint import dataloader
from ..common.models.lsnet import model
from ..common.optim import SGD as optimizer
from ..common.train import train

model.num_classes = 1
model.head.update(task="keypoint", initial_conv_init="kaiming")
model.loss_weights.box = (0.1, 0.2)
model.update(
    keypoint_overlap="object",
    test_topk_candidates=100,
    test_min_box_area=1024.0,
    max_detections_per_image=20,
)
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
    output_dir="./output/coco/lsnet_keypoint_R_50_FPN_1x",
)
train.clip_grad.update(enabled=True, max_norm=35.0, norm_type=2.0)
