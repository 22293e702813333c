from .resnet_fpn import build_resnet_fpn_p6p7_from_p5_backbone
from .slim_resnet import build_slim_resnet_backbone, build_slim_resnet_fpn_backbone

__all__ = ["build_resnet_fpn_p6p7_from_p5_backbone", "build_slim_resnet_backbone", "build_slim_resnet_fpn_backbone"]
