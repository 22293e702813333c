"""COCOEvaluator set up for whatever the dataset and the model provide, plus AP per IoU threshold."""

import logging
import tempfile
from typing import Optional, Tuple

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.utils.logger import create_small_table

from ..data.user_datasets import oks_sigmas_for
from ..utils import detectron2_has_compiled_ops
from .voc import is_voc_dataset, prepare_voc_coco_ground_truth

__all__ = ["coco_tasks_for", "build_coco_evaluator", "ThresholdedCOCOEvaluator", "AP_IOU_THRESHOLDS"]

logger = logging.getLogger(__name__)

# The columns of the IoU-aware paper's Table 4 (AP50 and AP75 are in COCO's table already).
AP_IOU_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


class ThresholdedCOCOEvaluator(COCOEvaluator):
    """COCOEvaluator that also reports AP at single IoU thresholds: AP50, AP60, AP70, AP80, AP90.

    They come from COCOeval's own precision array (area "all", 100 detections), so they agree with
    COCO's AP50 / AP75 columns.
    """

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)
        if coco_eval is None:
            # No predictions (Detectron2 logs "No predictions from the model!"): every AP is NaN.
            results.update({f"AP{int(round(t * 100))}": float("nan") for t in AP_IOU_THRESHOLDS})
            return results
        if not results:
            return results
        precision = coco_eval.eval["precision"]  # (T, R, K, A, M)
        thresholds = np.asarray(coco_eval.params.iouThrs)
        per_threshold = {}
        for threshold in AP_IOU_THRESHOLDS:
            t = int(np.argmin(np.abs(thresholds - threshold)))
            p = precision[t, :, :, 0, -1]
            p = p[p > -1]
            per_threshold[f"AP{int(round(threshold * 100))}"] = float(np.mean(p) * 100) if p.size else float("nan")
        self._logger.info(f"{iou_type} AP at single IoU thresholds:\n" + create_small_table(per_threshold))
        results.update(per_threshold)
        return results


def coco_tasks_for(cfg, dataset_name: str) -> Tuple[str, ...]:
    """COCO tasks that both the model (MODEL.MASK_ON / KEYPOINT_ON) and the dataset support.

    "bbox" always; "segm" when the model predicts masks; "keypoints" when it predicts keypoints and
    the dataset's metadata names keypoints.
    """
    metadata = MetadataCatalog.get(dataset_name)
    tasks = ["bbox"]
    if cfg.MODEL.MASK_ON:
        tasks.append("segm")
    if cfg.MODEL.KEYPOINT_ON and getattr(metadata, "keypoint_names", None):
        tasks.append("keypoints")
    return tuple(tasks)


def build_coco_evaluator(cfg, dataset_name: str, output_dir: Optional[str] = None) -> COCOEvaluator:
    """A ThresholdedCOCOEvaluator for ``dataset_name``; synthetic datasets are generated first, a
    PASCAL VOC dataset is scored with its "difficult" objects ignored
    (:func:`iou_aware.evaluation.prepare_voc_coco_ground_truth`, in ``output_dir``, else a
    temporary folder).

    Uses COCO's pure-Python evaluation when Detectron2's compiled fast path is not installed.
    Keypoint sets other than COCO's 17 are scored with :func:`iou_aware.data.oks_sigmas_for`.
    """
    if getattr(MetadataCatalog.get(dataset_name), "synthetic_spec", None) is not None:
        DatasetCatalog.get(dataset_name)  # writes the synthetic dataset's files on first use
    if is_voc_dataset(dataset_name):
        prepare_voc_coco_ground_truth(dataset_name, output_dir or tempfile.mkdtemp(prefix="voc_coco_ground_truth_"))
    return ThresholdedCOCOEvaluator(
        dataset_name,
        tasks=coco_tasks_for(cfg, dataset_name),
        distributed=True,
        output_dir=output_dir,
        use_fast_impl=detectron2_has_compiled_ops(),
        kpt_oks_sigmas=oks_sigmas_for(cfg, [dataset_name]),
    )
