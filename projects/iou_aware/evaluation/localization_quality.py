"""How well detection confidence tracks localization quality (the IoU-aware paper's Fig. 4).

For every detection: its confidence fields (``scores``; IoU-aware models also ``cls_scores`` p and
``pred_ious``), its IoU with the best-matching ground-truth box of the same class ("iou", what AP
rewards) and with the best ground-truth box of any class ("iou_any_class", what a class-agnostic
IoU branch is trained to predict). Pearson's r is reported against both, on all detections, on
those that overlap a GT at all (IoU > 0; the rest is the background the NMS and top-k let through)
and on the matched ones (IoU >= 0.5, the range of the IoU targets an IoU branch trains on: its loss
sees positive anchors only). The mean of each confidence on matched and unmatched detections shows
whether a confidence separates the two at all.
"""

import itertools
import logging
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import BoxMode
from detectron2.utils import comm

from ..layers import pairwise_box_iou

__all__ = [
    "LocalizationQualityEvaluator",
    "gather_on_main_process",
    "ground_truth_boxes",
    "pearson_correlation",
    "plot_confidence_vs_iou",
    "plot_ap_vs_iou_threshold",
]

logger = logging.getLogger(__name__)

CONFIDENCE_FIELDS = ("scores", "cls_scores", "pred_ious")
MATCH_IOU = 0.5  # AP50's match threshold and RetinaNet's positive-anchor IoU
_FIELD_LABELS = {
    "scores": "detection confidence (model's score)",
    "cls_scores": "classification score p",
    "pred_ious": "predicted IoU",
}


def pearson_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r of two 1-D arrays; NaN with fewer than 2 points or a constant array."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denominator) if denominator > 0 else float("nan")


def mean_or_nan(x: np.ndarray) -> float:
    """Mean of a 1-D array; NaN when it is empty."""
    return float(np.mean(x, dtype=np.float64)) if x.size else float("nan")


def ground_truth_boxes(dataset_name: str) -> Dict[int, Tuple[torch.Tensor, torch.Tensor]]:
    """image_id -> (boxes (G, 4) float32 XYXY absolute pixels, classes (G,) int64 contiguous ids)
    of the non-crowd annotations of a registered dataset."""
    ground_truth = {}
    for record in DatasetCatalog.get(dataset_name):
        annotations = [a for a in record.get("annotations", []) if not a.get("iscrowd", 0)]
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in annotations]
        ground_truth[record["image_id"]] = (
            torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            torch.tensor([a["category_id"] for a in annotations], dtype=torch.int64),
        )
    return ground_truth


def gather_on_main_process(chunks: list, distributed: bool) -> Optional[list]:
    """Every process's ``chunks`` concatenated on the main process (None on the others); the
    chunks themselves without ``distributed``."""
    if not distributed:
        return chunks
    comm.synchronize()
    gathered = list(itertools.chain(*comm.gather(chunks, dst=0)))
    return gathered if comm.is_main_process() else None


class LocalizationQualityEvaluator(DatasetEvaluator):
    """Collects (confidence, IoU with GT) for every detection and reports Pearson correlations.

    After ``evaluate()``, ``self.records`` maps "iou" and each confidence field present to an
    array over all detections (on the main process).
    """

    def __init__(self, dataset_name: str, distributed: bool = True):
        self._distributed = distributed
        self._gt = ground_truth_boxes(dataset_name)
        self.records: Dict[str, np.ndarray] = {}
        self.reset()

    def reset(self):
        self._chunks = []

    def process(self, inputs, outputs):
        for inputs_i, outputs_i in zip(inputs, outputs):
            detections = outputs_i["instances"].to("cpu")
            gt_boxes, gt_classes = self._gt[inputs_i["image_id"]]
            if len(gt_boxes) and len(detections):
                ious = pairwise_box_iou(detections.pred_boxes.tensor, gt_boxes)
                same_class = detections.pred_classes[:, None] == gt_classes[None, :]
                best = torch.where(same_class, ious, torch.zeros_like(ious)).max(dim=1).values
                best_any_class = ious.max(dim=1).values
            else:
                best = best_any_class = torch.zeros(len(detections))
            chunk = {"iou": best.numpy(), "iou_any_class": best_any_class.numpy()}
            for field in CONFIDENCE_FIELDS:
                if detections.has(field):
                    chunk[field] = detections.get(field).float().numpy()
            self._chunks.append(chunk)

    def evaluate(self) -> Optional[Dict]:
        chunks = gather_on_main_process(self._chunks, self._distributed)
        if chunks is None:
            return None
        confidences = [f for f in CONFIDENCE_FIELDS if chunks and f in chunks[0]]
        fields = ["iou", "iou_any_class"] + confidences
        self.records = {f: np.concatenate([c[f] for c in chunks]) if chunks else np.zeros(0) for f in fields}
        result = OrderedDict(num_detections=int(self.records["iou"].size))
        for target, suffix in (("iou", ""), ("iou_any_class", "_any_class")):
            iou = self.records[target]
            overlapping, matched = iou > 0, iou >= MATCH_IOU
            result[f"num_detections_overlapping{suffix}"] = int(overlapping.sum())
            result[f"num_detections_matched{suffix}"] = int(matched.sum())
            for field in confidences:
                confidence = self.records[field]
                result[f"pearson_{field}{suffix}"] = pearson_correlation(confidence, iou)
                result[f"pearson_{field}{suffix}_overlapping"] = pearson_correlation(
                    confidence[overlapping], iou[overlapping]
                )
                result[f"pearson_{field}{suffix}_matched"] = pearson_correlation(confidence[matched], iou[matched])
                result[f"mean_{field}{suffix}_matched"] = mean_or_nan(confidence[matched])
                result[f"mean_{field}{suffix}_unmatched"] = mean_or_nan(confidence[~matched])
        logger.info(f"Confidence vs IoU with GT: {dict(result)}")
        return {"localization": result}


def plot_confidence_vs_iou(records: Dict[str, np.ndarray], path: str, title: str = "") -> None:
    """One scatter panel per confidence field in ``records`` (IoU on x), r in each panel's title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = [f for f in CONFIDENCE_FIELDS if f in records]
    figure, axes = plt.subplots(1, len(fields), figsize=(4.5 * len(fields), 4.2), squeeze=False)
    for axis, field in zip(axes[0], fields):
        r = pearson_correlation(records[field], records["iou"])
        axis.scatter(records["iou"], records[field], s=3, alpha=0.35, linewidths=0)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_xlabel("IoU with best-matching GT")
        axis.set_ylabel(_FIELD_LABELS[field])
        axis.set_title(f"{field}: Pearson r = {r:.3f}")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_ap_vs_iou_threshold(curves: Dict[str, Dict[str, float]], path: str) -> None:
    """Line plot of AP at IoU 0.5 ... 0.9; ``curves`` maps a label to {"AP50": .., "AP60": .., ...}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4))
    for label, results in curves.items():
        keys = sorted((k for k in results if k[2:].isdigit()), key=lambda k: int(k[2:]))
        axis.plot([int(k[2:]) / 100 for k in keys], [results[k] for k in keys], marker="o", label=label)
    axis.set_xlabel("IoU threshold")
    axis.set_ylabel("AP")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
