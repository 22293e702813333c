"""COCOEvaluator's bbox, segm and keypoints tasks work unchanged on the synthetic datasets: the
ground truth itself, submitted as predictions, scores 100 AP on each task."""

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.structures import BitMasks

from iou_aware.evaluation import ThresholdedCOCOEvaluator
from iou_aware.utils import detectron2_has_compiled_ops


@pytest.mark.parametrize(
    "dataset, tasks", [("shapes_tiny_val", ("bbox", "segm")), ("stickmen_tiny_val", ("bbox", "segm", "keypoints"))]
)
def test_ground_truth_as_predictions_scores_100_ap(dataset, tasks, tmp_path):
    records = DatasetCatalog.get(dataset)  # generates the files COCOEvaluator reads
    evaluator = ThresholdedCOCOEvaluator(
        dataset, tasks=tasks, distributed=False, output_dir=str(tmp_path), use_fast_impl=detectron2_has_compiled_ops()
    )
    evaluator.reset()
    for record in records:
        size = (record["height"], record["width"])
        # As DatasetMapper does: keypoints (K, 3); the loader already moved them to pixel centres.
        annotations = [
            dict(a, keypoints=np.asarray(a["keypoints"]).reshape(-1, 3)) if "keypoints" in a else a
            for a in record["annotations"]
        ]
        gt = utils.annotations_to_instances(annotations, size, mask_format="polygon")
        predictions = gt.__class__(size)
        predictions.pred_boxes = gt.gt_boxes
        predictions.scores = torch.ones(len(gt))
        predictions.pred_classes = gt.gt_classes
        predictions.pred_masks = BitMasks.from_polygon_masks(gt.gt_masks, *size).tensor
        if "keypoints" in tasks:
            keypoints = gt.gt_keypoints.tensor.clone()
            keypoints[:, :, 2] = 1.0  # keypoint score
            predictions.pred_keypoints = keypoints
        evaluator.process([{"image_id": record["image_id"], "height": size[0], "width": size[1]}],
                          [{"instances": predictions}])  # fmt: skip
    results = evaluator.evaluate()
    assert MetadataCatalog.get(dataset).evaluator_type == "coco"
    for task in tasks:
        # Rasterizing polygons is exact to a pixel, and COCO maps masks to RLE the same way.
        assert results[task]["AP"] == pytest.approx(100.0, abs=0.5), task
