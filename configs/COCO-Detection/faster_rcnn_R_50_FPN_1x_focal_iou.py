"""Faster R-CNN R-50-FPN 1x with the Focal-IoU box loss in the ROI box head: the LazyConfig of
faster_rcnn_R_50_FPN_1x_focal_iou.yaml. Detectron2's ``common/models/mask_rcnn_fpn.py`` without
the mask head, with IoULossROIHeads and the yaml values where that LazyConfig differs (FREEZE_AT 2)."""

from detectron2.model_zoo import get_config

from iou_aware.modeling import IoULossFastRCNNOutputLayers, IoULossROIHeads

from ..common.coco_schedule import multi_step_lr
from ..common.data.coco import dataloader
from ..common.optim import SGD as optimizer
from ..common.train import train

model = get_config("common/models/mask_rcnn_fpn.py").model
model.backbone.bottom_up.freeze_at = 2
for key in ("mask_in_features", "mask_pooler", "mask_head"):
    model.roi_heads.pop(key)
model.roi_heads._target_ = IoULossROIHeads
model.roi_heads.box_predictor._target_ = IoULossFastRCNNOutputLayers
model.roi_heads.box_predictor.update(
    test_score_thresh=0.05,
    test_nms_thresh=0.5,
    test_topk_per_image=100,
    box_reg_loss_type="focal_iou",
    # IoU losses on decoded boxes are ~10x smaller than smooth L1 on deltas per box.
    loss_weight={"loss_box_reg": 10.0},
    # MODEL.BOX_IOU_LOSS
    iou_loss_options=dict(focal_gamma=2.0, focal_iou_coef=0.5, focal_diou_coef=0.7, focal_ciou_coef=0.5),
)

dataloader.train.mapper.augmentations[0].short_edge_length = (640, 672, 704, 736, 768, 800)
optimizer.lr = 0.02
lr_multiplier = multi_step_lr(steps=(60000, 80000), max_iter=90000, warmup_iters=1000, warmup_factor=0.001)
train.update(
    max_iter=90000,
    init_checkpoint="detectron2://ImageNetPretrained/MSRA/R-50.pkl",
    output_dir="./output/coco/faster_rcnn_R_50_FPN_1x_focal_iou",
)
