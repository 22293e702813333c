"""The evaluator of a test dataset, chosen from its metadata as Detectron2's tools/train_net.py
does, or by ``TEST.EVALUATOR``."""

from typing import Optional

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator

from ..utils import check_choice
from .coco import build_coco_evaluator
from .voc import build_voc_evaluator

__all__ = ["EVALUATOR_CHOICES", "build_evaluator", "evaluator_type_for"]

EVALUATOR_CHOICES = ("auto", "coco", "pascal_voc")


def evaluator_type_for(cfg, dataset_name: str) -> str:
    """ "coco" or "pascal_voc": ``TEST.EVALUATOR``, or with "auto" the dataset's metadata
    ``evaluator_type`` ("pascal_voc" for Detectron2's ``voc_*`` and ``--register-voc`` datasets;
    "coco" for any other type and for datasets without one: user COCO files, the synthetic ones)."""
    choice = check_choice("TEST.EVALUATOR", cfg.TEST.EVALUATOR, EVALUATOR_CHOICES)
    if choice != "auto":
        return choice
    declared = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    return "pascal_voc" if declared == "pascal_voc" else "coco"


def build_evaluator(cfg, dataset_name: str, output_folder: Optional[str] = None) -> DatasetEvaluator:
    """PascalVOCDetectionEvaluator (:func:`iou_aware.evaluation.build_voc_evaluator`) or
    ThresholdedCOCOEvaluator (:func:`iou_aware.evaluation.build_coco_evaluator`) for
    ``dataset_name``, by :func:`evaluator_type_for`; COCO's JSON results go to ``output_folder``."""
    if evaluator_type_for(cfg, dataset_name) == "pascal_voc":
        return build_voc_evaluator(dataset_name)
    return build_coco_evaluator(cfg, dataset_name, output_folder)
