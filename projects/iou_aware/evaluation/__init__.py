"""Evaluation on top of Detectron2's COCOEvaluator and PascalVOCDetectionEvaluator (the one of a
dataset chosen by :func:`build_evaluator`), and localization-quality analysis."""

from .build import EVALUATOR_CHOICES, build_evaluator, evaluator_type_for
from .coco import AP_IOU_THRESHOLDS, ThresholdedCOCOEvaluator, build_coco_evaluator, coco_tasks_for
from .iou_upper_bound import GroundTruthIoUModel, ground_truth_ious
from .localization_quality import (
    LocalizationQualityEvaluator,
    ground_truth_boxes,
    pearson_correlation,
    plot_ap_vs_iou_threshold,
    plot_confidence_vs_iou,
)
from .score_thresholds import ScoreThresholdEvaluator, match_in_score_order
from .voc import build_voc_evaluator, is_voc_dataset, prepare_voc_coco_ground_truth, voc_coco_ground_truth

__all__ = [k for k in globals().keys() if not k.startswith("_")]
