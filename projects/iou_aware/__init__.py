"""iou_aware: localization-quality-aware dense detectors for Detectron2.

Importing this package registers its backbones, meta-architectures and heads in Detectron2's
registries and its synthetic datasets (``shapes_*``, ``stickmen_*``) in the DatasetCatalog.
"""

from . import modeling  # noqa: F401  (registers models)
from .config import add_iou_aware_config
from .data import register_default_synthetic_datasets

register_default_synthetic_datasets()

__version__ = "0.1.0"
__all__ = ["add_iou_aware_config"]
