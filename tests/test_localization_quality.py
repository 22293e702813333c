"""The confidence-vs-IoU analysis: Pearson r, IoU with the best same-class GT, the plots."""

import math

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from scipy.stats import pearsonr

from iou_aware.evaluation import (
    LocalizationQualityEvaluator,
    pearson_correlation,
    plot_ap_vs_iou_threshold,
    plot_confidence_vs_iou,
)


def test_pearson_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.random(50)
    y = 0.3 * x + rng.normal(0, 0.1, 50)
    assert pearson_correlation(x, y) == pytest.approx(pearsonr(x, y)[0], rel=1e-9)
    assert np.isnan(pearson_correlation([1.0], [2.0]))
    assert np.isnan(pearson_correlation([1.0, 1.0], [2.0, 3.0]))


@pytest.fixture
def two_box_dataset():
    name = "two_box_dataset"
    record = {
        "image_id": 7,
        "height": 100,
        "width": 100,
        "annotations": [
            {"bbox": [0, 0, 40, 40], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
            {"bbox": [50, 50, 100, 100], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1},
        ],
    }
    DatasetCatalog.register(name, lambda: [record])
    yield name
    DatasetCatalog.remove(name)


def test_each_detection_gets_its_iou_with_the_best_gt_of_its_class_and_of_any_class(two_box_dataset, tmp_path):
    evaluator = LocalizationQualityEvaluator(two_box_dataset, distributed=False)
    evaluator.reset()
    detections = Instances((100, 100))
    detections.pred_boxes = Boxes(
        torch.tensor(
            [
                [0.0, 0.0, 40.0, 30.0],  # class 0: IoU 0.75 with the first GT
                [50.0, 50.0, 100.0, 75.0],  # class 1: IoU 0.5 with the second GT
                [50.0, 50.0, 100.0, 100.0],  # class 0 on the class-1 GT: no same-class overlap
            ]
        )
    )
    detections.pred_classes = torch.tensor([0, 1, 0])
    detections.scores = torch.tensor([0.9, 0.6, 0.3])
    detections.pred_ious = torch.tensor([0.7, 0.55, 0.2])
    evaluator.process([{"image_id": 7}], [{"instances": detections}])
    result = evaluator.evaluate()["localization"]
    assert evaluator.records["iou"].tolist() == pytest.approx([0.75, 0.5, 0.0])
    assert result["num_detections"] == 3
    assert result["pearson_scores"] == pytest.approx(pearsonr([0.9, 0.6, 0.3], [0.75, 0.5, 0.0])[0])
    assert result["pearson_pred_ious"] == pytest.approx(pearsonr([0.7, 0.55, 0.2], [0.75, 0.5, 0.0])[0])
    assert "pearson_cls_scores" not in result
    # Any class: the third box lies exactly on the class-1 GT (IoU 1).
    assert evaluator.records["iou_any_class"].tolist() == pytest.approx([0.75, 0.5, 1.0])
    assert result["pearson_scores_any_class"] == pytest.approx(pearsonr([0.9, 0.6, 0.3], [0.75, 0.5, 1.0])[0])
    # Overlapping only (IoU > 0): the same-class statistics drop the third detection.
    assert result["num_detections_overlapping"] == 2 and result["num_detections_overlapping_any_class"] == 3
    assert result["pearson_scores_overlapping"] == pytest.approx(1.0)  # two points on a rising line
    assert result["pearson_pred_ious_any_class_overlapping"] == pytest.approx(
        pearsonr([0.7, 0.55, 0.2], [0.75, 0.5, 1.0])[0]
    )

    # Matched only (IoU >= 0.5): the first two detections; the unmatched one is the third.
    assert result["num_detections_matched"] == 2 and result["num_detections_matched_any_class"] == 3
    assert result["pearson_pred_ious_matched"] == pytest.approx(1.0)
    assert result["mean_pred_ious_matched"] == pytest.approx((0.7 + 0.55) / 2)
    assert result["mean_scores_unmatched"] == pytest.approx(0.3)
    assert math.isnan(result["mean_scores_any_class_unmatched"])  # every detection is matched to some class

    plot_confidence_vs_iou(evaluator.records, str(tmp_path / "scatter.png"))
    plot_ap_vs_iou_threshold({"m": {"AP50": 50.0, "AP60": 40.0, "AP": 30.0, "APs": 1.0}}, str(tmp_path / "ap.png"))
    for name in ("scatter.png", "ap.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
