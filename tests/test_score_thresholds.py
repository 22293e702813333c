"""What each score threshold keeps: detections per image, precision and recall, by hand."""

import math

import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from iou_aware.evaluation import ScoreThresholdEvaluator, match_in_score_order


def test_a_detection_takes_the_unmatched_box_of_its_class_it_overlaps_most_in_score_order():
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    gt_classes = torch.tensor([0, 0])
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 8.0],  # score 0.5: IoU 0.8 with GT 0, but GT 0 is taken by the 0.9 duplicate
            [0.0, 0.0, 10.0, 10.0],  # score 0.9: IoU 1 with GT 0
            [20.0, 0.0, 30.0, 4.0],  # score 0.7: IoU 0.4 with GT 1, under 0.5
            [20.0, 0.0, 30.0, 10.0],  # score 0.6, class 1: exact on GT 1, wrong class
        ]
    )
    scores = torch.tensor([0.5, 0.9, 0.7, 0.6])
    classes = torch.tensor([0, 0, 0, 1])
    matched = match_in_score_order(scores, boxes, classes, gt_boxes, gt_classes)
    assert matched.tolist() == [False, True, False, False]
    # At IoU 0.4 the 0.7 box matches GT 1 (IoU exactly 0.4).
    assert match_in_score_order(scores, boxes, classes, gt_boxes, gt_classes, 0.4).tolist() == [
        False,
        True,
        True,
        False,
    ]
    assert match_in_score_order(scores, boxes, classes, gt_boxes[:0], gt_classes[:0]).tolist() == [False] * 4


@pytest.fixture
def two_images():
    name = "score_threshold_dataset"
    records = [
        {
            "image_id": 1,
            "height": 40,
            "width": 40,
            "annotations": [
                {"bbox": [0, 0, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
                {"bbox": [20, 20, 30, 30], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1},
                {"bbox": [0, 20, 10, 30], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1, "iscrowd": 1},
            ],
        },
        {"image_id": 2, "height": 40, "width": 40, "annotations": []},
    ]
    DatasetCatalog.register(name, lambda: records)
    yield name
    DatasetCatalog.remove(name)


def _detections(boxes, scores, classes):
    instances = Instances((40, 40))
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.scores = torch.tensor(scores, dtype=torch.float32)
    instances.pred_classes = torch.tensor(classes, dtype=torch.int64)
    return {"instances": instances}


def test_each_threshold_reports_detections_per_image_precision_and_recall(two_images):
    evaluator = ScoreThresholdEvaluator(two_images, thresholds=[0.8, 0.3, 0.5], distributed=False)
    evaluator.reset()
    # Image 1: a correct 0.9 (GT 0), a correct 0.4 (GT 1), a 0.6 on the crowd region (not counted as GT).
    first = _detections([[0, 0, 10, 10], [20, 20, 30, 30], [0, 20, 10, 30]], [0.9, 0.4, 0.6], [0, 1, 1])
    # Image 2 has no object: its 0.35 detection is wrong.
    second = _detections([[5, 5, 15, 15]], [0.35], [0])
    evaluator.process([{"image_id": 1}, {"image_id": 2}], [first, second])
    result = evaluator.evaluate()["score_thresholds"]
    assert list(result) == ["0.3", "0.5", "0.8"]
    # >= 0.3: 4 detections over 2 images, 2 correct; 2 GT (the crowd one is not an object).
    assert result["0.3"] == {"detections_per_image": 2.0, "precision": 0.5, "recall": 1.0}
    # >= 0.5: 0.9 and 0.6 kept, 1 correct.
    assert result["0.5"] == {"detections_per_image": 1.0, "precision": 0.5, "recall": 0.5}
    assert result["0.8"] == {"detections_per_image": 0.5, "precision": 1.0, "recall": 0.5}


def test_a_threshold_above_every_score_keeps_nothing(two_images):
    evaluator = ScoreThresholdEvaluator(two_images, thresholds=[0.99], distributed=False)
    evaluator.reset()
    evaluator.process([{"image_id": 1}], [_detections([[0, 0, 10, 10]], [0.9], [0])])
    point = evaluator.evaluate()["score_thresholds"]["0.99"]
    assert point["detections_per_image"] == 0.0 and math.isnan(point["precision"]) and point["recall"] == 0.0
