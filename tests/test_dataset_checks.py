"""Start-up checks of the training data (iou_aware.data.dataset_checks), on a user's COCO file."""

import json
import logging

import numpy as np
import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from PIL import Image

from iou_aware.config import add_iou_aware_config
from iou_aware.data import DatasetCheckError, find_record_problems
from iou_aware.engine import Trainer


def _write_coco(tmp_path, name, annotations, categories=3, missing_image=True):
    images = [
        {"id": 1, "file_name": "a.png", "height": 64, "width": 80},
        {"id": 2, "file_name": "b.png", "height": 64, "width": 80},
    ]
    Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "a.png")
    if not missing_image:
        Image.fromarray(np.zeros((64, 80, 3), np.uint8)).save(tmp_path / "b.png")
    data = {
        "images": images,
        "annotations": [dict(a, image_id=a.get("image_id", 1), iscrowd=0, area=100.0) for a in annotations],
        "categories": [{"id": i + 1, "name": f"c{i}"} for i in range(categories)],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_coco_instances(name, {}, str(tmp_path / "ann.json"), str(tmp_path))


def _cfg(name, *opts):
    cfg = get_cfg()
    add_iou_aware_config(cfg)
    cfg.merge_from_list(
        ["MODEL.META_ARCHITECTURE", "RetinaNet", "MODEL.RETINANET.NUM_CLASSES", "2", "MODEL.DEVICE", "cpu"]
    )
    cfg.DATASETS.TRAIN = (name,)
    cfg.merge_from_list(list(opts))
    return cfg


BROKEN = [
    {"id": 11, "bbox": [10, 10, 20, 20], "category_id": 1},  # fine
    {"id": 12, "bbox": [30, 10, -5, 20], "category_id": 2},  # inverted (negative width)
    {"id": 13, "bbox": [60, 40, 40, 20], "category_id": 3},  # x1 = 100 > 80 + 1
    {"id": 14, "bbox": [5, 5, 10, 10], "category_id": 1, "image_id": 2},  # on the missing image b.png
]


def test_every_problem_is_listed_at_once_before_the_model_is_built(tmp_path, monkeypatch):
    _write_coco(tmp_path, "checks_broken", BROKEN)
    monkeypatch.setattr(Trainer, "build_model", classmethod(lambda cls, cfg: pytest.fail("the model was built")))
    with pytest.raises(DatasetCheckError) as error:
        Trainer(_cfg("checks_broken"))
    message = str(error.value)
    assert "(4 problems)" in message
    assert "dataset checks_broken has 3 categories but the model has MODEL.RETINANET.NUM_CLASSES = 2" in message
    assert "1 x image file not found, e.g. image " in message and "b.png" in message
    # Detectron2's COCO loader keeps no annotation ids: annotations are named by their index in the image.
    assert (
        "1 x inverted box (x1 < x0 or y1 < y0), e.g. image" in message
        and "a.png, annotation #1: box [30.0, 10.0, -5.0, 20.0]" in message
    )
    assert (
        "1 x box outside the image by more than 1 px" in message
        and "a.png, annotation #2" in message
        and "80x64" in message
    )
    assert "DATALOADER.FILTER_INVALID_ANNOTATIONS True" in message


def test_the_filter_drops_bad_annotations_and_missing_images_and_logs_the_counts(tmp_path, caplog):
    _write_coco(tmp_path, "checks_filter", BROKEN)
    cfg = _cfg("checks_filter", "DATALOADER.FILTER_INVALID_ANNOTATIONS", "True", "MODEL.RETINANET.NUM_CLASSES", "3")
    with caplog.at_level(logging.WARNING):
        records = Trainer.checked_training_records(cfg)
    assert [r["file_name"].endswith("a.png") for r in records] == [True]
    assert [a["bbox"] for a in records[0]["annotations"]] == [[10, 10, 20, 20]]
    assert "dropped 1 of 2 images (missing files) and 2 annotations" in caplog.text


def test_the_category_count_cannot_be_filtered(tmp_path):
    _write_coco(tmp_path, "checks_classes", BROKEN[:1], missing_image=False)
    with pytest.raises(DatasetCheckError, match="has 3 categories .* set MODEL.RETINANET.NUM_CLASSES 3"):
        Trainer.checked_training_records(_cfg("checks_classes", "DATALOADER.FILTER_INVALID_ANNOTATIONS", "True"))


def test_keypoint_count_and_missing_masks_are_checked(tmp_path):
    annotations = [
        {"id": 21, "bbox": [10, 10, 20, 20], "category_id": 1, "keypoints": [12, 12, 2] * 5, "num_keypoints": 5}
    ]
    _write_coco(tmp_path, "checks_keypoints", annotations, categories=1, missing_image=False)
    cfg = _cfg(
        "checks_keypoints", "MODEL.KEYPOINT_ON", "True", "MODEL.MASK_ON", "True", "MODEL.RETINANET.NUM_CLASSES", "1"
    )
    with pytest.raises(DatasetCheckError) as error:
        Trainer.checked_training_records(cfg)
    message = str(error.value)
    assert "has [5] keypoints per instance but MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS = 17" in message
    assert "1 x annotation without a mask" in message and "annotation #0" in message


def test_crowd_annotations_and_boxes_within_a_pixel_are_fine(tmp_path):
    (tmp_path / "c.png").write_bytes(b"")
    records = [{"file_name": str(tmp_path / "c.png"), "height": 10, "width": 10, "annotations": [
        {"bbox": [-0.5, 0, 10.5, 10], "bbox_mode": 0, "category_id": 0},
        {"bbox": [5, 5, 1, 1], "bbox_mode": 0, "category_id": 0, "iscrowd": 1},
    ]}]  # fmt: skip
    from detectron2.structures import BoxMode

    for a in records[0]["annotations"]:
        a["bbox_mode"] = BoxMode.XYXY_ABS
    assert find_record_problems(records) == []  # the file_name is an existing path
