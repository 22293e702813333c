"""``add_iou_aware_config(cfg)``: every config key this package adds, with its default."""

from detectron2.config import CfgNode as CN

__all__ = ["add_iou_aware_config"]


def add_iou_aware_config(cfg: CN) -> CN:
    """Add iou_aware's keys to a Detectron2 config in place (idempotent) and return it."""
    if hasattr(cfg.MODEL, "SLIM_RESNET"):
        return cfg
    # Slim BasicBlock ResNet (build_slim_resnet_fpn_backbone) for the synthetic datasets. Widths and
    # norm come from MODEL.RESNETS.{STEM_OUT_CHANNELS, RES2_OUT_CHANNELS, NORM}.
    cfg.MODEL.SLIM_RESNET = CN()
    # Number of BasicBlocks in res2, res3, res4, res5.
    cfg.MODEL.SLIM_RESNET.BLOCKS_PER_STAGE = [1, 1, 1, 1]
    # FPN levels above P5: "p6p7" (convs on P5, for P3-P7 dense heads) or "maxpool" (P6, R-CNN).
    cfg.MODEL.SLIM_RESNET.FPN_TOP_BLOCK = "p6p7"

    # Start-up checks of the training data (iou_aware.data.dataset_checks): False stops training and
    # lists every missing image, inverted or out-of-image box and missing mask; True drops them
    # (the annotations, and the images whose file is missing) and logs the counts.
    cfg.DATALOADER.FILTER_INVALID_ANNOTATIONS = False

    # Evaluator of each test dataset (iou_aware.evaluation.build_evaluator): "auto" follows the
    # dataset's metadata evaluator_type as Detectron2's tools/train_net.py does ("pascal_voc":
    # PascalVOCDetectionEvaluator, VOC AP50 and its AP over IoU 0.5:0.95; anything else:
    # COCOEvaluator); "coco" asks for COCOEvaluator on any dataset (the COCO-style AP that the
    # IoU-aware paper reports on PASCAL VOC); "pascal_voc" for a dataset registered as VOC.
    cfg.TEST.EVALUATOR = "auto"

    # Focal coefficients of the IoU-family box losses (iou_aware.layers.box_iou_loss), used by every
    # head whose box loss type (e.g. MODEL.RETINANET.BBOX_REG_LOSS_TYPE,
    # MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE) is one of focal_iou / focal_diou / focal_ciou.
    cfg.MODEL.BOX_IOU_LOSS = CN()
    # Exponent of the focal factor (1 - coef * conf)^gamma.
    cfg.MODEL.BOX_IOU_LOSS.FOCAL_GAMMA = 2.0
    # Focal-IoU: conf = IoU.
    cfg.MODEL.BOX_IOU_LOSS.FOCAL_IOU_COEF = 0.5
    # Focal-DIoU: conf = (DIoU + 1) / 2.
    cfg.MODEL.BOX_IOU_LOSS.FOCAL_DIOU_COEF = 0.7
    # Focal-CIoU: conf = (CIoU + 2) / 3.
    cfg.MODEL.BOX_IOU_LOSS.FOCAL_CIOU_COEF = 0.5

    # IoU-aware RetinaNet (MODEL.META_ARCHITECTURE: "IoUAwareRetinaNet"); RetinaNet keys still apply.
    cfg.MODEL.IOU_AWARE = CN()
    # Add the IoU branch (conv on the box tower, loss_iou, confidence S; the keys below) to a dense
    # head that does not have it built in: GFL / GFLV2. IoUAwareRetinaNet always has it.
    cfg.MODEL.IOU_AWARE.ENABLED = False
    # Weight of the IoU prediction loss (BCE against the IoU of each positive's box with its GT).
    cfg.MODEL.IOU_AWARE.LOSS_WEIGHT = 1.0
    # Detach the IoU target. The reference code does not: L_IoU then also trains box regression.
    cfg.MODEL.IOU_AWARE.DETACH_TARGET = False
    # Detection confidence S = p^alpha * IoU^(1 - alpha); 1.0 ranks like stock RetinaNet.
    cfg.MODEL.IOU_AWARE.SCORE_ALPHA = 0.5
    # "power" (S above) or "product" (S = p * IoU).
    cfg.MODEL.IOU_AWARE.SCORE_MODE = "power"

    # Generalized Focal Loss (MODEL.META_ARCHITECTURE: "GFL" for V1, "GFLV2" for V2 = V1 + DGQP).
    cfg.MODEL.GFL = CN()
    cfg.MODEL.GFL.NUM_CLASSES = 80
    cfg.MODEL.GFL.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # Convs per tower (each conv3x3 + norm + ReLU) and their norm.
    cfg.MODEL.GFL.NUM_CONVS = 4
    cfg.MODEL.GFL.NORM = "GN"
    # Each box side is a distribution over bins 0..REG_MAX (in units of the level's stride).
    cfg.MODEL.GFL.REG_MAX = 16
    # Side of the square anchor of each point, in strides; used only by the ATSS assignment.
    cfg.MODEL.GFL.ANCHOR_SCALE = 8.0
    # ATSS: candidates per level per GT (nearest anchor centres).
    cfg.MODEL.GFL.ATSS_TOPK = 9
    cfg.MODEL.GFL.PRIOR_PROB = 0.01
    # Quality Focal Loss: exponent beta and weight.
    cfg.MODEL.GFL.QFL_BETA = 2.0
    cfg.MODEL.GFL.QFL_WEIGHT = 1.0
    # Distribution Focal Loss weight.
    cfg.MODEL.GFL.DFL_WEIGHT = 0.25
    # Box loss on decoded boxes: any IoU-family kind of iou_aware.layers.box_iou_loss, and weight.
    cfg.MODEL.GFL.BOX_LOSS_TYPE = "giou"
    cfg.MODEL.GFL.BOX_LOSS_WEIGHT = 2.0
    # V2's Distribution-Guided Quality Predictor: top-k probabilities per side (+ their mean).
    cfg.MODEL.GFL.DGQP_TOPK = 4
    cfg.MODEL.GFL.DGQP_HIDDEN_DIM = 64
    # Ablation only: stop DGQP's gradient at the distributions (the reference does not).
    cfg.MODEL.GFL.DGQP_DETACH_INPUT = False
    # Ablation only: initial bias of DGQP's last FC; the quality starts at sigmoid(bias): 0.5 with
    # the reference's 0, about 0.99 with 4.6.
    cfg.MODEL.GFL.DGQP_BIAS_INIT = 0.0
    # Inference.
    cfg.MODEL.GFL.SCORE_THRESH_TEST = 0.05
    cfg.MODEL.GFL.TOPK_CANDIDATES_TEST = 1000
    cfg.MODEL.GFL.NMS_THRESH_TEST = 0.6

    # LSNet (MODEL.META_ARCHITECTURE: "LSNet"): one landmark head for boxes, contours and keypoints.
    cfg.MODEL.LSNET = CN()
    cfg.MODEL.LSNET.NUM_CLASSES = 80
    cfg.MODEL.LSNET.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # What the landmarks describe: "box" (4 extreme points + centre: detection), "contour" (36
    # contour points + centre: instance segmentation, needs MODEL.MASK_ON) or "keypoint" (17 COCO
    # keypoints + centre, beside a "box" set: pose, needs MODEL.KEYPOINT_ON).
    cfg.MODEL.LSNET.TASK = "box"
    # Convs per tower (conv3x3 + GN + ReLU); DEFORMABLE_TOWERS makes them modulated deformable
    # convs (DCNv2, offsets predicted from the input) as in the reference's "dcn" setting.
    cfg.MODEL.LSNET.NUM_CONVS = 3
    cfg.MODEL.LSNET.DEFORMABLE_TOWERS = False
    # Channels of the towers and the prediction convs after them (the reference's feat_channels);
    # 0: the FPN's channels (MODEL.FPN.OUT_CHANNELS), as the reference's configs.
    cfg.MODEL.LSNET.FEAT_CHANNELS = 0
    # Sampling points of the landmark-guided (pyramid) deformable conv: some initial landmarks plus
    # free points predicted beside them, 9 in all (a 3x3 kernel).
    cfg.MODEL.LSNET.NUM_KERNEL_POINTS = 9
    # How deformable convs are computed, same results (iou_aware.layers.deformable): "fused" (the
    # package's C++ CPU gather + one oneDNN GEMM), "grid_sample" (F.grid_sample + batched matmul, any
    # device), "torchvision" (torchvision.ops.deform_conv2d) or "auto": "fused" for CPU float32 /
    # float64 inputs when iou_aware._C is built, else "grid_sample" (docs/models/lsnet.md,
    # "Deformable convolutions").
    cfg.MODEL.LSNET.DEFORM_CONV_IMPL = "auto"
    # Cap (MiB) of the pool where the "fused" convs keep their taps matrices between steps (freed
    # with the model); -1: the environment variable IOU_AWARE_SCRATCH_POOL_MB, else 2048.
    cfg.MODEL.LSNET.DEFORM_CONV_POOL_MB = -1
    # Share of the gradient that flows from the deformable sampling back into the initial landmarks.
    cfg.MODEL.LSNET.GRADIENT_MUL = 0.1
    # Initialization of the 3x3 conv before each initial-landmark prediction: "normal" (std 0.01,
    # the reference's) or "kaiming" (He normal over the fan-out, as the reference initializes its
    # pyramid deformable conv); with "normal" two std-0.01 layers in a row shrink the gradient the
    # initial landmark loss sends to the tower (docs/models/lsnet.md, "Beyond the paper").
    cfg.MODEL.LSNET.INITIAL_CONV_INIT = "normal"
    # Landmark vectors are divided by POINT_BASE_SCALE * stride before the cross-IoU loss; the
    # initial stage puts each GT on the level whose stride is about its size / POINT_BASE_SCALE.
    cfg.MODEL.LSNET.POINT_BASE_SCALE = 4
    # Initial stage: positives per GT (the points of its level nearest to its box centre).
    cfg.MODEL.LSNET.INIT_POS_NUM = 1
    # Refinement stage: ATSS candidates per level per GT, ranked on REFINE_ASSIGN_ON: "initial_boxes"
    # (the boxes of the initial landmarks, the reference) or "anchors" (squares of side
    # REFINE_ANCHOR_SCALE * stride on the points, as GFL's ATSS; an ablation, docs/models/lsnet.md).
    cfg.MODEL.LSNET.ATSS_TOPK = 9
    cfg.MODEL.LSNET.REFINE_ASSIGN_ON = "initial_boxes"
    cfg.MODEL.LSNET.REFINE_ANCHOR_SCALE = 8.0
    # Cross-IoU loss: weight of the target's inactive half of each axis, and the stage weights.
    cfg.MODEL.LSNET.CROSS_IOU_ALPHA = 0.2
    cfg.MODEL.LSNET.INIT_LOSS_WEIGHT = 1.0
    cfg.MODEL.LSNET.REFINE_LOSS_WEIGHT = 2.0
    # Stage weights of the box set that pose ("keypoint") predicts beside the keypoints.
    cfg.MODEL.LSNET.BOX_BRANCH_INIT_LOSS_WEIGHT = 0.1
    cfg.MODEL.LSNET.BOX_BRANCH_REFINE_LOSS_WEIGHT = 0.2
    # Keypoints: how the cross-IoU pools its overlaps, "axis" (one per keypoint and axis, the
    # reference) or "object" (one over all keypoints of the person); see docs/models/lsnet.md.
    cfg.MODEL.LSNET.KEYPOINT_OVERLAP = "axis"
    # Contours: points of the contour (the centre comes on top), and the interleaved groups of
    # the grouped cross-IoU (must divide NUM_CONTOUR_POINTS). The keypoint count of the pose task
    # is Detectron2's MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS.
    cfg.MODEL.LSNET.NUM_CONTOUR_POINTS = 36
    cfg.MODEL.LSNET.CONTOUR_GROUPS = 9
    # Loss of the classes: "focal" (binary targets at the refinement positives, the reference) or
    # "quality_focal" (GFL's QFL, with FOCAL_LOSS_GAMMA as its beta: the target of a positive is the
    # IoU of its refined box with its GT box, detached; an ablation, docs/models/lsnet.md).
    cfg.MODEL.LSNET.CLASS_LOSS = "focal"
    # How the refined landmark losses weight their positives: "uniform" (each counts once, divided by
    # their number; the reference) or "score" (as GFL's box losses: each positive weighted by its
    # highest class probability, detached, divided by the sum of those weights; an ablation).
    cfg.MODEL.LSNET.REFINE_LOSS_WEIGHTING = "uniform"
    cfg.MODEL.LSNET.PRIOR_PROB = 0.01
    cfg.MODEL.LSNET.FOCAL_LOSS_ALPHA = 0.25
    cfg.MODEL.LSNET.FOCAL_LOSS_GAMMA = 2.0
    # Inference (refinement stage only).
    cfg.MODEL.LSNET.SCORE_THRESH_TEST = 0.05
    cfg.MODEL.LSNET.TOPK_CANDIDATES_TEST = 1000
    cfg.MODEL.LSNET.NMS_THRESH_TEST = 0.6
    # Drop detections whose box is at most this many px^2 of the output (original) image, after NMS,
    # as the reference's pose test (COCO: 1024).
    cfg.MODEL.LSNET.MIN_BOX_AREA_TEST = 0.0
    return cfg
