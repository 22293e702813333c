from .gfl import GFL, GFLV2, DistributionGuidedQualityPredictor, GFLHead
from .iou_aware_retinanet import IoUAwareRetinaNet, IoUAwareRetinaNetHead
from .lsnet import LSNet

__all__ = [
    "GFL",
    "GFLV2",
    "GFLHead",
    "DistributionGuidedQualityPredictor",
    "IoUAwareRetinaNet",
    "IoUAwareRetinaNetHead",
    "LSNet",
]
