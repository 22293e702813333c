"""What a model needs from the training code, declared by the model: the one interface through which
the engine and the data checks learn about a meta-architecture, so that they name none.

A meta-architecture declares its needs with a classmethod ``requirements(cls, cfg)`` returning a
:class:`ModelRequirements`; Detectron2's own meta-architectures, which cannot, are described in
:data:`DETECTRON2_REQUIREMENTS` (subclasses inherit the entry of their base class).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple, Type

from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN, RetinaNet

__all__ = ["ModelRequirements", "DETECTRON2_REQUIREMENTS", "model_requirements", "config_value"]


@dataclass(frozen=True)
class ModelRequirements:
    """
    Attributes:
        class_count_key: the config key of the model's foreground class count, checked against
            the training datasets' categories at start-up (None: not checked).
        train_mapper: name of the training mapper in :data:`iou_aware.data.MAPPER_REGISTRY`.
        mapper_options: extra arguments of that mapper's ``from_config`` (e.g. which targets to write).
        training_state: model attributes outside ``state_dict`` that a checkpoint must keep for an
            exact resume (e.g. RetinaNet's moving ``loss_normalizer``), each a float.
    """

    class_count_key: Optional[str] = None
    train_mapper: str = "DatasetMapper"
    mapper_options: Mapping[str, Any] = field(default_factory=dict)
    training_state: Tuple[str, ...] = ()


DETECTRON2_REQUIREMENTS: Dict[Type, ModelRequirements] = {
    RetinaNet: ModelRequirements("MODEL.RETINANET.NUM_CLASSES", training_state=("loss_normalizer",)),
    GeneralizedRCNN: ModelRequirements("MODEL.ROI_HEADS.NUM_CLASSES"),
}


def model_requirements(cfg) -> ModelRequirements:
    """The needs of ``cfg.MODEL.META_ARCHITECTURE``: its own ``requirements(cfg)``, else the entry
    of its nearest class in :data:`DETECTRON2_REQUIREMENTS`, else the defaults (Detectron2's
    DatasetMapper, nothing checked or kept)."""
    meta_arch = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)
    declared = getattr(meta_arch, "requirements", None)
    if callable(declared):
        return declared(cfg)
    for base in meta_arch.__mro__:
        if base in DETECTRON2_REQUIREMENTS:
            return DETECTRON2_REQUIREMENTS[base]
    return ModelRequirements()


def config_value(cfg, key: str):
    """``cfg`` at a dotted key, e.g. ``config_value(cfg, "MODEL.GFL.NUM_CLASSES")``."""
    value = cfg
    for part in key.split("."):
        value = value[part]
    return value
