"""COCOEvaluator with AP at single IoU thresholds, on a hand-made dataset with known IoUs."""

import json
import math

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.structures import Boxes, Instances

from iou_aware.evaluation import ThresholdedCOCOEvaluator
from iou_aware.utils import detectron2_has_compiled_ops


@pytest.fixture
def one_box_dataset(tmp_path):
    name = "one_box_dataset"
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 100, "width": 100}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 40], "area": 1600, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "thing"}],
    }
    json_file = tmp_path / "coco.json"
    json_file.write_text(json.dumps(coco))
    register_coco_instances(name, {}, str(json_file), str(tmp_path))
    DatasetCatalog.get(name)  # sets the category id mapping in the metadata, as a test loader does
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_ap_per_iou_threshold_of_a_single_detection_with_iou_075(one_box_dataset, tmp_path):
    # A 40x30 box inside the 40x40 GT: IoU = 1200 / 1600 = 0.75. One GT, one detection: AP is
    # 100 at every threshold <= 0.75 and 0 above.
    evaluator = ThresholdedCOCOEvaluator(
        one_box_dataset,
        tasks=("bbox",),
        distributed=False,
        output_dir=str(tmp_path),
        use_fast_impl=detectron2_has_compiled_ops(),
    )
    evaluator.reset()
    detections = Instances((100, 100))
    detections.pred_boxes = Boxes(torch.tensor([[0.0, 0.0, 40.0, 30.0]]))
    detections.scores = torch.tensor([0.9])
    detections.pred_classes = torch.tensor([0])
    evaluator.process([{"image_id": 1, "height": 100, "width": 100}], [{"instances": detections}])
    results = evaluator.evaluate()["bbox"]
    assert results["AP50"] == pytest.approx(100)
    assert results["AP60"] == pytest.approx(100)
    assert results["AP70"] == pytest.approx(100)
    assert results["AP80"] == pytest.approx(0)
    assert results["AP90"] == pytest.approx(0)
    assert results["AP75"] == pytest.approx(100)  # COCO's own column agrees


def test_no_predictions_give_nan_at_every_threshold_not_a_crash(one_box_dataset, tmp_path):
    evaluator = ThresholdedCOCOEvaluator(
        one_box_dataset,
        tasks=("bbox",),
        distributed=False,
        output_dir=str(tmp_path),
        use_fast_impl=detectron2_has_compiled_ops(),
    )
    evaluator.reset()
    empty = Instances(
        (100, 100),
        pred_boxes=Boxes(torch.zeros(0, 4)),
        scores=torch.zeros(0),
        pred_classes=torch.zeros(0, dtype=torch.int64),
    )
    evaluator.process([{"image_id": 1, "height": 100, "width": 100}], [{"instances": empty}])
    results = evaluator.evaluate()["bbox"]
    for key in ("AP", "AP50", "AP75", "AP60", "AP90"):
        assert math.isnan(results[key]), key
