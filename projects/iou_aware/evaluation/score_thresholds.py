"""What a score threshold keeps: detections per image, precision and recall at each threshold.

A detection is correct when it overlaps a not yet matched ground-truth box of its class with
IoU >= ``iou_threshold``; detections are matched in descending score order within an image, one
per ground-truth box, as COCO matches them. The matching of the detections above a threshold is
the matching of all detections cut at that threshold, so it is computed once. This is the number
to look at when choosing the threshold of a demo or a deployment (``tools/analyze.py
--score-thresholds``), since AP does not depend on any threshold.
"""

from collections import OrderedDict
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from detectron2.evaluation import DatasetEvaluator

from ..layers import pairwise_box_iou
from .localization_quality import MATCH_IOU, gather_on_main_process, ground_truth_boxes

__all__ = ["ScoreThresholdEvaluator", "match_in_score_order"]


def match_in_score_order(
    scores: torch.Tensor,
    boxes: torch.Tensor,
    classes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    iou_threshold: float = MATCH_IOU,
) -> torch.Tensor:
    """(D,) bool: whether each detection (scores (D,), boxes (D, 4) XYXY, classes (D,)) is matched
    to a ground-truth box (gt_boxes (G, 4) XYXY, gt_classes (G,)) of its class with IoU >=
    ``iou_threshold``; in descending score order, each detection takes the unmatched box it
    overlaps most."""
    matched = torch.zeros(len(scores), dtype=torch.bool)
    if len(scores) == 0 or len(gt_boxes) == 0:
        return matched
    ious = pairwise_box_iou(boxes.float(), gt_boxes.float())
    ious = torch.where(classes[:, None] == gt_classes[None, :], ious, torch.full_like(ious, -1.0))
    taken = torch.zeros(len(gt_boxes), dtype=torch.bool)
    # Sequential by nature (a match removes a box for the detections after it); at most the
    # detection cap of one image.
    for d in torch.argsort(scores, descending=True, stable=True).tolist():
        candidates = ious[d].masked_fill(taken, -1.0)
        best = int(candidates.argmax())
        if candidates[best] >= iou_threshold:
            matched[d] = True
            taken[best] = True
    return matched


class ScoreThresholdEvaluator(DatasetEvaluator):
    """Per threshold: ``detections_per_image``, ``precision`` (correct / kept detections) and
    ``recall`` (correct / non-crowd ground-truth boxes) over a registered dataset."""

    def __init__(
        self, dataset_name: str, thresholds: Sequence[float], iou_threshold: float = MATCH_IOU, distributed: bool = True
    ):
        self._thresholds = sorted(float(t) for t in thresholds)
        self._iou_threshold = iou_threshold
        self._distributed = distributed
        self._gt = ground_truth_boxes(dataset_name)
        self.reset()

    def reset(self):
        self._chunks = []

    def process(self, inputs, outputs):
        for inputs_i, outputs_i in zip(inputs, outputs):
            detections = outputs_i["instances"].to("cpu")
            gt_boxes, gt_classes = self._gt[inputs_i["image_id"]]
            matched = match_in_score_order(
                detections.scores,
                detections.pred_boxes.tensor,
                detections.pred_classes,
                gt_boxes,
                gt_classes,
                self._iou_threshold,
            )
            self._chunks.append((detections.scores.float().numpy(), matched.numpy(), len(gt_boxes)))

    def evaluate(self) -> Optional[Dict]:
        chunks = gather_on_main_process(self._chunks, self._distributed)
        if chunks is None:
            return None
        scores = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0)
        matched = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros(0, dtype=bool)
        num_gt, num_images = sum(c[2] for c in chunks), len(chunks)
        result = OrderedDict()
        for threshold in self._thresholds:
            kept = scores >= threshold
            correct = int((matched & kept).sum())
            result[f"{threshold:g}"] = {
                "detections_per_image": float(kept.sum()) / max(num_images, 1),
                "precision": correct / kept.sum() if kept.any() else float("nan"),
                "recall": correct / num_gt if num_gt else float("nan"),
            }
        return {"score_thresholds": result}
