"""Inverted GT boxes fail at data loading with an error naming the annotation and the image."""

import pytest
from detectron2.structures import BoxMode

from iou_aware.data import InvalidAnnotationError, ValidatingMapper, check_box_annotations


def _record(bbox, mode=BoxMode.XYWH_ABS, **extra):
    return {"file_name": "img_7.png", "annotations": [dict(bbox=bbox, bbox_mode=mode, category_id=0, **extra)]}


def test_inverted_box_names_the_annotation_id_and_image():
    with pytest.raises(InvalidAnnotationError, match=r"annotation id 42 of image img_7.png"):
        check_box_annotations(_record([10, 10, -5, 4], id=42))
    with pytest.raises(InvalidAnnotationError, match=r"annotation #0"):
        check_box_annotations(_record([10, 10, 5, 4], mode=BoxMode.XYXY_ABS))


def test_valid_and_zero_area_boxes_pass_through_the_mapper():
    mapper = ValidatingMapper(lambda record: "mapped")
    assert mapper(_record([10, 10, 5, 4])) == "mapped"
    assert mapper(_record([10, 10, 0, 4])) == "mapped"  # zero area: Detectron2 filters it
    with pytest.raises(InvalidAnnotationError, match=r"annotation #0"):
        mapper(_record([10, 10, 5, -1]))
