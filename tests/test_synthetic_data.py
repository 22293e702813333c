"""The synthetic dataset generator writes valid, self-consistent, deterministic COCO datasets."""

import filecmp
import json
import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools.coco import COCO

from iou_aware.data import SyntheticDatasetSpec, generate_synthetic_dataset
from iou_aware.data.stickmen import KEYPOINT_NAMES


@pytest.fixture(scope="module", params=["shapes", "stickmen"])
def generated(request, tmp_path_factory):
    spec = SyntheticDatasetSpec(request.param, num_images=12, seed=7, height=160, width=192)
    out = tmp_path_factory.mktemp(request.param)
    generate_synthetic_dataset(spec, str(out))
    return spec, str(out), COCO(os.path.join(out, "annotations.json"))


def test_json_is_valid_coco(generated):
    spec, out, coco = generated
    assert len(coco.getImgIds()) == spec.num_images
    assert len(coco.getAnnIds()) >= spec.num_images  # at least one object per image on average
    for image in coco.loadImgs(coco.getImgIds()):
        assert (image["height"], image["width"]) == (160, 192)
        assert os.path.isfile(os.path.join(out, "images", image["file_name"]))
    category_ids = set(coco.getCatIds())
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert ann["category_id"] in category_ids
        assert ann["iscrowd"] == 0 and ann["area"] > 0
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 192 and y + h <= 160
        assert all(len(polygon) >= 6 and len(polygon) % 2 == 0 for polygon in ann["segmentation"])


def test_every_box_encloses_its_mask(generated):
    _, _, coco = generated
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann)
        assert mask.sum() > 0, ann["id"]
        rows, cols = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        # Pixel (r, c) covers [c, c + 1) x [r, r + 1).
        assert cols.min() >= x and cols.max() + 1 <= x + w, ann["id"]
        assert rows.min() >= y and rows.max() + 1 <= y + h, ann["id"]


@pytest.mark.parametrize("generated", ["stickmen"], indirect=True)  # the set with keypoints
def test_keypoints_lie_in_their_box_with_consistent_visibility(generated):
    spec, _, coco = generated
    assert coco.loadCats(1)[0]["keypoints"] == list(KEYPOINT_NAMES)
    visible_on_mask = total_visible = 0
    for ann in coco.loadAnns(coco.getAnnIds()):
        keypoints = np.asarray(ann["keypoints"]).reshape(17, 3)
        visibility = keypoints[:, 2]
        assert set(np.unique(visibility)) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((visibility > 0).sum())
        assert (keypoints[visibility == 0, :2] == 0).all()
        # COCO keypoints are integer-pixel coordinates: the point itself is at +0.5.
        xy = keypoints[visibility > 0, :2] + 0.5
        x, y, w, h = ann["bbox"]
        assert (xy[:, 0] >= x - 1e-6).all() and (xy[:, 0] <= x + w + 1e-6).all()
        assert (xy[:, 1] >= y - 1e-6).all() and (xy[:, 1] <= y + h + 1e-6).all()
        mask = coco.annToMask(ann)
        for px, py in keypoints[visibility == 2, :2] + 0.5:
            total_visible += 1
            r, c = int(py), int(px)
            visible_on_mask += mask[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2].any()
    # Visible keypoints sit on the figure's visible mask (polygon rasterization may shave 1 px).
    assert total_visible > 0 and visible_on_mask / total_visible > 0.95


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    spec = SyntheticDatasetSpec("shapes", num_images=3, seed=11, height=64, width=64)
    for folder in ("a", "b"):
        generate_synthetic_dataset(spec, str(tmp_path / folder))
    generate_synthetic_dataset(SyntheticDatasetSpec("shapes", 3, seed=12, height=64, width=64), str(tmp_path / "c"))
    assert filecmp.cmp(tmp_path / "a" / "annotations.json", tmp_path / "b" / "annotations.json", shallow=False)
    for name in os.listdir(tmp_path / "a" / "images"):
        assert filecmp.cmp(tmp_path / "a" / "images" / name, tmp_path / "b" / "images" / name, shallow=False)
    with open(tmp_path / "a" / "annotations.json") as fa, open(tmp_path / "c" / "annotations.json") as fc:
        assert json.load(fa)["annotations"] != json.load(fc)["annotations"]


def test_registered_datasets_load_through_detectron2_with_metadata():
    dicts = DatasetCatalog.get("stickmen_tiny_val")
    assert len(dicts) == 8
    instance = dicts[0]["annotations"][0]
    assert len(instance["keypoints"]) == 51 and instance["category_id"] == 0
    metadata = MetadataCatalog.get("stickmen_tiny_val")
    assert metadata.thing_classes == ["person"]
    assert ("left_eye", "right_eye") in [tuple(p) for p in metadata.keypoint_flip_map]
    assert os.path.isfile(metadata.json_file)
    for name in ("shapes_train", "shapes_val", "stickmen_train", "stickmen_val"):
        assert name in DatasetCatalog.list()
    assert MetadataCatalog.get("shapes_val").thing_classes == ["circle", "square", "triangle", "star"]


def test_bad_spec_is_rejected_with_a_clear_error():
    with pytest.raises(ValueError, match="synthetic dataset kind = .*; use one of"):
        SyntheticDatasetSpec("cats", num_images=1, seed=0)
