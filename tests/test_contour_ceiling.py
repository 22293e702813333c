"""dev/contour_ceiling.py: GT contours resampled to C points, evaluated as perfect detections."""

import os

import pytest
from contour_ceiling import contour_ceiling, size_name  # dev/, on the path by conftest.py
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode


@pytest.fixture
def squares_dataset():
    name = "contour_ceiling_squares"
    record = {
        "file_name": "unused.png", "image_id": 1, "height": 64, "width": 64,
        "annotations": [
            # 36 x 36 px: 36 points at a 4 px step start 2 px off the corners (rolled to the
            # top centre), so each corner is cut by a right triangle of legs 2 px: area 1296 - 8.
            {"bbox": [8, 8, 36, 36], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0,
             "segmentation": [[8, 8, 44, 8, 44, 44, 8, 44]], "iscrowd": 0},
            {"bbox": [50, 50, 8, 8], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0,
             "segmentation": [[50, 50, 58, 50, 58, 58, 50, 58]], "iscrowd": 0},
        ],
    }  # fmt: skip
    DatasetCatalog.register(name, lambda: [record])
    MetadataCatalog.get(name).set(thing_classes=["square"], evaluator_type="coco")
    yield name
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def test_size_ranges_are_coco_s():
    assert [size_name(a) for a in (31**2, 32**2, 95**2, 96**2)] == ["small", "medium", "medium", "large"]


def test_resampled_squares_lose_their_corners_only(squares_dataset, tmp_path):
    report = contour_ceiling(squares_dataset, 36, str(tmp_path))
    iou = report["mask_iou"]
    assert iou["all"]["instances"] == 2
    assert set(iou) == {"all", "class square", "size medium", "size small", "square medium", "square small"}
    # Cut corners: the large square's IoU is (1296 - 8) / 1296 (as rasterized, to 1e-3).
    assert iou["size medium"]["mean_mask_iou"] == pytest.approx(1288 / 1296, abs=1e-3)
    assert iou["size small"]["instances"] == 1
    # Every IoU is above 0.75 and the boxes are the squares' extents: both APs at 100 for IoU 0.5-0.75.
    assert report["coco"]["segm"]["AP50"] == pytest.approx(100.0)
    assert report["coco"]["bbox"]["AP75"] == pytest.approx(100.0)
    assert os.path.isfile(tmp_path / "results.json")


def test_an_rle_mask_is_traced_like_the_polygon_of_the_same_square(squares_dataset, tmp_path):
    """The large square given as compressed RLE: same mask IoU as its polygon within tracing (vertices
    at pixel centres shrink it by 0.5 px per side)."""
    import numpy as np
    import pycocotools.mask as mask_util

    record = DatasetCatalog.get(squares_dataset)[0]
    mask = np.zeros((64, 64), dtype=np.uint8, order="F")
    mask[8:44, 8:44] = 1
    rle = mask_util.encode(mask)
    rle["counts"] = rle["counts"].decode()
    record = dict(record, annotations=[dict(record["annotations"][0], segmentation=rle)])
    DatasetCatalog.register("contour_ceiling_rle", lambda: [record])
    MetadataCatalog.get("contour_ceiling_rle").set(thing_classes=["square"], evaluator_type="coco")
    try:
        report = contour_ceiling("contour_ceiling_rle", 36, str(tmp_path))
    finally:
        DatasetCatalog.remove("contour_ceiling_rle")
        MetadataCatalog.remove("contour_ceiling_rle")
    assert report["mask_iou"]["all"]["instances"] == 1
    assert 0.9 < report["mask_iou"]["all"]["mean_mask_iou"] < 1.0
