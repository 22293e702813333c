"""IoU-aware RetinaNet, R-50-FPN (Base-RetinaNet.yaml + MODEL.IOU_AWARE defaults): Detectron2's
``common/models/retinanet.py`` with the IoU-aware meta-architecture and head, and the yaml values
where Detectron2's LazyConfig differs from its yaml defaults (FREEZE_AT 2, SMOOTH_L1_LOSS_BETA 0.1)."""

from detectron2.model_zoo import get_config

from iou_aware.modeling import IoUAwareRetinaNet, IoUAwareRetinaNetHead

model = get_config("common/models/retinanet.py").model
model._target_ = IoUAwareRetinaNet
model.head._target_ = IoUAwareRetinaNetHead
model.head.norm = ""
model.backbone.bottom_up.freeze_at = 2
model.update(
    smooth_l1_beta=0.1,
    box_reg_loss_type="smooth_l1",
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.5,
    max_detections_per_image=100,
    # MODEL.IOU_AWARE
    iou_loss_weight=1.0,
    detach_iou_target=False,
    score_alpha=0.5,
    score_mode="power",
    # MODEL.BOX_IOU_LOSS, for the focal IoU-family box losses
    iou_loss_options=dict(focal_gamma=2.0, focal_iou_coef=0.5, focal_diou_coef=0.7, focal_ciou_coef=0.5),
)
