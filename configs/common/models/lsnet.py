"""LSNet boxes, R-50-FPN with GN in FPN and head, P6 / P7 from C5 and deformable towers
(Base-LSNet.yaml + MODEL.LSNET defaults). ``head.task`` "contour" / "keypoint" give the instance
segmentation and pose models (``COCO-InstanceSegmentation`` / ``COCO-Keypoints``)."""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.model_zoo import get_config
from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

from iou_aware.modeling import ATSSAssigner, CentrePointAssigner, LandmarkHead, LSNet

STRIDES = [8, 16, 32, 64, 128]  # P3-P7
POINT_BASE_SCALE = 4  # MODEL.LSNET.POINT_BASE_SCALE

# build_retinanet_resnet_fpn_backbone with MODEL.FPN.NORM "GN".
backbone = get_config("common/models/retinanet.py").model.backbone
backbone.bottom_up.freeze_at = 2
backbone.update(norm="GN", fuse_type="sum")

model = L(LSNet)(
    backbone=backbone,
    head=L(LandmarkHead)(
        input_shape=[ShapeSpec(channels=256, stride=s) for s in STRIDES],
        num_classes="${..num_classes}",
        task="box",
        num_convs=3,
        feat_channels=0,
        deformable_towers=True,
        num_kernel_points=9,
        gradient_mul=0.1,
        prior_prob=0.01,
        deform_conv_impl="auto",
        initial_conv_init="normal",
        num_keypoints=17,
        num_contour_points=36,
        scratch_pool_mb=-1,
    ),
    head_in_features=["p3", "p4", "p5", "p6", "p7"],
    anchor_generator=L(DefaultAnchorGenerator)(
        sizes=[[POINT_BASE_SCALE * s] for s in STRIDES], aspect_ratios=[1.0], strides=STRIDES, offset=0.0
    ),
    init_assigner=L(CentrePointAssigner)(strides=STRIDES, scale=POINT_BASE_SCALE, pos_num=1),
    refine_assigner=L(ATSSAssigner)(topk=9),
    num_classes=80,
    # (initial, refined) cross-IoU weights per landmark set; "box" is (0.1, 0.2) beside keypoints.
    loss_weights=dict(box=(1.0, 2.0), contour=(1.0, 2.0), keypoint=(1.0, 2.0)),
    point_base_scale=POINT_BASE_SCALE,
    cross_iou_alpha=0.2,
    contour_groups=9,
    keypoint_overlap="axis",
    focal_loss_alpha=0.25,
    focal_loss_gamma=2.0,
    class_loss="focal",
    refine_assign_on="initial_boxes",
    refine_anchor_scale=8.0,
    refine_loss_weighting="uniform",
    test_score_thresh=0.05,
    test_topk_candidates=1000,
    test_nms_thresh=0.6,
    test_min_box_area=0.0,
    max_detections_per_image=100,
    pixel_mean=[103.530, 116.280, 123.675],
    pixel_std=[1.0, 1.0, 1.0],
)
