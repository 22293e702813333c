"""Generalized Focal Loss V1, R-50-FPN with P6 / P7 from P5 (Base-GFL.yaml + MODEL.GFL defaults).
V2: ``_target_`` GFLV2 and ``head.use_dgqp`` True (``gflv2_R_50_FPN_1x.py``)."""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.model_zoo import get_config
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
from detectron2.modeling.backbone.fpn import LastLevelP6P7

from iou_aware.modeling import GFL, ATSSAssigner, GFLHead

STRIDES = [8, 16, 32, 64, 128]  # P3-P7
ANCHOR_SCALE = 8.0  # MODEL.GFL.ANCHOR_SCALE: the side, in strides, of the square ATSS ranks

# build_resnet_fpn_p6p7_from_p5_backbone: Detectron2's RetinaNet backbone whose P6 convolves P5.
backbone = get_config("common/models/retinanet.py").model.backbone
backbone.bottom_up.freeze_at = 2
backbone.update(norm="", fuse_type="sum")
backbone.top_block = L(LastLevelP6P7)(in_channels=256, out_channels=256, in_feature="p5")

model = L(GFL)(
    backbone=backbone,
    head=L(GFLHead)(
        input_shape=[ShapeSpec(channels=256, stride=s) for s in STRIDES],
        num_classes="${..num_classes}",
        conv_dims=[256, 256, 256, 256],
        norm="GN",
        prior_prob=0.01,
        reg_max="${..reg_max}",
        use_dgqp=False,
        dgqp_topk=4,
        dgqp_hidden_dim=64,
        dgqp_detach_input=False,
        dgqp_bias_init=0.0,
        use_iou_branch=False,
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    anchor_generator=L(DefaultAnchorGenerator)(
        sizes=[[ANCHOR_SCALE * s] for s in STRIDES], aspect_ratios=[1.0], strides=STRIDES, offset=0.5
    ),
    assigner=L(ATSSAssigner)(topk=9),
    num_classes=80,
    reg_max=16,
    qfl_beta=2.0,
    qfl_weight=1.0,
    dfl_weight=0.25,
    box_loss_type="giou",
    box_loss_weight=2.0,
    iou_loss_options=dict(focal_gamma=2.0, focal_iou_coef=0.5, focal_diou_coef=0.7, focal_ciou_coef=0.5),
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.6,
    max_detections_per_image=100,
    # MODEL.IOU_AWARE, used with head.use_iou_branch
    iou_loss_weight=1.0,
    detach_iou_target=False,
    score_alpha=0.5,
    score_mode="power",
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
)
