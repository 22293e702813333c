"""Models: backbones, meta-architectures and heads, registered in Detectron2's registries on import."""

from ..structures import TASK_LANDMARK_SETS, LandmarkSet, landmark_sets, landmark_sets_from_config
from .assigners import ATSSAssigner, CentrePointAssigner, DenseAssigner
from .backbone import build_resnet_fpn_p6p7_from_p5_backbone, build_slim_resnet_backbone, build_slim_resnet_fpn_backbone
from .box_regression import BOX_REG_LOSS_TYPES, box_regression_loss
from .iou_branch import IoUPredictor, detection_confidence, iou_prediction_loss
from .landmark_head import LandmarkBranch, LandmarkHead
from .meta_arch import GFL, GFLV2, GFLHead, IoUAwareRetinaNet, IoUAwareRetinaNetHead, LSNet
from .requirements import DETECTRON2_REQUIREMENTS, ModelRequirements, config_value, model_requirements
from .roi_heads import IoULossFastRCNNOutputLayers, IoULossROIHeads

__all__ = [k for k in globals().keys() if not k.startswith("_")]
